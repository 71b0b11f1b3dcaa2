"""Scopes closed out of order (interleaved asyncio tasks using ``async with``)."""

from __future__ import annotations

import asyncio
import random

import pytest

from repro_ctx import ScopeOrderWarning, deterministic
from repro_ctx.core.scope import open_activations
from tests.global_state import full_state


def test_interleaved_async_with_blocks_end_in_the_state_before_both() -> None:
    """Task A enters, task B enters, A exits first: B inherits A's entry snapshot."""
    before = full_state()
    a_entered, b_entered, a_exited = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def task_a() -> None:
        async with deterministic(1):
            a_entered.set()
            await b_entered.wait()
            random.random()
        a_exited.set()

    async def task_b() -> None:
        await a_entered.wait()
        async with deterministic(2):
            b_entered.set()
            await a_exited.wait()
            random.random()

    async def main() -> None:
        await asyncio.gather(task_a(), task_b())

    with pytest.warns(ScopeOrderWarning, match="handed to the newer scope"):
        asyncio.run(main())
    assert full_state() == before
    assert open_activations() == ()


def test_one_object_entered_by_two_tasks_closes_each_tasks_own_activation() -> None:
    scope = deterministic(3)
    seen: dict[str, float] = {}
    first_in, second_in = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with scope:
            first_in.set()
            await second_in.wait()
        seen["first"] = 1.0

    async def second() -> None:
        await first_in.wait()
        async with scope:
            second_in.set()
            await asyncio.sleep(0)
            seen["second"] = 1.0

    before = full_state()

    async def main() -> None:
        await asyncio.gather(first(), second())

    with pytest.warns(ScopeOrderWarning):
        asyncio.run(main())
    assert seen == {"first": 1.0, "second": 1.0}
    assert full_state() == before
