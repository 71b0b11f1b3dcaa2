"""A source plugin as a scope source: its own seed, and every call into it isolated.

The plugin's ``seed(seed)`` gets a seed derived from the scope's seed and the
plugin's name through ``SeedSequence`` (a spawn-key namespace of its own), so
two plugins, or a plugin and a registered generator, never share a stream,
and each DataLoader worker's plugin streams differ as its other streams do.

Every call into the plugin is guarded. Its first exception becomes a
``SourcePluginWarning`` naming the plugin and the error; the plugin is
dropped from later scopes (``plugin_registry.drop``); what it changed is
rolled back where that is possible (a failed seeding restores the snapshot
taken just before it; a failed swap puts back what it found). The scope and
the built-in sources never see the exception. Scopes already open keep the
plugin and still restore what they captured.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

from ..core.equality import same
from ..core.plain import LeftOut, Malformed, Plain, Resolved, check_plain, copy_plain, digest
from ..core.seed import PLUGIN_SOURCES_KEY
from ..core.source import Plan, swap_by_restore
from .plugin_api import SourcePluginWarning

BUILTIN_NAMES: Final = frozenset({
    "environment", "torch flags", "tf32", "random", "numpy.random (global)", "torch (cpu)",
    "torch (cuda)", "torch (xpu)", "torch (mps)", "registered generators", "generators",
})
"""Names of the built-in sources, here or on another machine: no plugin may take one."""

NO_TO_PLAIN: Final = "its source has no to_plain, so state_dict() and fingerprint() leave it out"

_ACCEPTED: Final = (
    "a source: an object with a name (str) and capture(), seed(seed) and restore(snapshot) "
    "methods, optionally to_plain(snapshot) and from_plain(data) (see repro_ctx.Source)"
)


_PACKAGE: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_stacklevel() -> int:
    """``stacklevel`` for a warning issued by the caller: the first frame outside repro_ctx."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level


@lru_cache(maxsize=256)
def plugin_seed(seed: int, name: str) -> int:
    """The 64-bit seed of the plugin called ``name`` in a scope seeded with ``seed``.

    The name enters the spawn key as four fixed-width words of its SHA-256,
    so distinct names give independent streams.
    """
    import numpy as np

    words = hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()[:16]
    key = (PLUGIN_SOURCES_KEY, *(int.from_bytes(words[i : i + 4], "little")
                                 for i in range(0, 16, 4)))
    state = np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)
    return int(state[0])


class PluginSnapshot:
    """What a plugin's ``capture`` returned, kept as it is.

    Leak checks compare snapshots with ``==``: equal when the plugin's own
    values compare equal, or else when their plain forms do (a snapshot type
    without ``==``, or holding NumPy arrays).
    """

    __slots__ = ("source", "value")

    def __init__(self, source: PluginSource | None, value: object) -> None:
        self.source = source
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PluginSnapshot):
            return NotImplemented
        if self.source is None or other.source is not self.source:
            return False
        return self.source.same(self.value, other.value)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        owner = "failed capture" if self.source is None else repr(self.source.name)
        return f"<PluginSnapshot of {owner}: {self.value!r:.60}>"


FAILED: Final = PluginSnapshot(None, None)
"""The snapshot of a plugin whose capture raised: seeding and restoring it do nothing."""


