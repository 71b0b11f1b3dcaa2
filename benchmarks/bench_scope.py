"""Scope entry plus exit on CPU, against the peers, measured in one run.

Run: python benchmarks/bench_scope.py   (prints medians and ratios)

Contenders (all seed 0, all on CPU):
* repro_ctx ``with deterministic(seed=0): pass``: every RNG source, every
  torch flag, the environment variables;
* ``torch.random.fork_rng(devices=[])`` with ``torch.manual_seed(0)`` inside:
  torch CPU only;
* Lightning's ``isolate_rng()`` with ``seed_everything(0)`` inside (when
  lightning is installed): random, NumPy, torch;
* the bare public-API copy, seed and restore of random, NumPy's global state
  and torch's CPU generator (``getstate``/``seed``/``setstate`` and friends).

Then the cost per registered NumPy Generator, what one source plugin costs
against registering the same ``random.Random`` as a generator, what a new
seed on every call costs over a repeated one (``@reproducible(seed=lambda self, idx: idx)``, the
per-sample use), and where the time of one scope goes, source by source.

Every state goes through the owning library's public API (NumPy's
``get_state`` copies MT19937's 624-word key element by element: about 40 us,
the largest single cost of a scope and NumPy's limit, not ours).
"""

from __future__ import annotations

import logging
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

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

from repro_ctx import (
    deterministic,
    register,
    register_source,
    reproducible,
    unregister,
    unregister_source,
)
from repro_ctx.core.scope import close_scope, open_scope


def bare_public_api() -> None:
    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(th)


def compare_with_peers() -> None:
    scope = deterministic(seed=0)

    def repro_ctx_scope() -> None:
        with scope:
            pass

    def fork_rng_pair() -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)

    contenders = {
        "repro_ctx deterministic(0)": repro_ctx_scope,
        "fork_rng + manual_seed": fork_rng_pair,
        "bare public get/seed/set": bare_public_api,
    }
    try:
        from lightning.fabric.utilities.seed import seed_everything
        from lightning.pytorch.utilities.seed import isolate_rng

        logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.ERROR)

        def lightning_pair() -> None:
            with isolate_rng():
                seed_everything(0, verbose=False)

        contenders["lightning isolate_rng + seed_everything"] = lightning_pair
    except ImportError:
        print("lightning not installed: its contender is skipped")

    medians = per_call_medians(contenders, calls=500, rounds=15)  # type: ignore[arg-type]
    ours = medians["repro_ctx deterministic(0)"]
    print_table("scope enter + exit (median per call)", medians, "fork_rng + manual_seed")
    print("\nratios (repro_ctx / peer):")
    for name, value in medians.items():
        if not name.startswith("repro_ctx"):
            print(f"  vs {name}: {ours / value:.3f}x")


_Key = TypeVar("_Key")


def scope_samples(
    scope: deterministic,
    setups: Mapping[_Key, tuple[Callable[[], object], Callable[[], object]]],
    *, calls: int, rounds: int,
) -> dict[_Key, list[float]]:
    """Per-scope seconds under each process-wide set-up, the set-ups taking turns by round.

    Registration is process-wide, so contenders cannot interleave call by
    call as ``_timing`` does: each round sets one up, times it and tears it
    down, then the next.
    """
    samples: dict[_Key, list[float]] = {key: [] for key in setups}
    for _ in range(rounds):
        for key, (setup, teardown) in setups.items():
            setup()
            for _ in range(20):  # warm: seeded states, the first entry after a change
                with scope:
                    pass
            start = time.perf_counter()
            for _ in range(calls):
                with scope:
                    pass
            samples[key].append((time.perf_counter() - start) / calls)
            teardown()
    return samples


def cost_per_registered_generator(calls: int = 300, rounds: int = 15) -> None:
    """The slope of scope cost over registered PCG64 Generators (0, 16 and 64 of them).

    The counts take turns round by round, and the slope is the median over
    rounds of (64 registered - none) / 64 from the same round: a noisy
    neighbour hits both ends of a pair alike.
    """
    print("\ncost per registered NumPy Generator (PCG64, median per scope)")
    scope = deterministic(seed=0)
    counts = (0, 16, 64)
    generators = [np.random.default_rng(i) for i in range(max(counts))]

    def registering(count: int) -> tuple[Callable[[], None], Callable[[], None]]:
        def setup() -> None:
            for generator in generators[:count]:
                register(generator)

        def teardown() -> None:
            for generator in generators[:count]:
                unregister(generator)

        return setup, teardown

    samples = scope_samples(scope, {count: registering(count) for count in counts},
                            calls=calls, rounds=rounds)
    for count, values in samples.items():
        print(f"  {count:3d} registered  {statistics.median(values) * 1e6:9.2f} us")
    top = counts[-1]
    slope = statistics.median((a - b) / top for a, b in zip(samples[top], samples[0]))
    print(f"  slope: {slope * 1e6:.2f} us per registered generator (paired by round)")


