"""Cost of ``@reproducible`` against the bare ``with deterministic(...)`` block, in one run.

Run: python benchmarks/bench_decorator.py   (prints medians and ratios)

* per call: a decorated plain function (fixed seed, and a callable seed)
  against ``with scope: pass`` on the same options, as the median of the
  per-round differences. Target: at most the ``with`` block plus 2 us.
* per step: ``next()`` on a decorated generator (each step swaps the caller's
  state out and the generator's in, then back), and one real suspension of a
  decorated coroutine, against the ``with`` block's enter plus exit. Target
  (#21): a generator step at most 1.2x the ``with`` block.
* the floor of a step: a block reads each RNG's state once (capture), a
  step twice (one swap in, one out). NumPy's MT19937 state getter copies its
  624 words one by one, and NumPy's cached Gaussian can only be read through
  it, so no public-API step can skip the second read of NumPy (nor of
  ``random``). Timed in the same run, ``(block + one NumPy read + one random
  read) / block`` is the ratio below which an exact step cannot go.

All contenders are timed in interleaved rounds (benchmarks/_timing.py); only
the ratios and differences measured in the same run are meant to be quoted.
Then, per source, a block's capture + seed + restore against a step's two
swaps; and the decorator machinery alone, with no sources.
"""

from __future__ import annotations

import asyncio
import functools
import random
import statistics
import sys
from collections.abc import Coroutine, Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import (
    environment_note,
    paired_median,
    per_call_medians,
    per_call_samples,
    print_table,
)

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
        for face in (decorate._scope, decorate_called._scope):
            face.sources()  # built from the current default set, then emptied
            face._sources = ()

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


BLOCK = "with deterministic(0): pass"


def _report(title: str, samples: dict[str, list[float]], *, targets: bool = True) -> None:
    """The table, then the per-call and per-step figures (with verdicts when ``targets``)."""
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print_table(title, medians, BLOCK)

    def verdict(ok: bool) -> str:
        return ("  (ok)" if ok else "  (over target)") if targets else ""

    print("  per-call overhead, median of per-round differences"
          + (" (target: at most the with block + 2 us)" if targets else ""))
    for name in ("@reproducible(seed=0) call", "@reproducible(seed=callable) call"):
        extra = paired_median(samples, name, BLOCK)
        print(f"    {name:<34} {extra * 1e6:+8.2f} us vs with block{verdict(extra <= 2e-6)}")
    print("  per-step state swap, ratio of medians"
          + (" (target: a generator step at most 1.2x the with block)" if targets else ""))
    for name in ("@reproducible generator step", "@reproducible coroutine suspension"):
        ratio = medians[name] / medians[BLOCK]
        print(f"    {name:<34} {ratio:8.3f}x with block{verdict(ratio <= 1.2)}")


NUMPY_READ = "np.random.get_state() (one NumPy read)"
RANDOM_READ = "random.getstate() (one random read)"
STEP = "@reproducible generator step"


def _floor(samples: dict[str, list[float]]) -> None:
    """The generator step against the target and against the two-reads floor, per round."""
    step = statistics.median(s / b for s, b in zip(samples[STEP], samples[BLOCK]))
    floor = statistics.median((b + n + r) / b for b, n, r in
                              zip(samples[BLOCK], samples[NUMPY_READ], samples[RANDOM_READ]))
    print("  the generator step, median of per-round ratios (target: at most 1.2x)")
    print(f"    generator step / with block        {step:8.3f}x"
          f"{'  (ok)' if step <= 1.2 else '  (over target)'}")
    print(f"    floor: (block + one NumPy read + one random read) / block  {floor:6.3f}x")


def _per_source(scope: deterministic) -> None:
    """Where a step's cost differs from a block's, source by source.

    A ``with`` block costs capture + seed + restore per source; a generator
    step costs two swaps (the resumption swaps the function's state in, the
    suspension swaps the caller's back). A swap reuses the read a restore
    makes anyway, and the flag sources remember their last write, so the
    suspension right after a resumption writes without comparing again.
    """
    plan = scope.effective_plan()
    contenders: dict[str, Any] = {}
    for source in scope.sources():
        caller = source.capture()
        source.seed(caller, plan)
        held = [source.capture()]  # the function's state between steps
        source.restore(caller)

        def block(s: Any = source) -> None:
            snapshot = s.capture()
            s.seed(snapshot, plan)
            s.restore(snapshot)

        def step(s: Any = source, held: list[object] = held) -> None:
            outside = s.swap(held[0])  # resumption
            held[0] = s.swap(outside)  # suspension

        contenders[f"{source.name} block"] = block
        contenders[f"{source.name} step"] = step
    # Seeding changes the process state: an isolating scope puts it all back.
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        medians = per_call_medians(contenders, calls=300, rounds=11)
    print("\nper source (median per call): block = capture + seed + restore, step = two swaps")
    total_block = total_step = 0.0
    for source in scope.sources():
        block, step = medians[f"{source.name} block"], medians[f"{source.name} step"]
        total_block += block
        total_step += step
        print(f"  {source.name:<24} block {block * 1e6:7.2f} us   step {step * 1e6:7.2f} us"
              f"   {step / block:6.3f}x")
    print(f"  {'total':<24} block {total_block * 1e6:7.2f} us   step {total_step * 1e6:7.2f} us"
          f"   {total_step / total_block:6.3f}x")


def main() -> None:
    print(f"torch {torch.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    print(environment_note())
    full = _contenders(deterministic(seed=0))
    full["undecorated call"] = lambda: None
    full["undecorated generator step"] = _endless().__next__
    full[NUMPY_READ] = functools.partial(np.random.get_state, legacy=False)
    full[RANDOM_READ] = random.getstate
    samples = per_call_samples(full, calls=200, rounds=101)
    _report("every source (median per call)", samples)
    _floor(samples)

    _per_source(deterministic(seed=0))

    # The decorator's own cost, apart from the sources' capture/seed/restore
    # (the same work for both faces): every contender's scope has no sources.
    bare = deterministic(seed=0)
    bare.sources()  # built from the current default set, then emptied
    bare._sources = ()
    _report(
        "machinery only, no sources (median per call; a diagnostic, the targets are above)",
        per_call_samples(_contenders(bare), calls=3000, rounds=21),
        targets=False,
    )


if __name__ == "__main__":
    main()
