"""Seeding: the PyTorch reproducibility recipe, large seeds, and derived streams."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from repro_ctx import deterministic, register, unregister
from repro_ctx.core.seed import numpy_legacy_seed
from tests.global_state import draws, rng_state


def _recipe_draws(seed: int) -> list[object]:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return _many_draws()


def _many_draws() -> list[object]:
    return [
        random.random(), random.gauss(0, 1), random.getrandbits(70),
        np.random.rand(3).tolist(),
        np.random.randn(3).tolist(),
        np.random.randint(0, 9, 4).tolist(),
        torch.rand(3).tolist(), torch.randn(2).tolist(), torch.randint(0, 9, (4,)).tolist(),
    ]


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 - 1, 2**32 - 1])
def test_scope_draws_equal_the_pytorch_recipe(seed: int) -> None:
    with deterministic(seed):
        entered = rng_state()
        initial_seed = torch.initial_seed()
        inside = _many_draws()
    assert inside == _recipe_draws(seed)
    random.seed(seed)  # the recipe's state, before any draw
    np.random.seed(seed)
    torch.manual_seed(seed)
    assert entered == rng_state()
    assert initial_seed == seed


def test_recipe_holds_after_the_global_state_was_disturbed() -> None:
    np.random.randn(1)  # cached Gaussian outside
    random.gauss(0, 1)  # cached gauss_next outside
    with deterministic(5):
        inside = _many_draws()
    assert inside == _recipe_draws(5)


def test_every_call_of_a_scope_starts_from_the_same_state() -> None:
    scope = deterministic(11)
    with scope:
        first = _many_draws()
    draws()
    with scope:
        second = _many_draws()
    assert first == second


@pytest.mark.parametrize("seed", [2**32, 2**40 + 3, 2**64 - 1])
def test_large_seeds_use_the_documented_numpy_derivation(seed: int) -> None:
    with deterministic(seed):
        inside = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(seed)
    np.random.seed([seed & 0xFFFFFFFF, seed >> 32, 1])
    torch.manual_seed(seed)
    assert inside == (random.random(), np.random.rand(), torch.rand(1).item())


def test_numpy_derivation_is_injective_on_the_word_boundary() -> None:
    assert numpy_legacy_seed(2**32 - 1) == 2**32 - 1
    assert numpy_legacy_seed(2**32) == [0, 1, 1]
    assert numpy_legacy_seed(2**32 + 1) != numpy_legacy_seed(1)


@pytest.mark.parametrize("seed", [0, 5, 2**32, 2**33 + 7, 2**64 - 1])
def test_random_and_numpy_never_draw_the_same_stream(seed: int) -> None:
    """random.seed(s) keys MT19937 with s's 32-bit words; NumPy's key must differ."""
    with deterministic(seed):
        python = [random.random() for _ in range(4)]
        numpy = np.random.random_sample(4).tolist()
    assert python != numpy


def test_per_rank_scopes_keep_random_and_numpy_apart() -> None:
    with deterministic(0, per_rank=True):
        assert random.random() != np.random.rand()


def test_distinct_seeds_give_distinct_streams() -> None:
    with deterministic(1):
        a = draws()
    with deterministic(2):
        b = draws()
    assert all(x != y for x, y in zip(a, b))


def test_seed_none_isolates_without_reseeding() -> None:
    expected_state = rng_state()
    expected = draws()
    # rewind by restoring the public-API state
    random.setstate(expected_state["random"])
    key, pos, has_gauss, gauss = expected_state["numpy"]
    np.random.set_state(("MT19937", np.frombuffer(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(torch.frombuffer(bytearray(expected_state["torch"]), dtype=torch.uint8))
    with deterministic(None):
        inside = draws()
    assert inside == expected  # continued the outer streams
    assert rng_state() == expected_state  # and then rewound them


def test_passed_generators_get_independent_streams() -> None:
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    with deterministic(0, generators=[a, b]):
        xa, xb = a.random(4).tolist(), b.random(4).tolist()
    assert xa != xb
    with deterministic(0, generators=[a, b]):
        assert a.random(4).tolist() == xa
        assert b.random(4).tolist() == xb
    # and neither is the legacy global stream nor a plain copy of the seed
    assert xa != np.random.default_rng(0).random(4).tolist()


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.random.default_rng(3),
        lambda: np.random.Generator(np.random.PCG64DXSM(3)),
        lambda: np.random.Generator(np.random.Philox(3)),
        lambda: np.random.Generator(np.random.SFC64(3)),
        lambda: np.random.Generator(np.random.MT19937(3)),
        lambda: np.random.RandomState(3),
        lambda: np.random.PCG64(3),
        lambda: random.Random(3),
        lambda: torch.Generator().manual_seed(3),
    ],
    ids=["pcg64", "pcg64dxsm", "philox", "sfc64", "mt19937", "randomstate", "bitgen", "random",
         "torch"],
)
def test_every_supported_generator_is_seeded_and_restored(make: object) -> None:
    generator = make()  # type: ignore[operator]

    def draw() -> object:
        if isinstance(generator, np.random.Generator):
            return generator.random(3).tolist()
        if isinstance(generator, np.random.RandomState):
            return generator.randn(3).tolist()
        if isinstance(generator, np.random.BitGenerator):
            return generator.random_raw(3).tolist()
        if isinstance(generator, random.Random):
            return [generator.random(), generator.gauss(0, 1)]
        return torch.rand(3, generator=generator).tolist()

    outside_first = draw()
    generator = make()  # type: ignore[operator]  # the same starting state again
    with deterministic(0, generators=[generator]):
        in1 = draw()
    assert draw() == outside_first  # state restored: continues as if no scope
    register(generator)
    try:
        with deterministic(0):
            in2 = draw()
        with deterministic(0):
            assert draw() == in2
    finally:
        unregister(generator)
    assert in1 != outside_first


def test_passed_generators_are_seeded_anew_for_each_seed() -> None:
    """One decorator, one set of passed generators, a seed per call: no seed reuses another's."""
    from repro_ctx import reproducible

    g = np.random.default_rng(5)
    r = random.Random(5)

    @reproducible(seed=lambda seed: seed, generators=[g, r])  # two adapters: two runs
    def draw(seed: int) -> tuple[float, float]:
        return g.random(), r.random()

    draws_by_seed: dict[int, tuple[float, float]] = {}
    for seed in (1, 2, 1, 3, 2):
        assert draws_by_seed.setdefault(seed, draw(seed)) == draw(seed), seed
    assert len(set(draws_by_seed.values())) == 3