class PluginSource:
    """One plugin, behind the scope's source protocol and the codec protocol.

    ``kind`` is ``"plugin:<name>"``. A plugin without ``to_plain`` raises
    ``LeftOut`` from ``to_plain``: state dicts and fingerprints leave it out.
    """

    __slots__ = ("failure", "kind", "name", "not_saved", "on_failure", "origin", "plugin")

    def __init__(
        self, plugin: Any, name: str, origin: str, on_failure: Callable[[PluginSource], None]
    ) -> None:
        self.plugin = plugin
        self.name = name
        self.origin = origin
        """Where it came from: ``register_source()`` or an entry point."""
        self.kind = f"plugin:{name}"
        self.not_saved: str | None = None if _method(plugin, "to_plain") else NO_TO_PLAIN
        """Why no state dict holds this source's state; ``None`` when one does."""
        self.failure: str | None = None
        """What the plugin raised last, and where."""
        self.on_failure = on_failure
        """Called once, at the first failure: the registry leaves the plugin out of later scopes."""

    # -- the scope's protocol ------------------------------------------------------

    def capture(self) -> PluginSnapshot:
        try:
            value = self.plugin.capture()
        except Exception as exc:
            self._fail("capture", exc)
            return FAILED
        return PluginSnapshot(self, value)

    def seed(self, snapshot: object, plan: Plan) -> None:
        if plan.seed is None or snapshot is FAILED:
            return
        try:
            self.plugin.seed(plugin_seed(plan.seed, self.name))
        except Exception as exc:
            self._fail("seed", exc, self._roll_back(snapshot))

    def restore(self, snapshot: object) -> None:
        if snapshot is FAILED:
            return
        assert isinstance(snapshot, PluginSnapshot)
        try:
            self.plugin.restore(snapshot.value)
        except Exception as exc:
            self._fail("restore", exc)

    swap = swap_by_restore

    def _roll_back(self, snapshot: object) -> str:
        """Undo a failed seeding: put back the snapshot taken just before it, if possible."""
        assert isinstance(snapshot, PluginSnapshot)
        try:
            self.plugin.restore(snapshot.value)
        except Exception as exc:
            return f" (and putting its state back raised {type(exc).__name__}: {exc})"
        return ""

    def _fail(self, where: str, exc: Exception, more: str = "") -> None:
        """Drop the plugin and warn, once: the scopes still open keep calling it."""
        if self.failure is not None:
            return
        self.failure = f"{where} raised {type(exc).__name__}: {exc}{more}"
        self.on_failure(self)
        warnings.warn(
            f"repro_ctx source plugin {self.name!r} ({self.origin}): {self.failure}. "
            "It is left out of every later scope; the other sources are not affected "
            "(fix the plugin and register it again).",
            SourcePluginWarning,
            stacklevel=user_stacklevel(),
        )

    def same(self, a: object, b: object) -> bool:
        """Whether two of the plugin's snapshots hold the same state (see ``PluginSnapshot``)."""
        try:
            if same(a, b):
                return True
        except Exception:
            pass
        if self.not_saved is not None:
            return False
        try:
            plain = self.plugin.to_plain
            return digest(check_plain(plain(a), self.name)) == digest(
                check_plain(plain(b), self.name))
        except Exception:
            return False

    def describe(self) -> dict[str, object]:
        plugin = self.plugin
        out: dict[str, object] = {
            "from": self.origin,
            "type": f"{type(plugin).__module__}.{type(plugin).__qualname__}",
            "state_dict": "yes" if self.not_saved is None else "no (no to_plain)",
        }
        describe = getattr(plugin, "describe", None)
        if callable(describe):
            try:
                out.update(describe())
            except Exception as exc:
                out["describe"] = f"raised {type(exc).__name__}: {exc}"
        return out

    # -- plain data (the codec protocol) -------------------------------------------

    def to_plain(self, snapshot: object) -> Plain:
        if self.not_saved is not None:
            raise LeftOut(self.not_saved)
        if snapshot is FAILED:
            raise LeftOut("its capture failed")
        assert isinstance(snapshot, PluginSnapshot)
        try:
            return check_plain(self.plugin.to_plain(snapshot.value), f"{self.name}.to_plain()")
        except Exception as exc:
            why = (str(exc) if isinstance(exc, Malformed)
                   else f"to_plain raised {type(exc).__name__}: {exc}")
            warnings.warn(
                f"repro_ctx source plugin {self.name!r} ({self.origin}): {why}. "
                "The state_dict and fingerprint leave it out.",
                SourcePluginWarning,
                stacklevel=user_stacklevel(),
            )
            raise LeftOut(why) from None

    def check(self, data: object) -> Plain:
        return check_plain(data, self.name)

    def resolve(self, data: Plain) -> Resolved:
        from_plain = getattr(self.plugin, "from_plain", None)
        if not callable(from_plain):
            return Resolved(None, ("its source has no from_plain, so it cannot be restored "
                                   "from a state_dict",))
        try:
            value = from_plain(copy_plain(data))
        except Exception as exc:
            return Resolved(None, (f"from_plain raised {type(exc).__name__}: {exc}",))
        return Resolved(PluginSnapshot(self, value))

    @staticmethod
    def items(data: Plain) -> dict[str, Plain]:
        return {"": data}

    def __repr__(self) -> str:
        return f"<source plugin {self.name!r} from {self.origin}>"


def _method(obj: object, name: str) -> bool:
    """Whether ``obj`` has the optional method ``name`` (``None`` counts as absent)."""
    value = getattr(obj, name, None)
    if value is None:
        return False
    if not callable(value):
        raise TypeError(f"expected {_ACCEPTED}; {type(obj).__qualname__}.{name} is "
                        f"{type(value).__name__}, not a method")
    return True


def adapt(
    plugin: object, origin: str, on_failure: Callable[[PluginSource], None]
) -> PluginSource:
    """``plugin`` as a source, or the ``TypeError``/``ValueError`` that says what is accepted."""
    if isinstance(plugin, type):
        raise TypeError(f"expected {_ACCEPTED}; got the class {plugin.__qualname__}: "
                        "pass an instance")
    problems = [f"no {attr}() method" for attr in ("capture", "seed", "restore")
                if not callable(getattr(plugin, attr, None))]
    name = getattr(plugin, "name", None)
    if not isinstance(name, str):
        problems.insert(0, f"name is {type(name).__name__} {name!r:.40}, not a str")
    if problems:
        raise TypeError(f"expected {_ACCEPTED}; {type(plugin).__qualname__} has "
                        + ", ".join(problems))
    assert isinstance(name, str)
    if not name.strip():
        raise ValueError("a source's name must be a non-empty str; it names the source in "
                         "state dicts, diffs, leak reports and warnings")
    if name in BUILTIN_NAMES:
        raise ValueError(f"{name!r} is the name of a built-in repro_ctx source; give the "
                         "source another name (its library's, say)")
    if _method(plugin, "from_plain") and not _method(plugin, "to_plain"):
        raise TypeError(f"{type(plugin).__qualname__} has from_plain() but no to_plain(): "
                        "a checkpoint needs both, or neither")
    return PluginSource(plugin, name, origin, on_failure)
