"""Why two runs part, from what the recorder and the replays saw, and what to change.

Pure data, no torch: ``compare`` of two files classifies on a machine
without the GPU that wrote them. The evidence is gathered by
``find_divergence``: the op records of both runs, and for each replay the
divergent op's inputs (hashed before it ran), its outputs, which op wrote
each input's memory and whether the input outlived ``fn``.

The classes are checked from the most specific evidence to the least:
an op that drew from an uncovered ``torch.Generator``; across processes,
different settings, string hashing or environments; equal inputs giving different outputs
(the kernel); inputs that differ, by where they came from; and last, what
the op's name and the flags suggest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .environment_cause import ENVIRONMENT_FLAGS, environment_cause
from .records import UNINITIALISED, Cause, Kind, OpRecord, base_name
from .report import ALGORITHMS_FLAG, FILL_FLAG, at

# Ops torch documents as nondeterministic (the use_deterministic_algorithms
# docs): on some device they use atomics or have no deterministic kernel,
# and deterministic algorithms switch them to a deterministic one or raise.
NONDETERMINISTIC = frozenset({
    "index_add", "index_add_", "index_copy", "index_copy_", "index_put", "index_put_",
    "_index_put_impl_", "_unsafe_index_put", "put", "put_", "scatter", "scatter_",
    "scatter_add", "scatter_add_", "scatter_reduce", "scatter_reduce_", "gather",
    "index_select_backward", "embedding_dense_backward", "_embedding_bag_backward",
    "_embedding_bag_dense_backward", "embedding_bag", "_embedding_bag",
    "convolution", "_convolution", "convolution_backward", "cudnn_convolution",
    "cudnn_convolution_transpose", "bmm", "cumsum", "histc", "bincount", "kthvalue",
    "median", "nll_loss_forward", "nll_loss2d_forward", "_ctc_loss", "_ctc_loss_backward",
    "avg_pool3d_backward", "_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward",
    "adaptive_max_pool2d_backward", "adaptive_max_pool3d_backward",
    "max_pool3d_with_indices_backward", "fractional_max_pool2d_backward",
    "fractional_max_pool3d_backward", "max_unpool2d", "max_unpool3d",
    "upsample_linear1d_backward", "upsample_bilinear2d_backward",
    "upsample_bicubic2d_backward", "upsample_trilinear3d_backward",
    "reflection_pad1d_backward", "reflection_pad2d_backward", "reflection_pad3d_backward",
    "replication_pad1d_backward", "replication_pad2d_backward", "replication_pad3d_backward",
    "grid_sampler_2d_backward", "grid_sampler_3d_backward", "repeat_interleave",
    "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_flash_attention_backward",
})
# An op that takes Python or NumPy data into torch: its bytes come from outside torch.
_LIFTS = frozenset({"lift_fresh", "lift_fresh_copy", "lift"})


@dataclass(frozen=True, slots=True)
class OpSample:
    """The divergent op as one replay ran it.

    Per input (tensor or not, in argument order): a digest of its value
    before the op ran, the index of the op that last wrote its memory
    (``None``: no recorded op did) and whether it was still alive after
    ``fn`` returned (held by something outside ``fn``). ``outputs`` are the
    output digests, as in the op record.
    """

    inputs: tuple[str | None, ...]
    origins: tuple[int | None, ...]
    outlives: tuple[bool, ...]
    outputs: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the replays saw at the divergent op; ``samples`` only from replays that reached it."""

    samples: tuple[OpSample, ...]


def _digests(op: OpRecord | None) -> tuple[str | None, ...] | None:
    return None if op is None else tuple(out.digest for out in op.outputs)


def _is_setting(name: str) -> bool:
    """A flag or a variable, not a device fact (``initialised``, ``devices``)."""
    return "." in name or name.isupper()


def _algorithms_on(flags: Mapping[str, str]) -> bool:
    return flags.get(ALGORITHMS_FLAG, "").startswith("[True")


def _where(op: OpRecord) -> str:
    return f" at {os.path.basename(op.file)}:{op.line}" if op.file else ""


def classify(
    kind: Kind,
    index: int | None,
    stream_a: Sequence[OpRecord],
    stream_b: Sequence[OpRecord],
    flags: Mapping[str, str],
    flags_b: Mapping[str, str],
    labels: tuple[str, str],
    *,
    evidence: Evidence | None = None,
    processes: tuple[Mapping[str, object], Mapping[str, object]] | None = None,
) -> Cause | None:
    """The likely cause of the divergence at ``index``; ``None`` when the runs matched.

    ``processes`` are the headers of two files written by ``record`` in
    other processes, for the causes that only exist across processes.
    """
    if kind == "matched" or index is None:
        return None
    op, other = at(stream_a, index), at(stream_b, index)
    for candidate in (op, other):
        if candidate is not None and candidate.uncovered_rng is not None:
            return _uncovered_rng(candidate)
    if processes is not None:
        across = _across_processes(flags, flags_b, labels, processes, op, other)
        if across is not None:
            return across
    if kind == "stream":
        return _control_flow(index, op, other)
    assert op is not None
    assert other is not None
    if evidence is not None and len(evidence.samples) >= 2:
        return _from_evidence(op, other, stream_a, flags, evidence.samples)
    return _from_names(op, stream_a, flags, across_processes=processes is not None)


