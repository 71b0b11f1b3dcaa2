"""Decorated coroutines and async generators: the scope follows the body, task by task.

A decorated coroutine's state is swapped in at every step the event loop
runs and swapped out at every ``await`` that really suspends, so tasks under
any scheduling produce what they produce awaited one by one, and the code
around them never sees their state.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import random
import sys
import warnings
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from repro_ctx import ScopeOrderWarning, deterministic, reproducible
from repro_ctx.core.scope import open_activations
from tests.global_state import draws, flag_state, full_state

Draws = tuple[float, float, float]


class Boom(Exception):
    pass


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run`` that turns a ScopeOrderWarning into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScopeOrderWarning)
        return asyncio.run(main)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


async def pause(times: int) -> None:
    for _ in range(times):
        await asyncio.sleep(0)  # a real suspension: control goes back to the loop


def make_coroutine(
    seed: int, pauses: tuple[int, ...]
) -> Callable[[], Coroutine[Any, Any, list[Draws]]]:
    @reproducible(seed=seed)
    async def body() -> list[Draws]:
        torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
        out = []
        for count in pauses:
            out.append(draws())
            await pause(count)
        return out

    return body


# ---- tasks -------------------------------------------------------------------------


def test_gathered_tasks_give_what_they_give_one_by_one() -> None:
    bodies = [make_coroutine(seed, (1, 0, 2, 1)) for seed in (0, 1, 1, 2)]

    async def main() -> None:
        alone = [await body() for body in bodies]
        flags = flag_state()
        before = full_state()
        together = await asyncio.gather(*(body() for body in bodies))
        assert list(together) == alone
        assert full_state() == before
        assert flag_state() == flags

    run(main())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 1, 7]), st.lists(st.integers(0, 3), min_size=1, max_size=4)),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.integers(0, 3), max_size=8),
)
def test_any_scheduling_of_tasks_and_caller_draws(
    specs: list[tuple[int, list[int]]], caller_pauses: list[int]
) -> None:
    bodies = [make_coroutine(seed, tuple(pauses)) for seed, pauses in specs]

    async def caller() -> list[Draws]:
        out = []
        for count in caller_pauses:
            out.append(draws())
            await pause(count)
        return out

    async def main() -> None:
        alone = [await body() for body in bodies]
        seed_everything(3)
        expected_caller = await caller()
        seed_everything(3)
        flags = flag_state()
        *together, caller_draws = await asyncio.gather(*(body() for body in bodies), caller())
        assert together == alone
        assert caller_draws == expected_caller
        assert flag_state() == flags

    run(main())
    assert open_activations() == ()


def test_a_decorated_coroutine_awaiting_another_nests() -> None:
    inner = make_coroutine(5, (1, 1))

    @reproducible(seed=6)
    async def outer() -> tuple[Draws, list[Draws], Draws]:
        first = draws()
        middle = await inner()
        await pause(1)
        return first, middle, draws()

    with deterministic(6):
        first, last = draws(), draws()

    async def main() -> None:
        alone = await inner()
        assert await outer() == (first, alone, last)
        before = full_state()
        results = await asyncio.gather(outer(), outer(), inner())
        assert list(results) == [(first, alone, last), (first, alone, last), alone]
        assert full_state() == before

    run(main())


def test_async_with_in_a_decorated_coroutine_spanning_awaits_interleaves() -> None:
    @reproducible(seed=1)
    async def body(other: int) -> list[Draws]:
        out = [draws()]
        async with deterministic(other):
            out.append(draws())
            await pause(2)
            out.append(draws())
        await pause(1)
        out.append(draws())
        return out

    async def main() -> None:
        alone = [await body(other) for other in (4, 5, 4)]
        before = full_state()
        together = await asyncio.gather(*(body(other) for other in (4, 5, 4)))
        assert list(together) == alone
        assert full_state() == before

    run(main())
    with deterministic(4):
        inner = [draws(), draws()]
    with deterministic(1):
        outer = [draws(), draws()]
    assert run(body(4)) == [outer[0], *inner, outer[1]]


def test_async_with_deterministic_scopes_a_block_in_a_coroutine() -> None:
    async def main() -> None:
        before = full_state()
        async with deterministic(9):
            first = draws()
            await pause(1)
            second = draws()
        assert full_state() == before
        with deterministic(9):
            assert (first, second) == (draws(), draws())

    run(main())


# ---- exit paths of a coroutine -----------------------------------------------------


@reproducible(seed=2)
async def sleeper(log: list[Draws]) -> None:
    try:
        log.append(draws())
        await asyncio.sleep(10)
    finally:
        log.append(draws())  # cleanup: from the coroutine's stream


def test_cancellation_runs_the_cleanup_in_the_coroutines_state() -> None:
    with deterministic(2):
        expected = [draws(), draws()]

    async def main() -> None:
        log: list[Draws] = []
        before = full_state()
        task = asyncio.ensure_future(sleeper(log))
        await pause(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert full_state() == before
        assert log == expected

    run(main())


def test_an_exception_escaping_a_coroutine() -> None:
    @reproducible(seed=0)
    async def fails() -> None:
        draws()
        await pause(1)
        torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
        raise Boom

    async def main() -> None:
        before = full_state()
        with pytest.raises(Boom):
            await fails()
        assert full_state() == before

    run(main())


def test_manual_send_throw_and_close() -> None:
    @reproducible(seed=0)
    async def body() -> str:
        try:
            await pause(1)
        except Boom:
            draws()
            await pause(1)
        return "done"

    before = full_state()
    coro = body()
    assert asyncio.iscoroutine(coro)
    assert coro.cr_code is body.__wrapped__.__code__  # type: ignore[attr-defined]
    assert "body" in repr(coro)
    coro.send(None)
    assert full_state() == before
    coro.throw(Boom())
    assert full_state() == before
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    assert stop.value.value == "done"
    assert full_state() == before
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        coro.send(None)
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        coro.throw(Boom())
    coro.close()

    started = body()
    started.send(None)
    started.close()  # GeneratorExit at the await, in the coroutine's state
    assert full_state() == before
    assert open_activations() == ()


def test_garbage_collection_of_a_suspended_coroutine() -> None:
    log: list[Draws] = []
    before = full_state()

    @reproducible(seed=2)
    async def waits() -> None:
        try:
            await pause(1)
        finally:
            log.append(draws())

    suspended = waits()
    suspended.send(None)
    del suspended
    gc.collect()
    assert full_state() == before
    with deterministic(2):
        assert log[-1] == draws()


def test_garbage_collection_of_a_coroutine_in_a_reference_cycle() -> None:
    log: list[Draws] = []

    @reproducible(seed=2)
    async def cyclic(holder: list[object]) -> None:
        async with deterministic(3):
            try:
                await pause(1)
            finally:
                log.append(draws())

    before = full_state()
    holder: list[object] = []
    coro = cyclic(holder)
    holder.append(coro)
    coro.send(None)
    del coro, holder
    gc.collect()
    assert full_state() == before
    assert open_activations() == ()
    with deterministic(3):
        assert log == [draws()]


def test_a_coroutine_never_awaited_warns_under_its_own_name() -> None:
    before = full_state()
    never = sleeper([])
    with pytest.warns(RuntimeWarning, match="coroutine '.*sleeper' was never awaited"):
        del never  # the last reference
    closed = sleeper([])
    closed.close()  # closing first silences the warning, as for a native coroutine
    assert full_state() == before


def test_a_decorated_coroutine_function_is_still_one() -> None:
    assert inspect.iscoroutinefunction(sleeper)
    assert asyncio.iscoroutinefunction(sleeper)
    assert inspect.isasyncgenfunction(ticker)


# ---- async generators ----------------------------------------------------------------


@reproducible(seed=3)
async def ticker(count: int, log: list[str] | None = None) -> AsyncGenerator[Draws, int | None]:
    torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
    try:
        for _ in range(count):
            await pause(1)
            received = yield draws()
            if received is not None:
                random.random()
    finally:
        draws()
        if log is not None:
            log.append("cleaned")


def test_interleaved_async_generators_and_tasks() -> None:
    async def consume() -> list[Draws]:
        return [value async for value in ticker(3)]

    async def main() -> None:
        alone = await consume()
        flags = flag_state()
        before = full_state()
        together = await asyncio.gather(consume(), consume(), consume())
        assert list(together) == [alone] * 3
        first, second = ticker(3), ticker(3)
        got = []
        for _ in range(3):
            got.append((await first.__anext__(), await second.__anext__()))
            assert flag_state() == flags
        assert got == [(value, value) for value in alone]
        for gen in (first, second):
            with pytest.raises(StopAsyncIteration):
                await gen.__anext__()
        assert full_state() == before

    run(main())


def test_async_generator_exit_paths() -> None:
    async def main() -> None:
        alone = [value async for value in ticker(4)]
        before = full_state()

        gen = ticker(4)
        assert await gen.__anext__() == alone[0]
        await gen.asend(1)  # a sent value: the generator draws once more in its own state
        await gen.aclose()
        assert full_state() == before

        log: list[str] = []
        gen = ticker(4, log)
        await gen.__anext__()
        with pytest.raises(Boom):
            await gen.athrow(Boom())
        assert log == ["cleaned"]
        assert full_state() == before

        async for index, _value in _enumerate(ticker(4)):
            if index == 1:
                break  # left suspended: closed below, or by the loop at shutdown
        assert full_state() == before

        gen = ticker(4, log)
        await gen.__anext__()
        del gen
        gc.collect()  # the loop's finalizer schedules aclose(); it runs in the scope
        await pause(3)
        assert log == ["cleaned", "cleaned"]
        assert full_state() == before

    run(main())


def test_a_task_cancelled_while_an_async_generator_awaits() -> None:
    async def main() -> None:
        log: list[str] = []
        before = full_state()

        async def consume() -> None:
            async for _value in ticker(10, log):
                await asyncio.sleep(10)

        task = asyncio.ensure_future(consume())
        await pause(3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        del task
        await pause(3)  # the abandoned generator: the loop's finalizer closes it, in its scope
        assert log == ["cleaned"]
        assert full_state() == before
        gen = ticker(10, log)
        step = asyncio.ensure_future(gen.__anext__())  # cancelled inside the generator's await
        await pause(1)
        step.cancel()
        with pytest.raises(asyncio.CancelledError):
            await step
        assert log == ["cleaned", "cleaned"]
        assert full_state() == before

    run(main())


async def _enumerate(gen: AsyncGenerator[Draws, Any]) -> AsyncGenerator[tuple[int, Draws], None]:
    index = 0
    async for value in gen:
        yield index, value
        index += 1


def test_only_the_wrapper_is_handed_to_the_event_loops_hooks() -> None:
    """The loop may close what its hooks saw, outside any scope: it must see the wrapper only."""
    seen: list[object] = []
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=seen.append, finalizer=seen.append)
    try:
        before = full_state()
        gen = ticker(2)
        step = gen.__anext__()
        assert step.send(None) is None  # asyncio.sleep(0): a real suspension, no loop needed
        with pytest.raises(StopIteration):
            step.send(None)
        with pytest.raises(StopIteration):
            gen.aclose().send(None)
        assert full_state() == before
    finally:
        sys.set_asyncgen_hooks(*hooks)
    assert seen == [gen]


@reproducible(seed=5)
async def cyclic_stream(holder: list[object], log: list[Draws]) -> AsyncGenerator[Draws, None]:
    async with deterministic(6):  # left open across the yield
        try:
            yield draws()
        finally:
            log.append(draws())


def test_an_async_generator_collected_in_a_reference_cycle_closes_in_its_scope() -> None:
    log: list[Draws] = []

    async def main() -> None:
        before = full_state()
        holder: list[object] = []
        gen = cyclic_stream(holder, log)
        holder.append(gen)
        await gen.__anext__()
        del gen, holder
        gc.collect()  # both generators are garbage: the loop's finalizer closes them
        await pause(3)
        assert full_state() == before
        assert open_activations() == ()

    run(main())
    _cleanup_ran_in_its_own_state(log)


def _drop_a_started_cycle(log: list[Draws]) -> None:
    """Start a ``cyclic_stream`` without a loop, then make it and its wrapper garbage."""
    holder: list[object] = []
    gen = cyclic_stream(holder, log)
    holder.append(gen)
    with pytest.raises(StopIteration):
        gen.__anext__().send(None)
    del gen, holder
    gc.collect()


def _cleanup_ran_in_its_own_state(log: list[Draws]) -> None:
    """The generator's ``finally`` drew the second value of its nested deterministic(6)."""
    assert open_activations() == ()
    with deterministic(6):
        draws()
        assert log == [draws()]


