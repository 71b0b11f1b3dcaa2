"""What a recorded op is, and how two recorded ops compare.

Pure data: ``OpRecord`` and its outputs, ``Cause``, and the comparisons that
find where two streams part and by how much.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# Ops whose output is uninitialised memory: its bytes are noise unless
# fill_uninitialized_memory is on, and the op that fills it is recorded next.
UNINITIALISED = frozenset({
    "empty", "empty_like", "empty_strided", "empty_permuted", "new_empty",
    "new_empty_strided", "resize_", "resize_as_", "_empty_affine_quantized",
    "_empty_per_channel_affine_quantized",
})


Kind = Literal["matched", "values", "stream"]


CauseKind = Literal[
    "uncovered_rng", "state_outside_fn", "os_entropy", "nondeterministic_kernel",
    "uninitialized_memory", "hash_order", "flags_differ", "environment", "control_flow",
    "unknown",
]

# Floating dtypes: (struct format, bits kept of the packed word, mantissa bits).
_FLOATS = {
    "torch.float64": ("<d", "<Q", 64, 52), "torch.float32": ("<f", "<I", 32, 23),
    "torch.float16": ("<e", "<H", 16, 10), "torch.bfloat16": ("<f", "<I", 16, 7),
}


def base_name(name: str) -> str:
    """``aten.index_add_.default`` -> ``index_add_``."""
    return name.split(".")[1] if name.count(".") >= 2 else name


@dataclass(frozen=True, slots=True)
class Cause:
    """Why two runs likely part, and the one change that most likely fixes it.

    ``kind`` names the cause for programs; ``reason`` is one sentence for
    people; ``fix`` is the line to act on.
    """

    kind: CauseKind
    """The cause's name, for programs: one of the kinds in the divergence guide's table."""
    reason: str
    """One sentence for people: what the evidence shows."""
    fix: str
    """The line to act on: the change that most likely makes the runs agree."""


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One output of an op: its shape and dtype, and a hash of its bytes.

    ``digest`` is ``None`` for outputs that are not hashed: views (their bytes
    are an input's, hashed where that input was produced), uninitialised
    memory (``empty`` and friends) and tensors whose bytes cannot be read
    (meta, nested, some subclasses). ``norm`` (L2, of floating outputs) gives
    a magnitude to compare along the stream; ``sample`` holds evenly spaced
    values, only in files written by ``record``.
    """

    shape: tuple[int, ...]
    dtype: str
    digest: str | None
    norm: float | None
    sample: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class OpRecord:
    """One executed torch op: what ran, where in the model and the code, and what it gave.

    For a backward op, ``module``, ``file`` and ``line`` are those of the
    forward op whose autograd node ran it (``grad_fn``), when known.
    ``uncovered_rng`` is set when the op drew from a ``torch.Generator`` that
    the scope neither seeds nor restores: the name it has in the calling
    code (``"g"``, ``"self.rng"``), or ``""`` if none was found.
    """

    index: int
    """The op's position in its run's stream (0-based)."""
    name: str
    """The aten op, e.g. ``"aten.mul.Tensor"``."""
    phase: Literal["forward", "backward"]
    """Whether it ran in the forward pass or in autograd's backward."""
    module: str
    """The module that ran it, e.g. ``"Net.fc1 (Linear)"``; empty outside any module."""
    file: str
    """The source file of the user code that called it; empty if unknown."""
    line: int
    """The line in ``file``."""
    grad_fn: str
    """The autograd node it belongs to (backward ops), e.g. ``"MulBackward0"``; else empty."""
    outputs: tuple[OutputRecord, ...]
    """One record per output: shape, dtype, a hash of the bytes, the norm."""
    uncovered_rng: str | None = None
    """The name of a ``torch.Generator`` it drew from that no scope covers (see above)."""

    @property
    def source(self) -> str:
        """``file:line``, or ``"(unknown)"``."""
        return f"{self.file}:{self.line}" if self.file else "(unknown)"

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """The outputs' shapes."""
        return tuple(out.shape for out in self.outputs)

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The outputs' dtypes, as strings."""
        return tuple(out.dtype for out in self.outputs)

    @property
    def compared(self) -> bool:
        """Whether any output was hashed: an op with none can never be seen to differ."""
        return any(out.digest is not None for out in self.outputs)


def compare_ops(a: OpRecord, b: OpRecord) -> Literal["stream", "values"] | None:
    """``None``: equal; ``"stream"``: another op, shape or dtype ran; ``"values"``: bytes differ."""
    if a.name != b.name or a.shapes != b.shapes or a.dtypes != b.dtypes:
        return "stream"
    for x, y in zip(a.outputs, b.outputs, strict=True):
        if x.digest != y.digest:
            return "values"
    return None


