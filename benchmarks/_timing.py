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


def per_call_medians(
    contenders: dict[str, Contender], *, calls: int = 2000, rounds: int = 21
) -> dict[str, float]:
    """Median per-call seconds for each contender."""
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
    return {name: statistics.median(values) for name, values in samples.items()}


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
