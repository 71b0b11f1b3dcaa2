"""What a block of code left changed: snapshots of every source, compared and named.

The pytest plugin takes a snapshot before a test and another after it; every
difference is a *leak*: global state that the next test (or the rest of a
program) inherits. Snapshots come from the sources' own ``capture`` (the fast
path a scope uses), so checking a whole test suite stays cheap. Flags and
environment variables are reported by name with both values; an RNG's state
is opaque, so a changed RNG is reported as "state changed".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from ..core.equality import same
from ..core.source import Source
from ..sources.flags import plain

_SOURCES: Final = __package__.rpartition(".")[0] + ".sources"
ALL: Final = "*"
"""An allowed name meaning every source and flag (``@pytest.mark.allow_leaks()``)."""
_SHOWN_TESTS: Final = 3
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
    return tuple(source for source in sources if not _left_to_randomly(source))


def checked_snapshots(
    sources: Sequence[Source], snapshots: Sequence[object], *, randomly: bool
) -> tuple[tuple[Source, ...], tuple[object, ...]]:
    """``checked_sources`` of ``sources`` with their ``snapshots`` (a scope's, taken on entry)."""
    pairs = [
        (source, snapshot)
        for source, snapshot in zip(sources, snapshots, strict=True)
        if not (randomly and _left_to_randomly(source))
    ]
    return tuple(source for source, _ in pairs), tuple(snapshot for _, snapshot in pairs)


def _left_to_randomly(source: Source) -> bool:
    return _is(source, "python_random", "PythonRandomSource") or _is(
        source, "numpy_global", "NumPyGlobalSource"
    )


def capture(sources: Sequence[Source]) -> tuple[object, ...]:
    return tuple([source.capture() for source in sources])


def changes(
    sources: Sequence[Source],
    before: Sequence[object],
    after: Sequence[object],
    *,
    allow: Collection[str] = (),
) -> list[Change]:
    """Every difference between two snapshots of ``sources``, in source order.

    ``allow`` names sources (``Source.name``) and flags (``Change.what``)
    whose changes are not reported; ``ALL`` among them reports nothing.
    """
    if ALL in allow:
        return []
    found: list[Change] = []
    for source, old, new in zip(sources, before, after, strict=True):
        if source.name in allow or _unchanged(old, new):
            continue
        found.extend(
            change for change in _source_changes(source, old, new)
            if change.what not in allow and change.what.partition(" device ")[0] not in allow
        )
    return found


def _unchanged(old: object, new: object) -> bool:
    """``same(old, new)``, with the long int sequences of RNG states compared in one step.

    Python's ``random`` state is 625 ints, NumPy's MT19937 key 624 (kept as
    a list); ``==`` on sequences of exact ints means exactly what ``same``
    means there, at a small part of its cost. The types are checked first
    (``set(map(type, ...))``), so a bool or float among them takes the full way.
    """
    if old is new:
        return True
    kind = type(old)
    if kind is not type(new):
        return same(old, new)
    if kind is tuple or kind is list:
        old_items, new_items = cast("Sequence[object]", old), cast("Sequence[object]", new)
        if len(old_items) != len(new_items):
            return False
        if len(old_items) > _SHORT and set(map(type, old_items)) == _INTS == set(
            map(type, new_items)
        ):
            return old_items == new_items
        return all(map(_unchanged, old_items, new_items))
    if kind is dict:
        old_map, new_map = cast("dict[object, object]", old), cast("dict[object, object]", new)
        return old_map.keys() == new_map.keys() and all(
            _unchanged(value, new_map[key]) for key, value in old_map.items()
        )
    if dataclasses.is_dataclass(old) and not isinstance(old, type):
        return all(
            _unchanged(getattr(old, field.name), getattr(new, field.name))
            for field in dataclasses.fields(old)
        )
    if kind.__module__ == "torch" and kind.__name__ == "Tensor":
        return _same_tensor(old, new)
    return same(old, new)


_SHORT: Final = 8
_INTS: Final = {int}


def _same_tensor(old: Any, new: Any) -> bool:
    """An RNG state tensor (uint8, on the CPU): ``torch.equal``, exact for integers."""
    if (old.dtype, old.shape, old.device) != (new.dtype, new.shape, new.device) or (
        old.dtype.is_floating_point or old.dtype.is_complex
    ):
        return same(old, new)
    return bool(old.equal(new))


def summary_lines(leaks: Mapping[str, Sequence[str]], tests: int) -> str:
    """The end-of-run report of ``--repro-leaks=warn``: each leak with its first few tests.

    ``leaks`` maps each change (as ``str(Change)``) to the ids of the tests
    that left it; ``tests`` counts the tests, each counted once.
    """
    lines = [f"{tests} test{'s' if tests != 1 else ''} left global RNG-affecting state changed:"]
    for change, ids in sorted(leaks.items(), key=lambda item: (-len(item[1]), item[0])):
        lines.append(f"{change}  ({len(ids)} test{'s' if len(ids) != 1 else ''})")
        lines.extend(f"    {test_id}" for test_id in ids[:_SHOWN_TESTS])
        if len(ids) > _SHOWN_TESTS:
            lines.append(f"    ... and {len(ids) - _SHOWN_TESTS} more")
    lines.append(
        "Restore it in the test or run the code in a scope (@pytest.mark.deterministic, "
        "--repro-seed). To accept it: @pytest.mark.allow_leaks(\"torch (cpu)\") on a test, "
        "or `repro_leaks_allow = torch (cpu)` in the ini file (or --repro-leaks-allow) for "
        "every test; -W error::repro_ctx.pytest_plugin.StateLeakWarning turns each into an error."
    )
    return "\n".join(lines)


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
