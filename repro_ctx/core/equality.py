"""Exact, structural equality of two snapshots: what "the state did not change" means.

Leak checks, plugin snapshots and ``RNGState`` comparisons all ask it. Pure
Python: NumPy and torch values are recognised by their module's name, and
torch is imported only for a tensor that is already there.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from typing import Any, Final


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
