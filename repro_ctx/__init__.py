"""repro_ctx: scoped, exactly restored reproducibility for PyTorch and NumPy."""

from ._deterministic import deterministic
from ._divergence import compare, find_divergence, record
from ._divergence_report import DivergenceReport, OpRecord
from ._magics import load_ipython_extension as load_ipython_extension  # %load_ext repro_ctx
from ._magics import unload_ipython_extension as unload_ipython_extension
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
    "capture",
    "compare",
    "dataloader_kwargs",
    "deterministic",
    "env_seed",
    "find_divergence",
    "record",
    "register",
    "registered",
    "reproducible",
    "seed_worker",
    "unregister",
]
