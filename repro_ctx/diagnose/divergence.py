"""``find_divergence``, ``record`` and ``compare``: name the first op where two runs part.

Each run executes inside ``deterministic(seed, **options)`` with every torch
op recorded (``op_recorder``); the report (``report``) names
the first op whose outputs differ bitwise. Runs compare hashes, so no values
are kept while recording. To measure how large the difference is,
``find_divergence`` keeps the second run's outputs at the first differing op
as it goes, then replays ``fn`` twice keeping only that op's outputs:
a replay that gives run 1's bytes there yields run 1's values exactly. The
replays also hash that op's inputs and note where they came from, which is
how ``causes`` tells the likely cause and its fix.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..scopes.deterministic import deterministic
from ..state.environment_record import environment_record
from .causes import Evidence, classify
from .numpy_rngs import moved, named_generators, states, uncovered_numpy
from .op_outputs import value_differences
from .op_recorder import record_run
from .progress import Progress
from .records import OpRecord, compare_ops, first_difference, sample_differences
from .report import DivergenceReport, build_report
from .streams import read_stream, write_stream

if TYPE_CHECKING:
    from .op_recorder import RunRecord

_OPTIONS = ("algorithms", "benchmark", "tf32", "fill_uninitialized_memory", "generators")
_REPLAYS = 2
# hash() of this string differs between two interpreters exactly when their
# str hashing (PYTHONHASHSEED) differs: ``compare`` reads it from both headers.
_HASH_PROBE = "repro_ctx hash probe"


def _scope(caller: str, seed: object, options: Mapping[str, Any]) -> deterministic:
    """The scope every run executes in; all options checked before anything runs."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(
            f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it accepts seed and the deterministic() options {', '.join(_OPTIONS)}. "
            f"Pass fn's own keyword arguments with functools.partial(fn, ...)"
        )
    return deterministic(seed, **options)  # type: ignore[arg-type]


def _check_fn(caller: str, fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"{caller}() needs a callable fn, got {type(fn).__name__}")


def _name(fn: object) -> str:
    inner = getattr(fn, "func", fn)  # functools.partial
    return str(getattr(inner, "__qualname__", None) or type(inner).__name__)


def find_divergence(
    fn: Callable[..., object],
    *args: object,
    seed: int | None = 0,
    runs: int = 2,
    **options: Any,
) -> DivergenceReport:
    """Run ``fn(*args)`` ``runs`` times under ``deterministic(seed, **options)``; find the split.

    Every torch op is recorded, forward and backward, with a hash of each
    output; the report names the first op whose outputs differ bitwise from
    run 1 (the earliest over all runs), or where the op streams differ, or
    says everything matched. ``options`` are ``deterministic``'s: algorithms,
    benchmark, tf32, fill_uninitialized_memory, generators. For keyword
    arguments of ``fn`` use ``functools.partial``. ``fn`` must build what it
    uses (model, optimizer, data): state carried over from an earlier run
    makes the runs differ from their first op.

    The report's ``cause`` names the likely cause and the change that fixes
    it. Where stderr is a terminal, progress (run k of n, ops recorded) is
    shown there while it runs.
    """
    _check_fn("find_divergence", fn)
    if not isinstance(runs, int) or isinstance(runs, bool):
        raise TypeError(f"runs must be an int >= 2, got {type(runs).__name__}")
    if runs < 2:
        raise ValueError(f"runs must be an int >= 2, got {runs}")
    scope = _scope("find_divergence", seed, options)
    progress = Progress(f"find_divergence({_name(fn)})")
    numpy_generators = named_generators(fn)
    before = states(numpy_generators)
    try:
        first = record_run(fn, args, scope, progress=progress.stage(f"run 1/{runs}"))
        other, number, earliest = first, 1, None
        for run_number in range(2, runs + 1):
            run = record_run(fn, args, scope, reference=first.ops,
                             progress=progress.stage(f"run {run_number}/{runs}"))
            diverges_at = _first_index(first.ops, run.ops)
            if diverges_at is not None and (earliest is None or diverges_at < earliest):
                other, number, earliest = run, run_number, diverges_at
            elif earliest is None:
                other, number = run, run_number
        values: tuple[float | None, float | None, str] = (None, None, "")
        evidence = None
        if other.first_difference is not None:
            replays = _replay(fn, args, scope, other.first_difference, progress)
            values = _measure(first, other, number, replays)
            evidence = _evidence(first, other.first_difference, replays)
    finally:
        progress.close()
    labels = ("run 1", f"run {number}")
    found = first_difference(first.ops, other.ops)
    cause = None if found is None else classify(
        found[0], found[1], first.ops, other.ops, first.flags, other.flags, labels,
        evidence=evidence,
    )
    uncovered = moved(numpy_generators, before)
    if cause is not None and cause.kind != "uncovered_rng" and uncovered:
        cause = uncovered_numpy(uncovered)
    return build_report(
        labels, first.ops, other.ops,
        values=values, flags=first.flags, flags_b=other.flags,
        title=f"find_divergence({_name(fn)}): seed {scope.seed}, {runs} runs",
        cause=cause,
    )


def _first_index(a: Sequence[OpRecord], b: Sequence[OpRecord]) -> int | None:
    found = first_difference(a, b)
    return None if found is None else found[1]