def _uncovered_rng(op: OpRecord) -> Cause:
    name = op.uncovered_rng or "g"
    shown = f"`{op.uncovered_rng}`" if op.uncovered_rng else "a torch.Generator"
    return Cause(
        "uncovered_rng",
        f"op #{op.index} {op.name} draws from {shown}{_where(op)}, which the scope neither "
        "seeds nor restores, so it moved on between runs",
        f"pass generators=[{name}] (to find_divergence or deterministic), or register({name}) "
        "where it is created",
    )


def _across_processes(
    flags: Mapping[str, str],
    flags_b: Mapping[str, str],
    labels: tuple[str, str],
    processes: tuple[Mapping[str, object], Mapping[str, object]],
    op: OpRecord | None,
    other_op: OpRecord | None,
) -> Cause | None:
    a_label, b_label = labels
    header_a, header_b = processes
    first, second = header_a.get("environment"), header_b.get("environment")
    recorded = isinstance(first, Mapping) and isinstance(second, Mapping)
    for name, value in flags.items():
        other = flags_b.get(name, value)
        if recorded and name in ENVIRONMENT_FLAGS:
            continue  # the environment records name it, with why it matters
        if _is_setting(name) and other != value:
            return Cause(
                "flags_differ",
                f"the runs used different settings: {name} = {value} ({a_label}) vs "
                f"{other} ({b_label})",
                "run both with the same deterministic() options, torch version and thread count",
            )
    if isinstance(first, Mapping) and isinstance(second, Mapping):
        # before hashing: a kernel's bytes follow the build and the machine, not set order
        found = environment_cause(first, second, op, other_op)
        if found is not None:
            return found
    probe_a, probe_b = header_a.get("hash_probe"), header_b.get("hash_probe")
    if probe_a is not None and probe_b is not None and probe_a != probe_b:
        seeds = (header_a.get("PYTHONHASHSEED"), header_b.get("PYTHONHASHSEED"))
        shown = [("unset" if seed is None else str(seed)) for seed in seeds]
        return Cause(
            "hash_order",
            "the two processes hash str and bytes differently (PYTHONHASHSEED "
            f"{shown[0]} in {a_label}, {shown[1]} in {b_label}): set order, and whatever "
            "follows it, differs",
            "start both with `repro-ctx run -- python ...`, which fixes PYTHONHASHSEED "
            "(or set PYTHONHASHSEED=0 before Python starts)",
        )
    return None


def _control_flow(index: int, op: OpRecord | None, other: OpRecord | None) -> Cause:
    shown = op if op is not None else other
    assert shown is not None
    return Cause(
        "control_flow",
        f"from op #{index} on the runs ran different ops{_where(shown)}: Python code took "
        "another path, decided by something other than the seeded RNGs (state kept "
        "between calls, time, OS entropy or an unseeded RNG)",
        "fn must build its model, optimizer and data, and take every decision from the "
        "seeded RNGs (no counters, caches or clocks kept between calls)",
    )


_STATE_FIX = (
    "fn must build its model, optimizer and data (and reset anything it keeps between "
    "calls), so every run starts from the same state"
)


def _from_evidence(
    op: OpRecord,
    other: OpRecord,
    stream: Sequence[OpRecord],
    flags: Mapping[str, str],
    samples: Sequence[OpSample],
) -> Cause:
    """Classify with the replays' view of the op: its inputs, their origin and lifetime."""
    run_1, run_2 = _digests(op), _digests(other)
    first, second = samples[0], samples[1]
    if first.inputs == second.inputs and first.outputs != second.outputs:
        return _kernel(op, flags, proven=True)
    differing = [
        position for position, (x, y) in enumerate(zip(first.inputs, second.inputs, strict=True))
        if x != y
    ]
    reproduced = any(sample.outputs == run_1 for sample in samples)
    if not differing:
        # Memory no op wrote may hold equal bytes in both replays (the allocator
        # handed back the same block); the runs still read it, so it comes first.
        for position, index in enumerate(first.origins):
            origin = at(stream, index)
            if origin is not None and base_name(origin.name) in UNINITIALISED:
                return _uninitialised(
                    op, position, origin, flags, note=" (the replays happened to read equal bytes)"
                )
        if not reproduced:
            return Cause(
                "state_outside_fn",
                f"op #{op.index} {op.name} gave run 1 one result and the later runs another: "
                "run 1 changed something that later runs read (state kept outside fn)",
                _STATE_FIX,
            )
        if base_name(op.name) in NONDETERMINISTIC:
            return _kernel(op, flags, proven=False)
        return Cause(
            "unknown",
            f"op #{op.index} {op.name} gave different bytes in run 2 only; the replays "
            "repeated run 1",
            "run find_divergence(fn, runs=5) to see how often it happens",
        )
    for position in differing:
        origin = at(stream, first.origins[position])
        if origin is not None and base_name(origin.name) in UNINITIALISED:
            return _uninitialised(op, position, origin, flags)
    for position in differing:
        if first.outlives[position] or second.outlives[position]:
            return Cause(
                "state_outside_fn",
                f"input {position + 1} of op #{op.index} {op.name} is a tensor that outlives "
                "fn (a model, optimizer or data built outside it): each run starts where the "
                "previous one left it",
                _STATE_FIX,
            )
    if reproduced:
        return Cause(
            "state_outside_fn",
            f"a replay with run 1's inputs at op #{op.index} {op.name} gave run 1's bytes: "
            "the inputs depend on how often fn ran (state kept between calls)",
            _STATE_FIX,
        )
    outcomes = [run_1, run_2, *(sample.outputs for sample in samples)]
    if len(set(outcomes)) == len(outcomes):
        return _entropy(op, differing[0], at(stream, first.origins[differing[0]]))
    return Cause(
        "state_outside_fn",
        f"input {differing[0] + 1} of op #{op.index} {op.name} differs between runs but "
        "repeats across some of them: it depends on state kept between calls",
        _STATE_FIX,
    )


