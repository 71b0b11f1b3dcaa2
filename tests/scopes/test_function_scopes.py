"""Decorated generators: the scope follows the body through every yield, and every exit path.

Every check compares public-API state (tests/global_state.py): a generator's values
against the values it yields alone, the caller's draws against the draws it
makes without the generator, the caller's flags against their value before.
"""

from __future__ import annotations

import contextlib
import gc
import random
import sys
import warnings
from collections.abc import Callable, Generator
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from repro_ctx import ScopeOrderWarning, deterministic, reproducible
from repro_ctx.core.scope import open_activations
from repro_ctx.core.seed import check_seed, rank_seed
from repro_ctx.scopes.function_scopes import FunctionScope, ScopedGenerator
from tests.global_state import draws, flag_state, full_state

Draws = tuple[float, float, float]


class Poke(Exception):
    """Thrown into a generator, which takes it as "go on"."""


class Boom(Exception):
    """Raised by a generator's body."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_generator(
    seed: int, *, length: int = 4, nested: int | None = None, fail_at: int | None = None
) -> Callable[[], Generator[Draws, None, str]]:
    """A decorated generator function; ``nested`` opens a ``with`` block spanning its yields."""

    @reproducible(seed=seed)
    def body() -> Generator[Draws, None, str]:
        torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark  # its own flags
        try:
            for index in range(length):
                if index == fail_at:
                    raise Boom
                if nested is not None and index == 1:
                    with deterministic(nested):
                        for _ in range(length - 1 - index):
                            with contextlib.suppress(Poke):
                                yield draws()
                    return "done"
                with contextlib.suppress(Poke):
                    yield draws()
            return "done"
        finally:
            draws()  # cleanup draws: must come from the generator's stream

    return body


def solo(factory: Callable[[], Generator[Draws, None, str]]) -> list[Draws]:
    out = []
    with contextlib.suppress(Boom):
        out.extend(factory())
    return out


# ---- isolation and the caller ------------------------------------------------------


def test_a_generator_yields_what_a_with_block_would() -> None:
    @reproducible(seed=5)
    def body() -> Generator[Draws, None, None]:
        for _ in range(3):
            yield draws()

    with deterministic(5):
        expected = [draws() for _ in range(3)]
    assert list(body()) == expected


def test_two_interleaved_generators_and_the_caller_never_mix() -> None:
    factory = make_generator(1)
    alone = solo(factory)
    seed_everything(11)
    reference = [draws() for _ in range(4)]
    flags = flag_state()

    seed_everything(11)
    first, second, caller = factory(), factory(), []
    got_first, got_second = [], []
    for _ in range(4):
        got_first.append(next(first))
        caller.append(draws())
        assert flag_state() == flags
        got_second.append(next(second))
    assert got_first == alone
    assert got_second == alone
    assert caller == reference
    assert flag_state() == flags


def test_send_and_return_value_pass_through() -> None:
    @reproducible(seed=0)
    def echo() -> Generator[float, int, str]:
        received = yield random.random()
        received = yield received * random.random()
        return f"got {received}"

    with deterministic(0):
        first, second = random.random(), random.random()
    before = full_state()
    gen = echo()
    assert next(gen) == first
    assert gen.send(3) == 3 * second
    with pytest.raises(StopIteration) as stop:
        gen.send(7)
    assert stop.value.value == "got 7"
    assert full_state() == before


def test_yield_from_a_decorated_generator() -> None:
    factory = make_generator(2, length=3)
    alone = solo(factory)

    def outer() -> Generator[Draws, None, str]:
        result = yield from factory()
        return result

    before = full_state()
    assert list(outer()) == alone
    assert full_state() == before


def test_metadata_of_a_decorated_generator() -> None:
    @reproducible(seed=0)
    def numbers() -> Generator[int, None, None]:
        """Doc."""
        yield 1

    gen = numbers()
    assert numbers.__name__ == "numbers"
    assert numbers.__doc__ == "Doc."
    assert gen.__name__ == "numbers"
    assert gen.__qualname__.endswith("numbers")
    assert isinstance(gen, Generator)
    assert list(gen) == [1]


# ---- every exit path -------------------------------------------------------------


def _caller_check(action: Callable[[], object]) -> None:
    """``action`` (which touches a generator) leaves the caller's draws and flags as they were."""
    seed_everything(21)
    flags = flag_state()
    reference = draws()
    seed_everything(21)
    action()
    assert flag_state() == flags
    assert draws() == reference
    assert open_activations() == ()


