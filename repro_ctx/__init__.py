"""repro_ctx: scoped, exactly restored reproducibility for PyTorch and NumPy."""

from ._deterministic import deterministic
from ._registry import register, registered, unregister
from ._reproducible import reproducible
from ._scope import ScopeOrderWarning
from ._seed import env_seed

__all__ = [
    "ScopeOrderWarning",
    "deterministic",
    "env_seed",
    "register",
    "registered",
    "reproducible",
    "unregister",
]
