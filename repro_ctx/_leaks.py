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
import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ._source import Source

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
        if not _is(source, "_python_random", "PythonRandomSource")
        and not _is(source, "_numpy_random", "NumPyGlobalSource")
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
    if _is(source, "_flags", "FlagsSource"):
        return _flag_changes(source, old, new)
    if _is(source, "_tf32", "TF32Source"):
        return _tf32_changes(source, old, new)
    if _is(source, "_environment", "EnvironmentSource"):
        return _environment_changes(source, old, new)
    if _is(source, "_accelerators", "LazyDeviceSource"):
        return _device_changes(source, old, new)
    if _is(source, "_registry", "RegistrySource"):
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
    module = f"{__package__}.{module}"
    return any(
        cls.__module__ == module and cls.__qualname__ == qualname for cls in type(obj).__mro__
    )


def _flag_changes(source: Any, old: Any, new: Any) -> list[Change]:
    from ._flags import plain

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
    if _is(old, "_accelerators", "Initialised") and _is(new, "_accelerators", "Initialised"):
        return [
            Change(f"{source.name} device {index}", None, _DRAWN)
            for index, (a, b) in enumerate(zip(old.states, new.states, strict=True))
            if not same(a, b)
        ]
    if _is(old, "_accelerators", "Pending") and _is(new, "_accelerators", "Pending"):
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


def same(a: object, b: object) -> bool:
    """Exact, structural equality of two snapshots.

    Never by class identity, which a re-import changes (see ``_is``): values
    of classes with the same qualified name compare by their contents.
    Tuples (NamedTuples too), lists and dicts compare item by item; enums by
    name and value; NumPy arrays and scalars and torch tensors by dtype,
    shape and bytes; floats bit for bit (a NaN equals the same NaN);
    dataclasses field by field; anything else with ``==``.
    """
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b) and not _same_name(kind, type(b)):
        return False
    if kind is float:
        return _float_bits(a) == _float_bits(b)  # type: ignore[arg-type]
    if kind in _PLAIN:
        return bool(a == b)
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list))
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same(value, b[key]) for key, value in a.items())
    if isinstance(a, enum.Enum) or hasattr(kind, "__members__"):  # torch's enums are pybind's
        return bool(getattr(a, "name", a) == getattr(b, "name", b)) and same(
            getattr(a, "value", None), getattr(b, "value", None)
        )
    array = _array_view(a)
    if array is not None:
        other = _array_view(b)
        return other is not None and array == other
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return all(
            same(getattr(a, field.name), getattr(b, field.name))
            for field in dataclasses.fields(a)
        )
    if kind is not type(b) and hasattr(a, "__dict__") and hasattr(b, "__dict__"):
        return same(vars(a), vars(b))  # one class, imported twice
    return bool(a == b)


_PLAIN: Final = frozenset({int, bool, str, bytes, bytearray, type(None), complex})


def _same_name(a: type, b: type) -> bool:
    return a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__


def _float_bits(value: float) -> bytes:
    return struct.pack("<d", value)


def _array_view(value: object) -> tuple[str, tuple[int, ...], bytes] | None:
    """(dtype, shape, bytes) of a NumPy array or scalar or a torch tensor, else ``None``."""
    module = type(value).__module__.partition(".")[0]
    if module == "numpy" and hasattr(value, "tobytes") and hasattr(value, "dtype"):
        array: Any = value
        return (str(array.dtype), tuple(array.shape), array.tobytes())
    if module == "torch" and hasattr(value, "detach") and hasattr(value, "dtype"):
        import torch

        tensor: Any = value
        flat = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        return (str(tensor.dtype), tuple(tensor.shape), flat.numpy().tobytes())
    return None
