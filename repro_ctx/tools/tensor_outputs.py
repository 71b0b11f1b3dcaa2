"""Output files that hold tensors, compared as tensors for ``repro-ctx check``.

A checkpoint that differs by one weight differs somewhere inside a zip or an
array file: a byte offset says nothing. Files that torch or NumPy can read
(``.pt``/``.pth`` with ``torch.load(weights_only=True)``, ``.npy``, ``.npz``,
and ``.safetensors`` where the safetensors package is installed) are loaded
and walked instead: the report names the first differing key path
(``state_dict['b.weight']``), its shape and dtype, how many elements differ,
the first of them, and the max absolute and relative difference.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SUFFIXES = (".pt", ".pth", ".npy", ".npz", ".safetensors")
_SHOWN = 60  # characters of a non-tensor value shown


class NotTensors(Exception):
    """The file cannot be read as tensors; the message says why."""


def holds_tensors(name: str) -> bool:
    """Whether ``name``'s suffix is one that is compared as tensors."""
    return os.path.splitext(name)[1].lower() in SUFFIXES


def load(path: str, name: str) -> tuple[str, object]:
    """The contents of ``path`` (read as the suffix of ``name`` says), and what to call its root."""
    suffix = os.path.splitext(name)[1].lower()
    try:
        if suffix in (".pt", ".pth"):
            import torch

            data = torch.load(path, map_location="cpu", weights_only=True)
            return ("state_dict" if isinstance(data, Mapping) else "checkpoint"), data
        if suffix == ".safetensors":
            from importlib import import_module

            try:  # optional, and untyped for the type checker
                reader: Any = import_module("safetensors.torch")
            except ImportError:
                raise NotTensors(
                    "install safetensors to compare .safetensors files as tensors"
                ) from None
            return "tensors", reader.load_file(path, device="cpu")
        import numpy as np

        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return "arrays", {key: archive[key] for key in archive.files}
        return "array", np.load(path, allow_pickle=False)
    except NotTensors:
        raise
    except Exception as exc:  # any reader's error: fall back to comparing bytes
        first_line = (str(exc).splitlines() or [""])[0]
        if len(first_line) > _SHOWN * 2:
            first_line = first_line[: _SHOWN * 2 - 3] + "..."
        raise NotTensors(f"{type(exc).__name__}: {first_line}") from None


@dataclass(frozen=True)
class TensorDifference:
    """The first place two loaded outputs differ.

    ``path`` is the key path (``state_dict['b.weight']``) and ``what`` one line
    for everything but differing values; for those, ``shape``, ``dtype``,
    ``count`` of ``size`` elements, the ``index`` of the first, the two values
    there, and the max absolute and relative (``|a-b| / max(|a|,|b|)``)
    difference over the differing elements.
    """

    path: str
    what: str
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    count: int = 0
    size: int = 0
    index: tuple[int, ...] | None = None
    values: tuple[str, str] = ("", "")
    max_abs: float | None = None
    max_rel: float | None = None

    def describe(self, name: str, label: str) -> str:
        what = self.what.replace("{label}", label)
        lines = [f"  {name}: {self.path} {what}"]
        if self.index is not None:
            at = ", ".join(map(str, self.index))
            lines.append(
                f"    {self.count} of {self.size} elements differ; the first at "
                f"{self.path}[{at}]: run 1 {self.values[0]}, {label} {self.values[1]}"
            )
            if self.max_abs is not None and self.max_rel is not None:
                lines.append(
                    f"    max abs diff {self.max_abs:.3g}, max rel diff {self.max_rel:.3g}  "
                    "(|a-b| / max(|a|,|b|))"
                )
        return "\n".join(lines)


def first_difference(a: object, b: object, path: str) -> TensorDifference | None:
    """Walk two loaded outputs in step; the first difference, or ``None`` if equal."""
    if _is_tensor(a) or _is_tensor(b):
        if not (_is_tensor(a) and _is_tensor(b)):
            return _kind_difference(a, b, path)
        return _tensor_difference(a, b, path)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return _mapping_difference(a, b, path)
    if isinstance(a, (list, tuple)) and type(a) is type(b):
        assert isinstance(b, (list, tuple))
        for position, (x, y) in enumerate(zip(a, b, strict=False)):
            found = first_difference(x, y, f"{path}[{position}]")
            if found is not None:
                return found
        if len(a) != len(b):
            return TensorDifference(path, f"has {len(a)} items in run 1, {len(b)} in {{label}}")
        return None
    if type(a) is not type(b):
        return _kind_difference(a, b, path)
    if a != b and not (_is_nan(a) and _is_nan(b)):
        return TensorDifference(path, f"is {_short(a)} in run 1, {_short(b)} in {{label}}")
    return None