class _RandomSource:
    """A source plugin over one ``random.Random``: what a library's module-level RNG is."""

    name = "bench.random"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def capture(self) -> object:
        return self.rng.getstate()

    def seed(self, seed: int) -> None:
        self.rng.seed(seed)

    def restore(self, snapshot: object) -> None:
        self.rng.setstate(snapshot)  # type: ignore[arg-type]


def cost_of_a_source_plugin(calls: int = 300, rounds: int = 15) -> None:
    """One source plugin against the same ``random.Random`` registered as a generator.

    Registration is process-wide, so the three set-ups take turns round by
    round (interleaved, as ``_timing`` does for contenders).
    """
    scope = deterministic(seed=0)
    rng = random.Random(0)
    plugin = _RandomSource(rng)
    setups = {
        "nothing registered": (lambda: None, lambda: None),
        "random.Random via register()": (lambda: register(rng), lambda: unregister(rng)),
        "random.Random via register_source()": (lambda: register_source(plugin),
                                                lambda: unregister_source(plugin)),
    }
    samples = scope_samples(scope, setups, calls=calls, rounds=rounds)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print("\none source plugin against one registered generator (median per scope)")
    base = medians["nothing registered"]
    for name, value in medians.items():
        print(f"  {value * 1e6:9.2f} us  {name}  (+{(value - base) * 1e6:.2f} us)")
    generator = medians["random.Random via register()"] - base
    source = medians["random.Random via register_source()"] - base
    if generator > 0:
        print(f"  a plugin adds {source / generator:.2f}x what a registered generator adds "
              "(same getstate/setstate; the plugin seeds through random.seed, the "
              "generator copies in a cached seeded state)")


def cost_of_a_new_seed() -> None:
    """A per-sample seed (a new one on every call) against the same seed on every call."""
    counter = iter(range(2**62))

    @reproducible(seed=lambda i: i)
    def per_sample(i: int) -> None:
        pass

    def new_seed() -> None:
        per_sample(next(counter))

    def same_seed() -> None:
        per_sample(7)

    samples = per_call_samples({"new seed": new_seed, "same seed": same_seed},
                               calls=500, rounds=15)
    print("\na new seed on every call (@reproducible(seed=lambda i: i)), median per call")
    for name, values in samples.items():
        print(f"  {statistics.median(values) * 1e6:9.2f} us  {name}")
    extra = paired_median(samples, "new seed", "same seed") * 1e6
    print(f"  a new seed costs {extra:.2f} us more than a repeated one (paired by round)")


def profile_sources(cycles: int = 20_000) -> None:
    """Median time of each source's capture, seed and restore inside real scope cycles."""
    scope = deterministic(seed=0)
    sources = scope.sources()
    plan = scope.effective_plan()
    timings: dict[str, list[float]] = {}

    class Timed:
        def __init__(self, source: object) -> None:
            self.source = source
            self.name = source.name  # type: ignore[attr-defined]

        def _time(self, what: str, call: object, *args: object) -> object:
            start = time.perf_counter_ns()
            result = call(*args)  # type: ignore[operator]
            timings.setdefault(f"{self.name}: {what}", []).append(time.perf_counter_ns() - start)
            return result

        def capture(self) -> object:
            return self._time("capture", self.source.capture)  # type: ignore[attr-defined]

        def seed(self, snapshot: object, plan: object) -> None:
            self._time("seed", self.source.seed, snapshot, plan)  # type: ignore[attr-defined]

        def restore(self, snapshot: object) -> None:
            self._time("restore", self.source.restore, snapshot)  # type: ignore[attr-defined]

    timed = [Timed(source) for source in sources]
    whole: list[float] = []
    for _ in range(cycles):
        start = time.perf_counter_ns()
        close_scope(open_scope(scope, plan, timed))  # type: ignore[arg-type]
        whole.append(time.perf_counter_ns() - start)
    print(f"\nwhere one scope's time goes (median ns over {cycles} cycles, timers included)")
    rows = sorted(timings.items(), key=lambda item: -statistics.median(item[1]))
    for name, values in rows:
        print(f"  {statistics.median(values):8.0f} ns  {name}")
    parts = sum(statistics.median(values) for values in timings.values())
    print(f"  {statistics.median(whole):8.0f} ns  whole cycle ({parts:.0f} ns in sources)")


def main() -> None:
    print(f"torch {torch.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    print(environment_note())
    compare_with_peers()
    cost_per_registered_generator()
    cost_of_a_source_plugin()
    cost_of_a_new_seed()
    profile_sources()


if __name__ == "__main__":
    main()