def test_a_seed_evicted_from_the_cache_still_follows_the_recipe() -> None:
    """Seeded states are cached for 64 seeds at a time; an evicted one is computed again."""
    for seed in range(1000, 1070):
        for _ in range(2):  # kept from the second use on
            with deterministic(seed):
                inside = _many_draws()
    assert inside == _recipe_draws(1069)
    with deterministic(1000):  # the first of the 70: evicted by now
        assert _many_draws() == _recipe_draws(1000)


def test_a_plan_with_another_seed_keeps_every_other_field() -> None:
    """``Plan.with_seed`` spells the fields out: one added to Plan must be carried too."""
    import dataclasses

    from repro_ctx.core.source import Plan

    values = {"seed": 1, "algorithms": "warn", "benchmark": True, "tf32": True,
              "fill_uninitialized_memory": False}
    assert {field.name for field in dataclasses.fields(Plan)} == set(values)
    plan = Plan(**values)  # type: ignore[arg-type]
    assert plan.with_seed(9) == dataclasses.replace(plan, seed=9)
    assert plan.with_seed(None) == dataclasses.replace(plan, seed=None)


def test_seeded_states_are_kept_from_the_second_use_for_the_last_seeds() -> None:
    from repro_ctx.sources.seeded_states import _SEEN, KEPT, SeededStates

    reads: list[int] = []
    cache: SeededStates[str] = SeededStates()

    def use(seed: int) -> str | None:
        def read() -> str:
            reads.append(seed)
            return f"state {seed}"

        kept = cache.get(seed)
        if kept is None:
            cache.seeded(seed, read)
        return kept

    assert use(1) is None  # first use: seeded...
    assert reads == []  # ...and nothing read
    assert use(1) is None  # second use: seeded again...
    assert reads == [1]  # ...and its state read
    assert use(1) == "state 1"  # later: copied in...
    assert reads == [1]  # ...and nothing read
    for seed in range(2, KEPT + 2):
        use(seed)
        use(seed)
    assert cache.get(1) is None  # the oldest of KEPT + 1 went
    assert cache.get(KEPT + 1) == f"state {KEPT + 1}"
    for seed in range(10_000, 10_000 + _SEEN):  # seeds used once fill the set, which starts again
        use(seed)
    assert use(10_000) is None
    assert cache.get(10_000) is None  # its first use was forgotten: this was a first use again


def test_the_first_second_and_later_uses_of_a_seed_all_follow_the_recipe() -> None:
    """A new seed is seeded directly, its state kept from its second use, copied in after."""
    for _ in range(4):
        with deterministic(4242):
            inside = _many_draws()
        assert inside == _recipe_draws(4242)
