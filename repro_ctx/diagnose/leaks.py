"""What a block of code left changed: snapshots of every source, compared and named.

The pytest plugin takes a snapshot before a test and another after it; every
difference is a *leak*: global state that the next test (or the rest of a
program) inherits. Snapshots come from the sources' own ``capture`` (the fast
path a scope uses), so checking a whole test suite stays cheap. Flags and
environment variables are reported by name with both values; an RNG's state
is opaque, so a changed RNG is reported as "state changed".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..core.equality import same
from ..core.source import Source
from ..sources.flags import plain

_SOURCES: Final = __package__.rpartition(".")[0] + ".sources"
_UNSET = "unset"
_DRAWN = "state changed (drawn from or reseeded outside a scope)"


class StateLeakWarning(UserWarning):
    """A test left global RNG-affecting state (an RNG, a torch flag) changed."""


@dataclass(frozen=True, slots=True)
class Change:
    """One piece of global state that differs: a flag, a variable or an RNG."""

    what: str
    before: str | None
    """``None`` for an RNG, whose state is opaque: only ``after`` is shown."""
    after: str

    def __str__(self) -> str:
        if self.before is None:
            return f"{self.what}: {self.after}"
        return f"{self.what}: {self.before} -> {self.after}"


def checked_sources(sources: Sequence[Source], *, randomly: bool) -> tuple[Source, ...]:
    """The sources a leak check compares.

    pytest-randomly (``randomly=True``) reseeds Python's and NumPy's global
    RNGs before every phase of every test, so nothing a test does to them
    can reach another test: they are left out.
    """
    if not randomly:
        return tuple(sources)
    return tuple(
        source for source in sources
        if not _is(source, "python_random", "PythonRandomSource")
        and not _is(source, "numpy_global", "NumPyGlobalSource")
    )


def capture(sources: Sequence[Source]) -> tuple[object, ...]:
    return tuple([source.capture() for source in sources])


def changes(
    sources: Sequence[Source], before: Sequence[object], after: Sequence[object]
) -> list[Change]:
    """Every difference between two snapshots of ``sources``, in source order."""
    found: list[Change] = []
    for source, old, new in zip(sources, before, after, strict=True):
        found.extend(_source_changes(source, old, new))
    return found


def report(test_id: str, found: Sequence[Change]) -> str:
    lines = [f"{test_id} left global RNG-affecting state changed:"]
    lines.extend(f"  {change}" for change in found)
    lines.append(
        "Restore it in the test, or run the code inside a repro_ctx scope "
        "(`with deterministic(...)`, @pytest.mark.deterministic), which restores it."
    )
    return "\n".join(lines)


def _source_changes(source: Source, old: object, new: object) -> list[Change]:
    if _is(source, "flags", "FlagsSource"):
        return _flag_changes(source, old, new)
    if _is(source, "tf32", "TF32Source"):
        return _tf32_changes(source, old, new)
    if _is(source, "environment", "EnvironmentSource"):
        return _environment_changes(source, old, new)
    if _is(source, "accelerators", "LazyDeviceSource"):
        return _device_changes(source, old, new)
    if _is(source, "registry", "RegistrySource"):
        return _registry_changes(old, new)
    if same(old, new):
        return []
    return [Change(source.name, None, _DRAWN)]


def _is(obj: object, module: str, qualname: str) -> bool:
    """``isinstance`` by the class's name, not its identity.

    pytester's in-process runs drop the modules a run imported first, and
    the next run imports them again: the sources built by the first run are
    then instances of classes that the second import defines a second time.
    """
    module = f"{_SOURCES}.{module}"
    return any(
        cls.__module__ == module and cls.__qualname__ == qualname for cls in type(obj).__mro__
    )


def _flag_changes(source: Any, old: Any, new: Any) -> list[Change]:
    return [
        Change(flag.name, repr(plain(a)), repr(plain(b)))
        for flag, a, b in zip(source.flags, old, new, strict=True)
        if not same(a, b) and not _first_read(flag, a, b)
    ]


def _first_read(flag: Any, old: object, new: object) -> bool:
    """A flag unreadable before (its module not imported) that now reads its import-time value."""
    return old is None and flag.initial is not None and new == flag.initial()


def _tf32_changes(source: Any, old: Any, new: Any) -> list[Change]:
    found = []
    if old.matmul_precision != new.matmul_precision:
        found.append(Change("torch.get_float32_matmul_precision",
                            repr(old.matmul_precision), repr(new.matmul_precision)))
    if old.cudnn_allow_tf32 != new.cudnn_allow_tf32:
        found.append(Change("torch.backends.cudnn.allow_tf32",
                            repr(old.cudnn_allow_tf32), repr(new.cudnn_allow_tf32)))
    if old.nodes != new.nodes:
        # describe() names the fp32_precision nodes in snapshot order.
        names = [name for name in source.describe() if name.startswith("fp32_precision[")]
        found.extend(
            Change(name, repr(a), repr(b))
            for name, a, b in zip(names, old.nodes, new.nodes, strict=True)
            if a != b
        )
    return found


def _environment_changes(source: Any, old: Any, new: Any) -> list[Change]:
    return [
        Change(f"os.environ[{name!r}]", _env_value(a), _env_value(b))
        for name, a, b in zip(source.variables, old, new, strict=True)
        if a != b
    ]


def _env_value(value: str | None) -> str:
    return _UNSET if value is None else repr(value)


def _device_changes(source: Any, old: Any, new: Any) -> list[Change]:
    """An accelerator's generators; first initialisation during the block is no leak.

    Before CUDA (or XPU) initialises there is no generator state to leak: it
    is created, from whatever seeds are pending, at initialisation.
    """
    if _is(old, "accelerators", "Initialised") and _is(new, "accelerators", "Initialised"):
        return [
            Change(f"{source.name} device {index}", None, _DRAWN)
            for index, (a, b) in enumerate(zip(old.states, new.states, strict=True))
            if not same(a, b)
        ]
    if _is(old, "accelerators", "Pending") and _is(new, "accelerators", "Pending"):
        if old.tracker is new.tracker and old.queued == new.queued:
            return []
        return [Change(source.name, "no pending seed calls", "seed calls queued for "
                       "initialisation")]
    return []


def _registry_changes(old: Any, new: Any) -> list[Change]:
    """``old`` and ``new`` iterate as ``(obj, entry, state)`` (a registry capture)."""
    before = {id(obj): (obj, state) for obj, _entry, state in old}
    after = {id(obj): (obj, state) for obj, _entry, state in new}
    found = []
    for key, (obj, state) in after.items():
        kind = type(obj).__qualname__
        if key not in before:
            found.append(Change(f"registered generators ({kind} at {key:#x})",
                                "not registered", "registered"))
        elif not same(before[key][1], state):
            found.append(Change(f"registered {kind} at {key:#x}", None, _DRAWN))
    found.extend(
        Change(f"registered generators ({type(obj).__qualname__} at {key:#x})",
               "registered", "unregistered")
        for key, (obj, _state) in before.items()
        if key not in after
    )
    return found
