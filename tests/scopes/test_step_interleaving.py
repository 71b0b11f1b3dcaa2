"""Several live generator and coroutine scopes interleaved with outer code: exact states.

Each decorated generator or coroutine must draw exactly what it draws when
run alone, from start to end, in ``with deterministic(seed)``; the outer code
must draw exactly what it draws with no scoped function at all, and end in
the very same state. Draws include odd numbers of legacy normals on both
sides, so NumPy's cached Gaussian crosses every swap.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro_ctx import deterministic, reproducible
from repro_ctx.core.scope import open_activations
from tests.global_state import full_state

DRAWS: dict[str, Callable[[], object]] = {
    "random": random.random,
    "gauss": lambda: random.gauss(0.0, 1.0),  # random's own cached Gaussian
    "standard_normal": lambda: float(np.random.standard_normal()),  # one: leaves a cache
    "randn3": lambda: np.random.randn(3).tolist(),  # odd: leaves or takes a cache
    "rand": lambda: float(np.random.rand()),
    "torch": lambda: torch.rand(1).item(),
}
kinds = st.sampled_from(sorted(DRAWS))
steps = st.lists(st.lists(kinds, max_size=3), min_size=1, max_size=4)


@contextlib.contextmanager
def globals_restored() -> Iterator[None]:
    """Put random, NumPy's global state and torch back: these tests move them on purpose."""
    saved = (random.getstate(), np.random.get_bit_generator(),  # type: ignore[attr-defined]
             np.random.get_state(legacy=False), torch.get_rng_state())
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_bit_generator(saved[1])  # type: ignore[attr-defined]
        np.random.set_state(saved[2])
        torch.set_rng_state(saved[3])


def restoring_globals(test: Callable[..., None]) -> Callable[..., None]:
    """Run ``test`` (all its Hypothesis examples) inside ``globals_restored``."""
    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        with globals_restored():
            test(*args, **kwargs)

    return run


def draw_all(names: list[str]) -> list[object]:
    return [DRAWS[name]() for name in names]


def start_state(seed: int) -> None:
    """A known outer state with a cached Gaussian in NumPy and in random."""
    random.seed(seed)
    random.gauss(0.0, 1.0)
    np.random.seed(seed % 2**32)
    np.random.standard_normal()
    torch.manual_seed(seed)


def alone(seed: int, plan: list[list[str]]) -> list[list[object]]:
    """What a scoped function with this plan draws when nothing interleaves."""
    with deterministic(seed):
        return [draw_all(names) for names in plan]


@restoring_globals
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plans=st.lists(st.tuples(st.integers(0, 2**64 - 1), steps), min_size=1, max_size=3),
    schedule=st.lists(st.one_of(st.integers(0, 2), kinds), max_size=16),
    outer_seed=st.integers(0, 2**32 - 1),
)
def test_interleaved_generators_and_outer_code_draw_as_if_alone(
    plans: list[tuple[int, list[list[str]]]], schedule: list[int | str], outer_seed: int
) -> None:
    expected = [alone(seed, plan) for seed, plan in plans]
    outer_draws = [item for item in schedule if isinstance(item, str)]
    start_state(outer_seed)
    expected_outer = [DRAWS[name]() for name in outer_draws]
    expected_end = full_state()

    def body(plan: list[list[str]]) -> Iterator[list[object]]:
        for names in plan:
            yield draw_all(names)

    start_state(outer_seed)
    live = [reproducible(seed=seed)(body)(plan) for seed, plan in plans]
    got: list[list[list[object]]] = [[] for _ in plans]
    outer: list[object] = []
    for item in schedule:
        if isinstance(item, str):
            outer.append(DRAWS[item]())
        elif item < len(live):
            value = next(live[item], None)  # None once it has finished
            if value is not None:
                got[item].append(value)
    assert outer == expected_outer
    for index, generator in enumerate(live):
        got[index] = [*got[index], *generator]
    assert got == expected
    assert full_state() == expected_end
    assert open_activations() == ()


@restoring_globals
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plans=st.lists(st.tuples(st.integers(0, 2**64 - 1), steps), min_size=1, max_size=3),
    outer_plan=st.lists(st.lists(kinds, max_size=3), max_size=6),
    outer_seed=st.integers(0, 2**32 - 1),
)
def test_interleaved_coroutines_and_the_outer_task_draw_as_if_alone(
    plans: list[tuple[int, list[list[str]]]], outer_plan: list[list[str]], outer_seed: int
) -> None:
    """Each ``await asyncio.sleep(0)`` suspends: the event loop runs the others in between."""
    expected = [alone(seed, plan) for seed, plan in plans]
    start_state(outer_seed)
    expected_outer = [draw_all(names) for names in outer_plan]
    expected_end = full_state()

    async def worker(plan: list[list[str]], out: list[list[object]]) -> None:
        for names in plan:
            out.append(draw_all(names))
            await asyncio.sleep(0)

    async def main() -> tuple[list[list[list[object]]], list[list[object]]]:
        got: list[list[list[object]]] = [[] for _ in plans]
        tasks = [asyncio.create_task(reproducible(seed=seed)(worker)(plan, got[index]))
                 for index, (seed, plan) in enumerate(plans)]
        outer: list[list[object]] = []
        for names in outer_plan:  # the outer task draws between the workers' steps
            outer.append(draw_all(names))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return got, outer

    start_state(outer_seed)
    got, outer = asyncio.run(main())
    assert outer == expected_outer
    assert got == expected
    assert full_state() == expected_end
    assert open_activations() == ()


@restoring_globals
def test_an_odd_normal_in_a_step_and_outside_keeps_both_cached_gaussians() -> None:
    """The pinned case: both sides leave a cached Gaussian across every swap."""
    @reproducible(seed=3)
    def normals() -> Iterator[list[float]]:
        while True:
            yield [float(np.random.standard_normal()), *np.random.randn(2).tolist()]

    with deterministic(3):
        inside = [[float(np.random.standard_normal()), *np.random.randn(2).tolist()]
                  for _ in range(4)]
    start_state(11)
    outside = [float(np.random.standard_normal()) for _ in range(4)]
    after = np.random.get_state(legacy=False)

    start_state(11)
    steps_got: list[list[float]] = []
    outside_got: list[float] = []
    stream = normals()
    for _ in range(4):
        steps_got.append(next(stream))
        outside_got.append(float(np.random.standard_normal()))
    state = np.random.get_state(legacy=False)
    assert steps_got == inside
    assert outside_got == outside
    assert state["has_gauss"] == after["has_gauss"]
    assert state["gauss"] == after["gauss"]
    assert np.array_equal(state["state"]["key"], after["state"]["key"])
    assert state["state"]["pos"] == after["state"]["pos"]