def test_throw_that_the_generator_handles() -> None:
    factory = make_generator(3)
    alone = solo(factory)
    gen = factory()
    got: list[Draws] = []

    def act() -> None:
        got.append(next(gen))
        got.append(gen.throw(Poke()))

    _caller_check(act)
    assert got == alone[:2]


def test_throw_that_escapes() -> None:
    gen = make_generator(3)()
    next(gen)

    def act() -> None:
        with pytest.raises(KeyError):
            gen.throw(KeyError("x"))

    _caller_check(act)
    with pytest.raises(StopIteration):
        next(gen)


def test_throw_into_an_unstarted_generator_runs_nothing() -> None:
    gen = make_generator(3)()

    def act() -> None:
        with pytest.raises(KeyError):
            gen.throw(KeyError("x"))

    _caller_check(act)


def test_close_runs_the_cleanup_in_the_generators_state() -> None:
    factory = make_generator(4)
    gen = factory()

    def act() -> None:
        next(gen)
        gen.close()

    _caller_check(act)
    gen.close()  # closing again is a no-op


def test_close_of_a_generator_that_refuses_to_stop_keeps_its_scope() -> None:
    stop = False

    @reproducible(seed=0)
    def stubborn() -> Generator[int, None, None]:
        while True:
            try:
                yield 1
            except GeneratorExit:
                random.random()
                if stop:
                    return

    gen = stubborn()
    next(gen)

    def act() -> None:
        nonlocal stop
        with pytest.raises(RuntimeError, match="ignored GeneratorExit"):
            gen.close()
        stop = True
        gen.close()  # the second close runs in the generator's state too

    _caller_check(act)


def test_close_of_a_generator_whose_cleanup_raises() -> None:
    @reproducible(seed=0)
    def fails_on_close() -> Generator[int, None, None]:
        try:
            yield 1
        finally:
            random.random()
            raise Boom

    gen = fails_on_close()
    next(gen)

    def act() -> None:
        with pytest.raises(Boom):
            gen.close()

    _caller_check(act)


def test_breaking_out_of_a_loop_early() -> None:
    factory = make_generator(5, length=6)
    alone = solo(factory)
    got: list[Draws] = []

    def act() -> None:
        for index, value in enumerate(factory()):
            got.append(value)
            if index == 1:
                break

    _caller_check(act)
    assert got == alone[:2]


def test_an_exception_escaping_the_body() -> None:
    factory = make_generator(6, fail_at=2)
    got: list[Draws] = []

    def act() -> None:
        with pytest.raises(Boom):
            got.extend(factory())

    _caller_check(act)
    assert got == solo(make_generator(6, length=2))


def test_garbage_collection_of_an_unfinished_generator() -> None:
    factory = make_generator(7)

    def act() -> None:
        gen = factory()
        next(gen)
        next(gen)
        del gen
        gc.collect()

    _caller_check(act)


def test_an_unstarted_generator_runs_nothing_when_dropped() -> None:
    def act() -> None:
        gen = make_generator(7)()
        del gen
        gc.collect()

    _caller_check(act)


def test_garbage_collection_of_a_generator_in_a_reference_cycle() -> None:
    """The wrapper is finalized before the generator it drives, so the cleanup is scoped."""
    log: list[Draws] = []

    @reproducible(seed=7)
    def cyclic(holder: list[object]) -> Generator[Draws, None, None]:
        with deterministic(8):  # left open across the yield: set aside with the generator
            try:
                yield draws()
            finally:
                log.append(draws())

    def act() -> None:
        holder: list[object] = []
        gen = cyclic(holder)
        holder.append(gen)  # generator frame -> holder -> wrapper -> generator
        next(gen)
        del gen, holder
        gc.collect()

    _caller_check(act)
    with deterministic(8):
        draws()
        assert log == [draws()]


