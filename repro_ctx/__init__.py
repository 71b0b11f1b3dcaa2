"""repro_ctx: scoped, exactly restored reproducibility for PyTorch and NumPy."""

from ._deterministic import deterministic
from ._divergence import compare, find_divergence, record
from ._divergence_report import DivergenceReport, OpRecord
from ._lazy import package_dir as __dir__  # noqa: F401
from ._lazy import package_getattr as __getattr__  # noqa: F401  # repro_ctx.distributed
from ._magics import load_ipython_extension as load_ipython_extension  # %load_ext repro_ctx
from ._magics import unload_ipython_extension as unload_ipython_extension
from ._plugin_registry import register_source, unregister_source
from ._plugin_source import Source, SourcePluginWarning
from ._registry import register, registered, unregister
from ._reproducible import reproducible
from ._scope import ScopeOrderWarning, ScopeWaitWarning
from ._seed import env_seed
from ._snapshot import RNGState, capture
from ._version import __version__ as __version__
from ._workers import dataloader_kwargs, seed_worker

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
    "find_divergence",
    "record",
    "register",
    "register_source",
    "registered",
    "reproducible",
    "seed_worker",
    "unregister",
    "unregister_source",
]
