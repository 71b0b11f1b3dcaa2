"""What the recorder keeps of one op's output: a digest of its bytes, a norm, a sample.

Also how two runs' captured outputs differ in value. torch is handed in or
imported inside the functions, so importing this module imports no torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .records import OutputRecord

if TYPE_CHECKING:
    import torch


# sha256, truncated: hardware-accelerated (SHA-NI, ARMv8 crypto), it hashed a
# 2 MB activation 3x faster than blake2b on the CPUs this was measured on.
_DIGEST_CHARS = 32


def leaves(out: object) -> Iterator[object]:
    if isinstance(out, (tuple, list)):
        for item in out:
            yield from leaves(item)
    elif out is not None:
        yield out


def _parts(torch: Any, tensor: torch.Tensor) -> list[torch.Tensor] | None:
    """The dense tensors that hold ``tensor``'s bytes; ``None`` if they cannot be read."""
    if tensor.device.type == "meta" or tensor.is_nested:
        return None
    if tensor.is_quantized:
        return [tensor.int_repr()]
    layout = tensor.layout
    if layout == torch.strided:
        return [tensor]
    if layout == torch.sparse_coo:
        return [tensor._indices(), tensor._values()]
    if layout in (torch.sparse_csr, torch.sparse_bsr):
        return [tensor.crow_indices(), tensor.col_indices(), tensor.values()]
    if layout in (torch.sparse_csc, torch.sparse_bsc):
        return [tensor.ccol_indices(), tensor.row_indices(), tensor.values()]
    return None


def to_host(tensor: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A contiguous CPU tensor with ``tensor``'s values, and whether it is a copy.

    A device tensor is made contiguous on the device and then copied to the
    host once; a CPU tensor is read in place when already contiguous.
    """
    tensor = tensor.detach()
    if tensor.is_conj():
        tensor = tensor.resolve_conj()
    if tensor.is_neg():
        tensor = tensor.resolve_neg()
    if tensor.device.type != "cpu":
        return tensor.contiguous().cpu(), True
    if tensor.is_contiguous():
        return tensor, False
    return tensor.contiguous(), True


def describe_output(
    torch: Any, leaf: object, hashed: bool, samples: int
) -> tuple[OutputRecord, list[tuple[torch.Tensor, bool]]]:
    """The record of one op output, and its host copies (for the caller to keep or drop)."""
    if not isinstance(leaf, torch.Tensor):
        if isinstance(leaf, (bool, int, float, complex)):
            digest = hashlib.sha256(repr(leaf).encode()).hexdigest()[:_DIGEST_CHARS]
            size = float(abs(leaf))
            host = torch.tensor(leaf)
            return OutputRecord((), type(leaf).__name__, digest, size,
                                (size,) if samples else ()), [(host, True)]
        return OutputRecord((), type(leaf).__name__, None, None), []
    dtype = str(leaf.dtype)
    try:
        shape = tuple(leaf.shape)
    except RuntimeError:  # nested tensors have no single shape
        shape = ()
    parts = _parts(torch, leaf) if hashed else None
    if parts is None:
        return OutputRecord(shape, dtype, None, None), []
    hasher = hashlib.sha256()
    try:
        hosts = [to_host(part) for part in parts]
        for host, _copied in hosts:
            hasher.update(host.reshape(-1).view(torch.uint8).numpy().data)
    except RuntimeError:
        # Tensor subclasses (FakeTensor, wrappers) may have no bytes to read:
        # recorded without a hash rather than breaking the user's program.
        return OutputRecord(shape, dtype, None, None), []
    values = hosts[-1][0]
    norm = _norm(torch, values)
    sample: tuple[float, ...] = ()
    if samples and values.numel():
        flat = (values.abs() if values.is_complex() else values).reshape(-1)
        positions = torch.linspace(0, flat.numel() - 1, min(samples, flat.numel()))
        sample = tuple(flat[positions.round().long()].to(torch.float64).tolist())
    return OutputRecord(shape, dtype, hasher.hexdigest()[:_DIGEST_CHARS], norm, sample), hosts


def _norm(torch: Any, values: torch.Tensor) -> float | None:
    """The L2 norm of floating outputs, accumulated in float32 or wider: a magnitude to plot.

    Not for integers and bools, and not in float64: a widening copy of every
    output cost 100x the float32 reduction on a 2 MB activation.
    """
    if values.is_complex() and values.element_size() < 8:
        values = values.to(torch.complex64)
    elif values.is_floating_point() and values.element_size() < 4:
        values = values.to(torch.float32)
    elif not (values.is_floating_point() or values.is_complex()):
        return None
    return float(torch.linalg.vector_norm(values))


def value_differences(
    a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]
) -> tuple[float, float]:
    """Max ``|a-b|`` and ``|a-b| / max(|a|,|b|)`` over paired outputs, in float64.

    NaN against NaN (and inf against the same inf) counts as equal; NaN
    against a number as an infinite difference.
    """
    import torch

    max_abs = max_rel = 0.0
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape or x.numel() == 0:
            continue
        wide = torch.complex128 if x.is_complex() or y.is_complex() else torch.float64
        x, y = x.to(wide), y.to(wide)
        same = (x == y) | (torch.isnan(x) & torch.isnan(y))
        diff = (x - y).abs()
        diff = torch.where(same, 0.0, torch.where(torch.isnan(diff), torch.inf, diff))
        rel = diff / torch.maximum(x.abs(), y.abs())
        rel = torch.where(same, 0.0, torch.where(torch.isnan(rel), torch.inf, rel))
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float(rel.max()))
    return max_abs, max_rel