def test_a_generator_finalized_before_its_wrapper_leaves_no_scope_open() -> None:
    """The fallback for a finalization order other than CPython's allocation order."""
    scope = deterministic(7)

    def body(holder: list[object]) -> Generator[int, None, None]:
        with deterministic(8):
            yield 1

    unraisable: list[Any] = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        holder: list[object] = []
        inner = body(holder)  # allocated before its wrapper, so finalized first
        gen = ScopedGenerator(inner, FunctionScope(scope, scope.plan, scope.sources()))
        holder.append(gen)
        next(gen)
        del inner, gen, holder
        gc.collect()
    finally:
        sys.unraisablehook = hook
    # The generator's own close ran outside its scope: its with block could not find
    # its (set aside) activation. The wrapper then had nothing left to close.
    assert "without a matching __enter__" in str(unraisable[0].exc_value)
    assert open_activations() == ()


# ---- with blocks inside a generator, across its yields ------------------------------


def test_a_with_block_spanning_yields_is_the_generators_own() -> None:
    factory = make_generator(8, length=5, nested=9)
    alone = solo(factory)
    with deterministic(9):
        assert alone[1] == draws()  # the with block's stream, not the generator's
    seed_everything(31)
    reference = [draws() for _ in range(4)]
    seed_everything(31)
    flags = flag_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScopeOrderWarning)
        first, second, caller = factory(), factory(), []
        for got in zip(first, second, strict=True):
            assert got == (alone[len(caller)],) * 2
            caller.append(draws())
            assert flag_state() == flags
            assert open_activations() == ()
    assert caller == reference


def test_the_same_deterministic_object_in_the_caller_and_the_generator() -> None:
    shared = deterministic(4)

    @reproducible(seed=1)
    def body() -> Generator[Draws, None, None]:
        with shared:
            yield draws()
            yield draws()

    alone = list(body())
    before = full_state()
    gen = body()
    with shared:
        inside = full_state()
        assert next(gen) == alone[0]
        assert full_state() == inside
    assert full_state() == before
    assert next(gen) == alone[1]
    assert full_state() == before
    gen.close()
    assert open_activations() == ()


class FailsOnce(torch.Generator):
    """A passed generator whose next ``set_state`` fails, once."""

    fail_next = False

    def set_state(self, new_state: torch.Tensor) -> torch.Generator:
        if self.fail_next:
            self.fail_next = False
            raise OSError("set_state failed")
        return super().set_state(new_state)


def test_a_failure_reopening_a_nested_block_leaves_the_generator_suspended() -> None:
    flaky = FailsOnce()

    @reproducible(seed=0)
    def body() -> Generator[float, None, None]:
        with deterministic(4), deterministic(5, generators=[flaky]):  # two nested blocks
            yield float(torch.rand(1, generator=flaky))
            yield float(torch.rand(1, generator=flaky))

    alone = list(body())
    gen = body()
    assert next(gen) == alone[0]
    before = full_state()
    flaky.fail_next = True
    with pytest.raises(OSError, match="set_state failed"):
        next(gen)  # reopening the with block fails: the caller's state comes back
    assert full_state() == before
    assert open_activations() == ()
    assert next(gen) == alone[1]  # still suspended where it was: a retry resumes it
    assert full_state() == before
    gen.close()


# ---- the interleaving property -------------------------------------------------------


@st.composite
def _schedules(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    configs = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "seed": st.sampled_from([0, 1, 2**40]),
                    "length": st.integers(1, 5),
                    "nested": st.sampled_from([None, 3]),
                    "fail_at": st.sampled_from([None, 0, 2]),
                }
            ),
            min_size=1,
            max_size=4,
        )
    )
    which = st.integers(0, len(configs) - 1)
    actions = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("next"), which),
                st.tuples(st.just("throw"), which),
                st.tuples(st.just("close"), which),
                st.tuples(st.just("drop"), which),
                st.just(("draw",)),
            ),
            max_size=30,
        )
    )
    return configs, actions


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_schedules())
def test_random_interleavings_of_generators_and_caller_draws(
    schedule: tuple[list[dict[str, Any]], list[tuple[Any, ...]]],
) -> None:
    configs, actions = schedule
    factories = [make_generator(**config) for config in configs]
    alone = [solo(factory) for factory in factories]
    caller_draws = sum(action[0] == "draw" for action in actions)
    seed_everything(41)
    reference = [draws() for _ in range(caller_draws)]

    seed_everything(41)
    flags = flag_state()
    gens: list[Generator[Draws, None, str] | None] = [factory() for factory in factories]
    got: list[list[Draws]] = [[] for _ in factories]
    caller: list[Draws] = []
    for action in actions:
        if action[0] == "draw":
            caller.append(draws())
            continue
        index = action[1]
        gen = gens[index]
        if gen is None:
            continue
        if action[0] == "close":
            gen.close()
            gens[index] = None
        elif action[0] == "drop":  # the last reference: finalised right here
            gens[index] = None
            del gen
        else:
            try:
                got[index].append(next(gen) if action[0] == "next" else gen.throw(Poke()))
            except (StopIteration, Boom, Poke):  # Poke: thrown into an unstarted generator
                gens[index] = None
        assert flag_state() == flags
    gens.clear()
    assert caller == reference
    for index, values in enumerate(got):
        assert values == alone[index][: len(values)]
    assert flag_state() == flags
    assert open_activations() == ()