def _replay(
    fn: Callable[..., object], args: tuple[object, ...], scope: deterministic, index: int,
    progress: Progress,
) -> list[RunRecord]:
    """Run ``fn`` again ``_REPLAYS`` times, keeping op ``index``'s outputs and inputs."""
    return [
        record_run(fn, args, scope, capture_at=index,
                   progress=progress.stage(f"replay {number}/{_REPLAYS} (op #{index})"))
        for number in range(1, _REPLAYS + 1)
    ]


def _evidence(first: RunRecord, index: int, replays: Sequence[RunRecord]) -> Evidence:
    """What the replays that ran the same op at ``index`` saw there."""
    samples = tuple(
        replay.sample for replay in replays
        if replay.sample is not None
        and compare_ops(first.ops[index], replay.ops[index]) != "stream"
    )
    return Evidence(samples)


def _measure(
    first: RunRecord, other: RunRecord, number: int, replays: Sequence[RunRecord]
) -> tuple[float | None, float | None, str]:
    """Max abs and rel difference at the first differing op, and between which runs.

    ``other`` kept its outputs there. Run 1 kept nothing, so ``fn`` was
    replayed keeping that op's outputs: a replay with run 1's bytes there
    gives run 1's values. If the op never gives the same bytes twice (OS
    entropy, atomics), a replay that differs from ``other`` still measures
    the size of the run-to-run difference.
    """
    index = other.first_difference
    assert index is not None
    assert other.captured is not None
    fallback = None
    for replay in replays:
        if replay.captured is None:
            continue
        if compare_ops(first.ops[index], replay.ops[index]) is None:
            max_abs, max_rel = value_differences(replay.captured, other.captured)
            return max_abs, max_rel, f"run 1 (reproduced by a replay) vs run {number}"
        if fallback is None and compare_ops(other.ops[index], replay.ops[index]) == "values":
            fallback = replay.captured
    if fallback is not None:
        max_abs, max_rel = value_differences(fallback, other.captured)
        return max_abs, max_rel, (
            f"a replay vs run {number}: no replay gave run 1's bytes at this op"
        )
    return None, None, (
        f"not measured: {_REPLAYS} replays did not reach this op with run 1's or new bytes"
    )


def record(
    fn: Callable[..., object],
    *args: object,
    path: str | os.PathLike[str],
    seed: int | None = 0,
    samples: int = 16,
    **options: Any,
) -> Path:
    """Run ``fn(*args)`` once under ``deterministic(seed, **options)``; write its ops to ``path``.

    The file (JSON, format version 2) holds every op's name, phase, module
    path, source line, the uncovered generator it drew from (if any) and per
    output the shape, dtype, hash, norm and ``samples`` evenly spaced values,
    plus the flags in effect, how this interpreter hashes strings
    (``PYTHONHASHSEED``, ``hash_probe``) and the environment record
    (``environment``: builds, CPU capability, BLAS, threads, variables,
    packages, git commit; GPUs only where reading them leaves CUDA as it
    is). Compare two files, from other processes or machines, with
    ``compare``, or their environments with ``repro-ctx env-diff``.
    """
    _check_fn("record", fn)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise ValueError(f"samples must be an int >= 0, got {samples!r}")
    scope = _scope("record", seed, options)
    hash_seed = os.environ.get("PYTHONHASHSEED")  # before the scope sets it for children
    # the flags in the scope are the header's own; the variables are read outside it
    environment = environment_record(read_gpus=False, flags=False)
    run = record_run(fn, args, scope, samples=samples)
    import torch

    header = {
        "function": _name(fn),
        "seed": scope.seed,
        "options": {name: repr(value) for name, value in sorted(options.items())},
        "flags": run.flags,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "samples": samples,
        "PYTHONHASHSEED": hash_seed,
        "hash_probe": hash(_HASH_PROBE),
        "environment": environment,
    }
    out = Path(path)
    write_stream(out, header, run.ops)
    return out


def compare(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]) -> DivergenceReport:
    """The report for two files written by ``record``.

    Without the tensors, the max abs and rel difference are measured over
    the stored samples: a lower bound, or "n/a" if the samples agree. The
    cause can also be one that only exists across processes: different
    settings, different string hashing (``PYTHONHASHSEED``), or different
    environments (cause ``environment``: the fields that differ, from the
    files' environment records, and for a floating-point op the largest
    difference in ulps over the samples).
    """
    for name, value in (("path_a", path_a), ("path_b", path_b)):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} must be a str or os.PathLike, got {type(value).__name__}")
    a, b = Path(path_a), Path(path_b)
    header_a, stream_a = read_stream(a)
    header_b, stream_b = read_stream(b)
    labels = (a.name, b.name) if a.name != b.name else (str(a), str(b))
    values: tuple[float | None, float | None, str] = (None, None, "")
    found = first_difference(stream_a, stream_b)
    if found is not None and found[0] == "values":
        measured = sample_differences(stream_a[found[1]], stream_b[found[1]])
        if measured is None:
            values = (None, None, "the recorded samples agree; the bytes differ elsewhere")
        else:
            values = (*measured, "over the recorded samples only: a lower bound")
    cause = None if found is None else classify(
        found[0], found[1], stream_a, stream_b, header_a["flags"], header_b["flags"], labels,
        processes=(header_a, header_b),
    )
    return build_report(
        labels, stream_a, stream_b, values=values,
        flags=header_a["flags"], flags_b=header_b["flags"],
        title=f"compare({a.name}, {b.name}): {header_a.get('function', '?')}",
        cause=cause,
    )