def first_difference(
    a: Sequence[OpRecord], b: Sequence[OpRecord], start: int = 0, *, stream_only: bool = False
) -> tuple[Kind, int] | None:
    """The first index from ``start`` where the streams differ, and how; ``None`` if nowhere."""
    common = min(len(a), len(b))
    for index in range(start, common):
        kind = compare_ops(a[index], b[index])
        if kind is not None and (kind == "stream" or not stream_only):
            return kind, index
    if len(a) != len(b):
        return "stream", common
    return None


def norm_difference(a: OpRecord, b: OpRecord) -> float:
    """Relative change of the output norms, the per-op difference plotted along the stream.

    0 where the bytes are equal. Bytes can differ with equal norms (a
    permutation, a 1-ulp change lost in the sum): that still counts as a
    difference, shown by the report, just with no magnitude here.
    """
    worst = 0.0
    for x, y in zip(a.outputs, b.outputs, strict=True):
        if x.digest == y.digest or x.norm is None or y.norm is None:
            continue
        if x.norm == y.norm:
            continue
        if not (math.isfinite(x.norm) and math.isfinite(y.norm)):
            return math.inf
        worst = max(worst, abs(x.norm - y.norm) / max(abs(x.norm), abs(y.norm)))
    return worst


def sample_differences(a: OpRecord, b: OpRecord) -> tuple[float, float] | None:
    """Max abs and rel difference over the stored samples; ``None`` if they agree or are absent."""
    max_abs = max_rel = 0.0
    compared = False
    for x, y in zip(a.outputs, b.outputs, strict=True):
        if x.digest == y.digest or not x.sample or len(x.sample) != len(y.sample):
            continue
        compared = True
        for p, q in zip(x.sample, y.sample, strict=True):
            absolute, relative = element_difference(p, q)
            max_abs = max(max_abs, absolute)
            max_rel = max(max_rel, relative)
    if not compared or max_abs == 0.0:
        return None
    return max_abs, max_rel


def element_difference(p: float, q: float) -> tuple[float, float]:
    """``|p-q|`` and ``|p-q| / max(|p|,|q|)``; NaN vs NaN is equal, NaN vs a number is inf."""
    if p == q or (math.isnan(p) and math.isnan(q)):
        return 0.0, 0.0
    absolute = abs(p - q)
    if math.isnan(absolute):
        return math.inf, math.inf
    relative = absolute / max(abs(p), abs(q))
    return absolute, math.inf if math.isnan(relative) else relative


def ulp_distance(p: float, q: float, dtype: str) -> int | None:
    """How many values of ``dtype`` lie between ``p`` and ``q``; ``None``: not a finite float pair.

    ``p`` and ``q`` are values of ``dtype`` (as the samples hold them). A
    bfloat16 is the top half of a float32, so its word is the float32's
    shifted.
    """
    entry = _FLOATS.get(dtype)
    if entry is None or not (math.isfinite(p) and math.isfinite(q)):
        return None
    float_format, word_format, bits, _ = entry
    words = []
    for value in (p, q):
        try:
            (word,) = struct.unpack(word_format, struct.pack(float_format, value))
        except OverflowError:
            return None
        word >>= struct.calcsize(word_format) * 8 - bits
        sign = 1 << (bits - 1)
        words.append(-(word & (sign - 1)) if word & sign else word)  # monotonic in value
    return int(abs(words[0] - words[1]))


def max_ulp_difference(a: OpRecord, b: OpRecord) -> tuple[int, str] | None:
    """The largest difference in ulps over the stored samples, and its dtype.

    ``None`` without floating samples that differ (another dtype, no samples,
    samples that agree, a NaN or infinity among them).
    """
    worst: tuple[int, str] | None = None
    for x, y in zip(a.outputs, b.outputs, strict=True):
        if x.digest == y.digest or not x.sample or len(x.sample) != len(y.sample):
            continue
        for p, q in zip(x.sample, y.sample, strict=True):
            distance = ulp_distance(p, q, x.dtype)
            if distance is None:
                return None
            if distance and (worst is None or distance > worst[0]):
                worst = (distance, x.dtype)
    return worst


def last_bits(distance: int, dtype: str) -> bool:
    """Whether ``distance`` ulps touch only the last bits: at most a third of the mantissa."""
    return distance.bit_length() <= _FLOATS[dtype][3] // 3