def make_flag_changing_generator(
    seed: int, length: int, changes_at: frozenset[int]
) -> Callable[[], Generator[tuple[Draws, Any], None, None]]:
    """A decorated generator that changes flags and TF32 (new API) between some of its yields.

    It yields its draws and what it sees of the flags it changed; the TF32
    nodes it never wrote are left out, as the scope leaves them as the caller
    had them when they already meant what the plan asks.
    """

    @reproducible(seed=seed)
    def body() -> Generator[tuple[Draws, Any], None, None]:
        wrote_tf32 = False
        for index in range(length):
            if index in changes_at:
                torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
                torch.backends.mkldnn.deterministic = not torch.backends.mkldnn.deterministic
                torch.backends.cuda.matmul.fp32_precision = ("tf32", "ieee")[index % 2]
                wrote_tf32 = True
            seen = (
                torch.backends.cudnn.deterministic,  # the plan's, whatever the caller sets
                torch.backends.cudnn.benchmark,
                torch.backends.mkldnn.deterministic,
                torch.backends.cuda.matmul.fp32_precision if wrote_tf32 else None,
            )
            yield draws(), seen

    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    configs=st.lists(
        st.tuples(
            st.sampled_from([0, 5]),
            st.integers(1, 5),
            st.frozensets(st.integers(0, 4), max_size=3),
        ),
        min_size=1,
        max_size=3,
    ),
    actions=st.lists(
        st.one_of(st.tuples(st.just("next"), st.integers(0, 2)), st.just(("flip",))),
        max_size=25,
    ),
)
def test_flags_changed_on_both_sides_between_steps_stay_on_their_side(
    configs: list[tuple[int, int, frozenset[int]]], actions: list[tuple[Any, ...]]
) -> None:
    """The caller and each generator change flags between steps; each sees only its own."""
    if not hasattr(torch.backends, "fp32_precision"):
        pytest.skip("the fp32_precision API is torch >= 2.9")
    factories = [make_flag_changing_generator(*config) for config in configs]
    alone = [list(factory()) for factory in factories]
    gens = [factory() for factory in factories]
    got: list[list[tuple[Draws, Any]]] = [[] for _ in factories]
    rng = random.Random(len(actions))
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        expected = flag_state()
        for action in actions:
            if action[0] == "flip":  # the caller's own changes, through the legacy TF32 API
                torch.backends.cudnn.deterministic = not torch.backends.cudnn.deterministic
                torch.backends.cudnn.allow_tf32 = rng.random() < 0.5
                torch.set_float32_matmul_precision(rng.choice(["highest", "high", "medium"]))
                expected = flag_state()
            else:
                index = action[1] % len(gens)
                with contextlib.suppress(StopIteration):
                    got[index].append(next(gens[index]))
            assert flag_state() == expected
    for index, values in enumerate(got):
        assert values == alone[index][: len(values)]
    assert open_activations() == ()


# ---- plain functions ----------------------------------------------------------------


def test_a_plain_call_that_raises_restores() -> None:
    @reproducible(seed=0)
    def fails() -> None:
        draws()
        torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
        torch.set_float32_matmul_precision("medium")
        raise Boom

    before = full_state()
    with pytest.raises(Boom):
        fails()
    assert full_state() == before


def test_a_plain_function_returning_a_generator_is_scoped_only_for_the_call() -> None:
    @reproducible(seed=0)
    def make() -> Any:
        return iter([random.random()])

    with deterministic(0):
        expected = random.random()
    assert list(make()) == [expected]


