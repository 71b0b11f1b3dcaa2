"""Cost of ``@reproducible`` against the bare ``with deterministic(...)`` block, in one run.

Run: python benchmarks/bench_decorator.py   (prints medians and ratios)

* per call: a decorated plain function (fixed seed, and a callable seed)
  against ``with scope: pass`` on the same options. Target: at most the
  ``with`` block plus 2 us.
* per step: ``next()`` on a decorated generator (each step swaps the caller's
  state out and the generator's in, then back), and one real suspension of a
  decorated coroutine, against the ``with`` block's enter plus exit. Target:
  at most 1x.

All contenders are timed in interleaved rounds (benchmarks/_timing.py); only
the ratios and differences measured in the same run are meant to be quoted.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import environment_note, per_call_medians, print_table

from repro_ctx import deterministic, reproducible


def _endless() -> Generator[None, None, None]:
    while True:
        yield


async def _suspending() -> None:
    while True:
        await asyncio.sleep(0)  # yields to the driver: one real suspension per send()


def _contenders(scope: deterministic) -> dict[str, Any]:
    def with_block() -> None:
        with scope:
            pass

    decorate = reproducible(seed=0)
    decorate_called = reproducible(seed=lambda: 0)
    if not scope.sources():  # the machinery-only run: the decorators' scopes get no sources
        decorate._scope._sources = decorate_called._scope._sources = ()

    @decorate
    def decorated() -> None:
        pass

    @decorate_called
    def decorated_callable_seed() -> None:
        pass

    coroutine: Coroutine[Any, Any, None] = decorate(_suspending)()
    send = coroutine.send

    def coroutine_step() -> None:
        send(None)

    return {
        "with deterministic(0): pass": with_block,
        "@reproducible(seed=0) call": decorated,
        "@reproducible(seed=callable) call": decorated_callable_seed,
        "@reproducible generator step": decorate(_endless)().__next__,
        "@reproducible coroutine suspension": coroutine_step,
    }


def _report(title: str, medians: dict[str, float]) -> None:
    print_table(title, medians, "with deterministic(0): pass")
    block = medians["with deterministic(0): pass"]
    print("  per-call overhead (target: at most the with block + 2 us)")
    for name in ("@reproducible(seed=0) call", "@reproducible(seed=callable) call"):
        extra = medians[name] - block
        verdict = "ok" if extra <= 2e-6 else "over target"
        print(f"    {name:<34} {extra * 1e6:+8.2f} us vs with block  ({verdict})")
    print("  per-step state swap (target: at most 1x the with block's enter + exit)")
    for name in ("@reproducible generator step", "@reproducible coroutine suspension"):
        ratio = medians[name] / block
        verdict = "ok" if ratio <= 1.0 else "over target"
        print(f"    {name:<34} {ratio:8.3f}x with block  ({verdict})")


def _per_source_excess(scope: deterministic) -> None:
    """Where a step's extra cost comes from: a step captures and restores where a block seeds.

    A ``with`` block costs capture + seed + restore per source; a generator
    step costs capture + restore (resume) + capture + restore (suspend). The
    difference per source is capture + restore - seed.
    """
    plan = scope.effective_plan()
    contenders: dict[str, Any] = {}
    for source in scope.sources():
        snapshot = source.capture()
        contenders[f"{source.name} capture"] = source.capture
        contenders[f"{source.name} seed"] = lambda s=source, snap=snapshot: s.seed(snap, plan)
        contenders[f"{source.name} restore"] = lambda s=source, snap=snapshot: s.restore(snap)
    # Seeding changes the process state: an isolating scope puts it all back.
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        medians = per_call_medians(contenders, calls=300, rounds=11)
    print("\nper source: capture, seed, restore; a step's extra cost is capture + restore - seed")
    total = 0.0
    for source in scope.sources():
        capture, seed, restore = (
            medians[f"{source.name} {op}"] for op in ("capture", "seed", "restore")
        )
        extra = capture + restore - seed
        total += extra
        print(
            f"  {source.name:<24} {capture * 1e6:7.2f} {seed * 1e6:7.2f} {restore * 1e6:7.2f} us"
            f"   step extra {extra * 1e6:+7.2f} us"
        )
    print(f"  {'total':<24} {'':>31}   step extra {total * 1e6:+7.2f} us")


def main() -> None:
    print(f"torch {torch.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    print(environment_note())
    full = _contenders(deterministic(seed=0))
    full["undecorated call"] = lambda: None
    full["undecorated generator step"] = _endless().__next__
    _report("every source (median per call)", per_call_medians(full, calls=300, rounds=21))

    _per_source_excess(deterministic(seed=0))

    # The decorator's own cost, apart from the sources' capture/seed/restore
    # (the same work for both faces): every contender's scope has no sources.
    bare = deterministic(seed=0)
    bare._sources = ()
    _report(
        "machinery only, no sources (median per call)",
        per_call_medians(_contenders(bare), calls=3000, rounds=21),
    )


if __name__ == "__main__":
    main()
