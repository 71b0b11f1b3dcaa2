"""Which source plugins scopes run: registered by hand, or found through entry points.

Entry points of the ``repro_ctx.sources`` group are loaded once, when the
default sources are first built (the first scope entry, capture or leak
check), never by ``import repro_ctx``: each is a zero-argument callable that
returns a source. A change of the set (a registration, an unregistration, a
plugin dropped after it raised) composes the default sources anew at the
next scope entry; scopes already open keep the sources they captured.

Everything here runs under ``lock``, which ``default_set`` also holds while
it composes the default sources, so a registration is never lost to a
concurrent composition; every change calls the listeners ``default_set``
registered with ``on_change``, so the next scope entry composes anew.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Final

from ..core.fork import renew_after_fork
from .plugin_api import Source, SourcePluginWarning
from .plugins import PluginSource, adapt, user_stacklevel

ENTRY_POINT_GROUP: Final = "repro_ctx.sources"

_active: dict[str, PluginSource] = {}
"""name -> source, in registration order: what the default sources end with."""
_dropped: dict[str, PluginSource] = {}
"""name -> source dropped after it raised, for the report."""
_load_failures: dict[str, str] = {}
"""entry point -> why it did not load, for the report."""
_entry_points_loaded = False
_listeners: list[Callable[[], None]] = []

lock = threading.RLock()
"""Guards the registry and the default set (re-entered while entry points load)."""
renew_after_fork(globals(), "lock")


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` (with ``lock`` held) whenever the set of active plugins changes."""
    _listeners.append(listener)


def _changed() -> None:
    for listener in _listeners:
        listener()


def register_source(source: Source) -> None:
    """Have every scope capture, seed and restore ``source`` (see ``repro_ctx.Source``).

    Scopes entered from now on cover it; scopes already open do not. A
    source registered again is a no-op; another source with the same name
    is a ``ValueError``. Thread-safe.
    """
    plugin = adapt(source, "register_source()", drop)
    with lock:
        _add(plugin)


def _add(plugin: PluginSource) -> None:
    current = _active.get(plugin.name)
    if current is not None:
        if current.plugin is plugin.plugin:
            return
        raise ValueError(f"a source named {plugin.name!r} is already registered "
                         f"({current.origin}, {type(current.plugin).__qualname__}); "
                         "source names must be unique")
    _dropped.pop(plugin.name, None)
    _active[plugin.name] = plugin
    _changed()


def unregister_source(source: Source | str) -> None:
    """Stop scoping ``source`` (the object, or its name); a ``ValueError`` if not registered.

    Scopes already open still restore it on exit. A plugin dropped after it
    raised counts as registered here, so ``try``/``finally`` pairs stay simple.
    """
    by_name = isinstance(source, str)
    if not by_name and not callable(getattr(source, "capture", None)):
        raise TypeError(f"expected a source or a source's name (str), got "
                        f"{type(source).__qualname__}")
    with lock:
        for table in (_active, _dropped):
            for name, plugin in table.items():
                if (name == source) if by_name else (plugin.plugin is source):
                    del table[name]
                    if table is _active:
                        _changed()
                    return
        registered = ", ".join(repr(name) for name in _active) or "none"
    what = repr(source) if by_name else f"{type(source).__qualname__} object {_name_of(source)}"
    raise ValueError(f"{what} is not a registered source (registered: {registered})")


def _name_of(source: object) -> str:
    name = getattr(source, "name", None)
    return f"named {name!r}" if isinstance(name, str) else "without a name"


def drop(plugin: PluginSource) -> None:
    """Leave a plugin that raised out of later scopes (``PluginSource`` warns)."""
    with lock:
        if _active.get(plugin.name) is plugin:
            del _active[plugin.name]
            _dropped[plugin.name] = plugin
            _changed()


def active_plugins() -> tuple[PluginSource, ...]:
    """The plugins scopes cover now, in registration order."""
    with lock:
        return tuple(_active.values())


def load_entry_points() -> None:
    """Load every ``repro_ctx.sources`` entry point, once per process.

    A failure (import, the call, a source that is not one, a taken name)
    is recorded for the report and warned about, after every entry point
    has been tried: one broken plugin keeps no other from loading.
    """
    global _entry_points_loaded
    with lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        from importlib.metadata import entry_points

        failed: list[str] = []
        found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value))
        for entry_point in found:
            origin = f"entry point {entry_point.name} = {entry_point.value}"
            try:
                factory = entry_point.load()
                if not callable(factory):
                    raise TypeError(f"{entry_point.value} is a {type(factory).__name__}; "
                                    "expected a zero-argument callable returning a source")
                _add(adapt(factory(), origin, drop))
            except Exception as exc:
                _load_failures[origin] = f"{type(exc).__name__}: {exc}"
                failed.append(origin)
    for origin in failed:
        warnings.warn(
            f"repro_ctx could not load the source plugin of {origin}: "
            f"{_load_failures[origin]}. Scopes go on without it.",
            SourcePluginWarning,
            stacklevel=user_stacklevel(),
        )


def plugin_report() -> dict[str, dict[str, str]]:
    """Every source plugin this process knows, for ``repro-ctx doctor``.

    Keyed by source name (or, for an entry point that did not load, by the
    entry point); each entry says where it came from and its status:
    ``active``, ``dropped: <what it raised>`` or ``failed to load: <error>``.
    Loads the entry points if no scope has yet; imports neither torch nor NumPy.
    """
    load_entry_points()
    report: dict[str, dict[str, str]] = {}
    with lock:
        for name, plugin in _active.items():
            saved = "yes" if plugin.not_saved is None else "no (no to_plain)"
            report[name] = {"from": plugin.origin, "status": "active", "state_dict": saved}
        for name, plugin in _dropped.items():
            report[name] = {"from": plugin.origin, "status": f"dropped: {plugin.failure}"}
        for origin, reason in _load_failures.items():
            report[origin] = {"from": origin, "status": f"failed to load: {reason}"}
    return report
