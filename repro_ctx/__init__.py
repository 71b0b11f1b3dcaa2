"""repro_ctx: scoped, exactly restored reproducibility for PyTorch and NumPy."""

from ._lazy import package_dir as __dir__  # noqa: F401
from ._lazy import package_getattr as __getattr__  # noqa: F401  # repro_ctx.distributed
from ._version import __version__ as __version__
from .core.scope import ScopeOrderWarning, ScopeWaitWarning
from .core.seed import env_seed
from .diagnose.divergence import compare, find_divergence, record
from .diagnose.records import OpRecord
from .diagnose.report import DivergenceReport
from .scopes.deterministic import deterministic
from .scopes.reproducible import reproducible
from .sources.plugin_api import Source, SourcePluginWarning
from .sources.plugin_registry import register_source, unregister_source
from .sources.registry import register, registered, unregister
from .state.environment_record import environment_record
from .state.per_sample import per_sample
from .state.snapshot import RNGState, capture
from .state.workers import dataloader_kwargs, seed_worker
from .tools.magics import load_ipython_extension as load_ipython_extension  # %load_ext repro_ctx
from .tools.magics import unload_ipython_extension as unload_ipython_extension

__all__ = [
    "DivergenceReport",
    "OpRecord",
    "RNGState",
    "ScopeOrderWarning",
    "ScopeWaitWarning",
    "Source",
    "SourcePluginWarning",
    "capture",
    "compare",
    "dataloader_kwargs",
    "deterministic",
    "env_seed",
    "environment_record",
    "find_divergence",
    "per_sample",
    "record",
    "register",
    "register_source",
    "registered",
    "reproducible",
    "seed_worker",
    "unregister",
    "unregister_source",
]