# ---- callable seeds --------------------------------------------------------------------


class Augmented:
    """A Dataset-like class: per-sample reproducible augmentation."""

    @reproducible(seed=lambda self, idx: idx)
    def __getitem__(self, idx: int) -> list[float]:
        return [*torch.rand(2).tolist(), random.random()]

    @reproducible(seed=lambda cls, idx: idx + 100)
    @classmethod
    def from_class(cls, idx: int) -> float:
        return random.random()

    @reproducible(seed=lambda idx: idx + 200)
    @staticmethod
    def static(idx: int) -> float:
        return random.random()


def test_a_callable_seed_gives_each_sample_its_own_reproducible_stream() -> None:
    data = Augmented()
    before = full_state()
    samples = [data[idx] for idx in range(4)]
    assert full_state() == before
    assert len({tuple(sample) for sample in samples}) == 4
    for idx in (3, 0, 2):
        with deterministic(idx):
            assert data[idx] == [*torch.rand(2).tolist(), random.random()]
    assert Augmented.__getitem__(data, 2) == samples[2]
    with deterministic(105):
        expected = random.random()
    assert Augmented.from_class(5) == data.from_class(5) == expected
    with deterministic(205):
        expected = random.random()
    assert Augmented.static(5) == data.static(5) == expected


def test_a_callable_seed_on_generators_sees_the_calls_arguments() -> None:
    @reproducible(seed=lambda start, *, scale: start * scale)
    def stream(start: int, *, scale: int) -> Generator[float, None, None]:
        yield random.random()

    with deterministic(6):
        expected = random.random()
    assert list(stream(2, scale=3)) == [expected]


def test_a_callable_seed_may_return_none_to_isolate_without_reseeding() -> None:
    @reproducible(seed=lambda: None)
    def isolated() -> float:
        return random.random()

    seed_everything(3)
    before = full_state()
    value = isolated()
    assert full_state() == before
    assert value == random.random()


@pytest.mark.parametrize("bad", ["3", 1.5, True, -1, 2**64])
def test_a_callable_returning_a_bad_seed_gets_the_literal_seeds_error(bad: object) -> None:
    """The error an int seed gets (a callable must return an int or None, not a callable)."""
    with pytest.raises((TypeError, ValueError)) as literal:
        check_seed(bad)
    with pytest.raises(literal.type):
        reproducible(seed=bad)  # type: ignore[arg-type]

    @reproducible(seed=lambda: bad)
    def plain() -> None:
        pytest.fail("must not run")  # pragma: no cover

    @reproducible(seed=lambda: bad)
    def gen() -> Generator[None, None, None]:
        pytest.fail("must not run")  # pragma: no cover
        yield  # pragma: no cover

    before = full_state()
    for call in (plain, gen):
        with pytest.raises(literal.type) as called:
            call()
        assert str(called.value).startswith(str(literal.value))
        assert "returned by the seed callable" in str(called.value)
    assert full_state() == before
    assert open_activations() == ()


def test_per_rank_seeds_follow_the_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")

    @reproducible(seed=5, per_rank=True)
    def fixed() -> float:
        return random.random()

    @reproducible(seed=lambda: 5, per_rank=True)
    def called() -> float:
        return random.random()

    with deterministic(rank_seed(5, 1)):
        expected = random.random()
    assert fixed() == called() == expected
    with deterministic(5):
        assert random.random() != expected


# ---- what can be decorated -------------------------------------------------------------


@pytest.mark.parametrize("thing", [3, "text", None])
def test_non_callables_are_rejected(thing: object) -> None:
    with pytest.raises(TypeError, match="@reproducible decorates a function, method"):
        reproducible(seed=0)(thing)  # type: ignore[type-var]


def test_a_class_other_than_a_testcase_is_rejected() -> None:
    class Model:
        pass

    with pytest.raises(TypeError, match=r"unittest\.TestCase subclass .*got class .*Model"):
        reproducible(seed=0)(Model)


def test_the_decorator_object_says_what_it_applies() -> None:
    assert "seed=3" in repr(reproducible(seed=3))
    assert "seed computed per call by <function" in repr(reproducible(seed=lambda: 3))