def _kernel(op: OpRecord, flags: Mapping[str, str], *, proven: bool) -> Cause:
    listed = base_name(op.name) in NONDETERMINISTIC
    how = "from identical inputs" if proven else "in some runs only"
    documented = " torch documents it as nondeterministic (atomics)." if listed else ""
    if not _algorithms_on(flags):
        return Cause(
            "nondeterministic_kernel",
            f"op #{op.index} {op.name} gave different bytes {how}, with deterministic "
            f"algorithms off.{documented}",
            "pass algorithms=True (torch then runs a deterministic implementation, or raises "
            "where it has none); algorithms='warn' only warns",
        )
    return Cause(
        "nondeterministic_kernel",
        f"op #{op.index} {op.name} gave different bytes {how}, even with deterministic "
        f"algorithms on: torch has no deterministic implementation of it here and does not "
        f"say so.{documented}",
        "compute it another way (a sort-based or CPU implementation, or another dtype), and "
        "report the op to PyTorch",
    )


def _uninitialised(
    op: OpRecord, position: int, origin: OpRecord, flags: Mapping[str, str], note: str = ""
) -> Cause:
    reason = (
        f"input {position + 1} of op #{op.index} {op.name} is memory from op #{origin.index} "
        f"{origin.name}{_where(origin)} that no op wrote: uninitialised bytes{note}"
    )
    if not _algorithms_on(flags):
        fix = (
            "pass algorithms=True with fill_uninitialized_memory=True (torch fills new "
            "memory only under deterministic algorithms), or create it with torch.zeros"
        )
    elif flags.get(FILL_FLAG) != "True":
        fix = "pass fill_uninitialized_memory=True, or create it with torch.zeros"
    else:
        fix = "write every element before reading it (torch.zeros instead of torch.empty)"
    return Cause("uninitialized_memory", reason, fix)


def _entropy(op: OpRecord, position: int, origin: OpRecord | None) -> Cause:
    if origin is None:
        came = "made where torch records no op (torch.from_numpy, NumPy writes)"
    elif base_name(origin.name) in _LIFTS:
        came = (f"made from Python or NumPy data by op #{origin.index} "
                f"{origin.name}{_where(origin)}")
    else:
        came = f"last written by op #{origin.index} {origin.name}{_where(origin)}"
    return Cause(
        "os_entropy",
        f"input {position + 1} of op #{op.index} {op.name} changed on every run and no "
        f"replay reproduced it: it was {came}, from a source no seed controls (OS entropy, "
        "time, uuid, an unseeded RNG)",
        "draw it from a seeded RNG (torch, NumPy's global state or random) or pass it into "
        "fn as data",
    )


def _from_names(
    op: OpRecord, stream: Sequence[OpRecord], flags: Mapping[str, str], *, across_processes: bool
) -> Cause:
    """No replay evidence: guess from the op's name, the flags and the position."""
    if base_name(op.name) in NONDETERMINISTIC and not _algorithms_on(flags):
        return _kernel(op, flags, proven=False)
    if not any(earlier.compared for earlier in stream[: op.index]):
        return Cause(
            "state_outside_fn",
            f"the runs differ from their first compared op (#{op.index} {op.name}): fn read "
            "state that already differed when it started",
            _STATE_FIX,
        )
    if across_processes:
        return Cause(
            "unknown",
            f"op #{op.index} {op.name} gave different bytes in the two processes, from inputs "
            "that torch does not see differ (OS entropy, time, files, state built before fn)",
            "run find_divergence(fn) in one process: its replays tell these causes apart",
        )
    return Cause(
        "unknown",
        f"op #{op.index} {op.name} gave different bytes, and the replays could not tell why",
        "run find_divergence(fn, runs=3) or record() the runs to files and compare() them",
    )