def test_an_async_generator_collected_without_an_event_loop() -> None:
    log: list[Draws] = []
    before = full_state()
    _drop_a_started_cycle(log)  # no loop, no hooks: the inner generator is closed at once
    assert full_state() == before
    _cleanup_ran_in_its_own_state(log)


def test_a_loops_finalizer_gets_a_stand_in_it_can_name_and_close() -> None:
    """What any event loop's finalizer hook receives for a collected inner generator."""
    log: list[Draws] = []
    handed: list[Any] = []
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=lambda agen: None, finalizer=handed.append)
    try:
        before = full_state()
        _drop_a_started_cycle(log)
    finally:
        sys.set_asyncgen_hooks(*hooks)
    inner = [agen for agen in handed if agen.__qualname__ == "cyclic_stream"]
    assert len(inner) == 2  # the wrapper (a native async generator) and the stand-in
    for agen in handed:
        with pytest.raises(StopIteration):
            agen.aclose().send(None)
    assert full_state() == before
    _cleanup_ran_in_its_own_state(log)


def test_the_loop_closes_a_suspended_async_generator_at_shutdown_in_its_scope() -> None:
    log: list[str] = []
    keep: list[Any] = []

    async def main() -> None:
        gen = ticker(4, log)
        keep.append(gen)
        await gen.__anext__()

    before = full_state()
    run(main())
    assert log == ["cleaned"]
    assert full_state() == before


def test_an_async_generator_that_raises_and_one_that_handles_a_throw() -> None:
    @reproducible(seed=4)
    async def handles() -> AsyncGenerator[float, None]:
        while True:
            try:
                yield random.random()
            except Boom:
                await pause(1)

    async def main() -> None:
        with deterministic(4):
            expected = [random.random() for _ in range(3)]
        before = full_state()
        gen = handles()
        assert await gen.__anext__() == expected[0]
        assert await gen.athrow(Boom()) == expected[1]
        assert await gen.asend(None) == expected[2]
        await gen.aclose()
        assert full_state() == before

    run(main())


def test_unstarted_async_generators_run_nothing() -> None:
    async def main() -> None:
        before = full_state()
        gen = ticker(2)
        with pytest.raises(Boom):
            await gen.athrow(Boom())
        await ticker(2).aclose()
        assert full_state() == before

    run(main())
