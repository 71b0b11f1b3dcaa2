"""Shared timing for the benchmark scripts: interleaved rounds, medians, ratios.

Contenders are timed in interleaved rounds (A, B, C, A, B, C, ...) so that
machine noise hits them alike; each figure is the median over rounds of the
per-call time. Only ratios measured in the same run are meant to be quoted.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

Contender = Callable[[], object]


def per_call_samples(
    contenders: dict[str, Contender], *, calls: int = 2000, rounds: int = 21
) -> dict[str, list[float]]:
    """Per-call seconds of each contender in each round (rounds interleave the contenders)."""
    for fn in contenders.values():  # warm up: imports, caches, first-entry setup
        for _ in range(50):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls)
    return samples


def per_call_medians(
    contenders: dict[str, Contender], *, calls: int = 2000, rounds: int = 21
) -> dict[str, float]:
    """Median per-call seconds for each contender."""
    samples = per_call_samples(contenders, calls=calls, rounds=rounds)
    return {name: statistics.median(values) for name, values in samples.items()}


def paired_median(samples: dict[str, list[float]], name: str, baseline: str) -> float:
    """Median over rounds of ``name`` minus ``baseline`` timed in the same round.

    Steadier than a difference of medians on a noisy machine: both figures of
    a pair come from the same moment.
    """
    return statistics.median(a - b for a, b in zip(samples[name], samples[baseline]))


def print_table(title: str, medians: dict[str, float], baseline: str) -> None:
    print(f"\n{title}")
    base = medians[baseline]
    width = max(len(name) for name in medians)
    for name, value in medians.items():
        print(f"  {name:<{width}}  {value * 1e6:9.2f} us   {value / base:6.3f}x {baseline}")


def environment_note() -> str:
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    return (
        f"OPENBLAS_CORETYPE={coretype!r} (unset it together with OPENBLAS_L2_SIZE for "
        "benchmarks against NumPy; these figures time state copies, not BLAS kernels)"
    )
