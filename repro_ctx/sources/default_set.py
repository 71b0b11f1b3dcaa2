"""The default set of sources: the built-in ones, built once, then the source plugins.

The built-in sources are built at the first scope entry: this is where torch
and NumPy are first imported (``import repro_ctx`` stays cheap, and a scope
pays the imports once), and where the ``repro_ctx.sources`` entry points are
loaded. The plugins follow them. A change of the plugin set sets ``_default``
back to ``None``; the next ``default_sources()`` composes it again, and a
``deterministic`` object sees the new tuple by its identity.
"""

from __future__ import annotations

from typing import Any

from ..core.source import Source
from . import plugin_registry
from .accelerators import LazyDeviceSource, MPSSource, build_accelerator_sources
from .environment import EnvironmentSource
from .flags import FlagsSource, build_flags_source
from .python_random import PythonRandomSource
from .registry import RegistrySource
from .tf32 import TF32Source
from .torch_cpu import TorchCPUSource

_builtin: tuple[Source, ...] | None = None
_default: tuple[Source, ...] | None = None


def default_sources() -> tuple[Source, ...]:
    """Environment, flags, every RNG this process has, registered generators, then plugins.

    Restores run in reverse, so generators come back before flags.
    """
    sources = _default
    if sources is None:
        with plugin_registry.lock:
            sources = _default if _default is not None else _compose()
    return sources


def _compose() -> tuple[Source, ...]:
    global _builtin, _default
    if _builtin is None:
        _builtin = _build()
        plugin_registry.load_entry_points()
    _default = sources = (*_builtin, *plugin_registry.active_plugins())
    return sources


def invalidate() -> None:
    """The plugin set changed: the next ``default_sources()`` composes the set anew.

    Called with ``plugin_registry.lock`` held.
    """
    global _default
    _default = None


plugin_registry.on_change(invalidate)


def _build() -> tuple[Source, ...]:
    import torch

    from .numpy_global import NumPyGlobalSource

    sources: list[Any] = [
        EnvironmentSource(),
        build_flags_source(torch),
        TF32Source(torch),
        PythonRandomSource(),
        NumPyGlobalSource(),
        TorchCPUSource(torch),
        *build_accelerator_sources(torch),
        RegistrySource(),
    ]
    return tuple(sources)


def builtin_source_types() -> tuple[type, ...]:
    """Every built-in source class, whether or not it runs in this process.

    A state saved where one ran (CUDA) is still checked and diffed where it
    does not: each class's ``check`` and ``items`` read only the data.
    """
    from .numpy_global import NumPyGlobalSource

    return (EnvironmentSource, FlagsSource, TF32Source, PythonRandomSource, NumPyGlobalSource,
            TorchCPUSource, LazyDeviceSource, MPSSource, RegistrySource)


def describe_sources() -> dict[str, object]:
    """What each source covers here, for ``repro-ctx`` and diagnostics."""
    out: dict[str, object] = {}
    for source in default_sources():
        describe = getattr(source, "describe", None)
        out[source.name] = describe() if describe is not None else "captured"
    return out
