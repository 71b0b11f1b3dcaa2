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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._source import Source

if TYPE_CHECKING:
    from ._flags import Flag

_UNSET = "unset"
_DRAWN = "state changed (drawn from or reseeded outside a scope)"


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
    from ._accelerators import LazyDeviceSource
    from ._environment import EnvironmentSource
    from ._flags import FlagsSource
    from ._registry import RegistrySource
    from ._tf32 import TF32Source

    if isinstance(source, FlagsSource):
        return _flag_changes(source, old, new)
    if isinstance(source, TF32Source):
        return _tf32_changes(source, old, new)
    if isinstance(source, EnvironmentSource):
        return _environment_changes(source, old, new)
    if isinstance(source, LazyDeviceSource):
        return _device_changes(source, old, new)
    if isinstance(source, RegistrySource):
        return _registry_changes(old, new)
    if same(old, new):
        return []
    return [Change(source.name, None, _DRAWN)]


def _flag_changes(source: object, old: object, new: object) -> list[Change]:
    from ._flags import FlagsSource, plain

    assert isinstance(source, FlagsSource)
    assert isinstance(old, tuple)
    assert isinstance(new, tuple)
    return [
        Change(flag.name, repr(plain(a)), repr(plain(b)))
        for flag, a, b in zip(source.flags, old, new, strict=True)
        if a != b and not _first_read(flag, a, b)
    ]


def _first_read(flag: Flag, old: object, new: object) -> bool:
    """A flag unreadable before (its module not imported) that now reads its import-time value."""
    return old is None and flag.initial is not None and new == flag.initial()


def _tf32_changes(source: object, old: object, new: object) -> list[Change]:
    from ._tf32 import TF32Snapshot, TF32Source

    assert isinstance(source, TF32Source)
    assert isinstance(old, TF32Snapshot)
    assert isinstance(new, TF32Snapshot)
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


def _environment_changes(source: object, old: object, new: object) -> list[Change]:
    from ._environment import EnvironmentSource

    assert isinstance(source, EnvironmentSource)
    assert isinstance(old, tuple)
    assert isinstance(new, tuple)
    return [
        Change(f"os.environ[{name!r}]", _env_value(a), _env_value(b))
        for name, a, b in zip(source.variables, old, new, strict=True)
        if a != b
    ]


def _env_value(value: str | None) -> str:
    return _UNSET if value is None else repr(value)


def _device_changes(source: object, old: object, new: object) -> list[Change]:
    """An accelerator's generators; first initialisation during the block is no leak.

    Before CUDA (or XPU) initialises there is no generator state to leak: it
    is created, from whatever seeds are pending, at initialisation.
    """
    from ._accelerators import Initialised, LazyDeviceSource, Pending

    assert isinstance(source, LazyDeviceSource)
    if isinstance(old, Initialised) and isinstance(new, Initialised):
        return [
            Change(f"{source.name} device {index}", None, _DRAWN)
            for index, (a, b) in enumerate(zip(old.states, new.states, strict=True))
            if not same(a, b)
        ]
    if isinstance(old, Pending) and isinstance(new, Pending):
        if old.tracker is new.tracker and old.queued == new.queued:
            return []
        return [Change(source.name, "no pending seed calls", "seed calls queued for "
                       "initialisation")]
    return []


def _registry_changes(old: object, new: object) -> list[Change]:
    assert isinstance(old, tuple)
    assert isinstance(new, tuple)
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


def same(a: object, b: object) -> bool:
    """Exact equality of two snapshots: tuples, dataclasses, tensors, arrays, plain values."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list))
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    module = type(a).__module__
    if module.startswith("torch"):
        return bool(a.equal(b))  # type: ignore[attr-defined]
    if module.startswith("numpy") and hasattr(a, "shape"):
        import numpy as np

        return bool(np.array_equal(a, b))  # type: ignore[arg-type]
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return all(
            same(getattr(a, field.name), getattr(b, field.name))
            for field in dataclasses.fields(a)
        )
    return bool(a == b)
