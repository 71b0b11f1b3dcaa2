"""Attributes of the package that are imported on first use.

``repro_ctx.distributed`` needs ``torch.distributed``; importing it with the
package would make ``import repro_ctx`` import torch. The package's
``__getattr__`` and ``__dir__`` (PEP 562) come from here, so that
``__init__.py`` stays re-exports only.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any

_PACKAGE = __name__.rpartition(".")[0]
_LAZY = ("distributed",)


def package_getattr(name: str) -> Any:
    """``repro_ctx.<name>`` for a submodule imported on first use."""
    if name in _LAZY:
        return import_module(f"{_PACKAGE}.{name}")
    raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}")


def package_dir() -> list[str]:
    return sorted({*vars(sys.modules[_PACKAGE]), *_LAZY})