def _mapping_difference(
    a: Mapping[Any, Any], b: Mapping[Any, Any], path: str
) -> TensorDifference | None:
    for key, value in a.items():
        where = f"{path}[{key!r}]"
        if key not in b:
            return TensorDifference(where, "is only in run 1")
        found = first_difference(value, b[key], where)
        if found is not None:
            return found
    for key in b:
        if key not in a:
            return TensorDifference(f"{path}[{key!r}]", "is only in {label}")
    if list(a) != list(b):
        return TensorDifference(path, "has the same keys in another order in {label}")
    return None


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _is_tensor(value: object) -> bool:
    module = type(value).__module__
    return (module.startswith("torch") and hasattr(value, "dtype")) or (
        module == "numpy" and type(value).__name__ == "ndarray"
    )


def _kind_difference(a: object, b: object, path: str) -> TensorDifference:
    return TensorDifference(
        path, f"is a {type(a).__name__} in run 1, a {type(b).__name__} in {{label}}"
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _as_numpy(value: Any) -> Any:
    """The array with the tensor's values: exact (bfloat16 and float8 widen without loss)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value
    import torch

    tensor = value.detach().cpu()
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    if tensor.is_quantized:
        tensor = tensor.int_repr()
    if tensor.dtype == torch.bfloat16 or "float8" in str(tensor.dtype):
        tensor = tensor.float()
    elif tensor.dtype == torch.complex32:
        tensor = tensor.to(torch.complex64)
    return tensor.resolve_conj().resolve_neg().numpy()


def _dtype(value: Any) -> str:
    return str(value.dtype)


def _tensor_difference(a: Any, b: Any, path: str) -> TensorDifference | None:
    import numpy as np

    shape_a, shape_b = tuple(a.shape), tuple(b.shape)
    if shape_a != shape_b:
        return TensorDifference(path, f"has shape {shape_a} in run 1, {shape_b} in {{label}}")
    if _dtype(a) != _dtype(b):
        return TensorDifference(
            path, f"has dtype {_dtype(a)} in run 1, {_dtype(b)} in {{label}}"
        )
    x, y = np.ascontiguousarray(_as_numpy(a)), np.ascontiguousarray(_as_numpy(b))
    if x.size == 0:
        return None
    # bitwise, as the file bytes are: -0.0 vs 0.0 and NaN payloads differ too
    differ = (x.reshape(x.size, -1).view(np.uint8) != y.reshape(y.size, -1).view(np.uint8))
    rows = np.flatnonzero(differ.any(axis=1))
    if rows.size == 0:
        return None
    first = int(rows[0])
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    max_abs = max_rel = None
    if x.dtype.kind in "biufc":
        max_abs, max_rel = _max_differences(flat_x[rows], flat_y[rows])
    return TensorDifference(
        path, f"differs: shape {shape_a}, {_dtype(a)}", shape=shape_a, dtype=_dtype(a),
        count=int(rows.size), size=int(x.size),
        index=tuple(int(i) for i in np.unravel_index(first, shape_a)) if shape_a else (),
        values=(str(flat_x[first]), str(flat_y[first])), max_abs=max_abs, max_rel=max_rel,
    )


def _max_differences(x: Any, y: Any) -> tuple[float, float]:
    """Max ``|a-b|`` and ``|a-b| / max(|a|,|b|)``; NaN vs NaN is 0, NaN vs a number inf."""
    import numpy as np

    wide = np.complex128 if x.dtype.kind == "c" else np.float64
    x, y = x.astype(wide), y.astype(wide)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        absolute = np.abs(x - y)
        absolute = np.where(same, 0.0, np.where(np.isnan(absolute), np.inf, absolute))
        relative = absolute / np.maximum(np.abs(x), np.abs(y))
        relative = np.where(same, 0.0, np.where(np.isnan(relative), np.inf, relative))
    return float(absolute.max()), float(relative.max())


def tensor_difference(reference: str, other: str, name: str) -> TensorDifference | None:
    """Load both files (``name`` gives the format) and find their first difference."""
    root, data_a = load(reference, name)
    _root, data_b = load(other, name)
    return first_difference(data_a, data_b, root)

