"""A ``KeyboardInterrupt`` (any ``BaseException``) in one source's restore: every other comes back.

The interrupting sources are real source plugins (a library's module-level
``random.Random``), registered with ``register_source``; they sit after the
built-in sources, so their restore runs first. Each test compares the
public-API state of every other source, and of every other plugin, with what
it was before the scope.
"""

from __future__ import annotations

import asyncio
import random
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro_ctx import deterministic, register_source, reproducible
from repro_ctx.core import scope as scope_module
from repro_ctx.core.error_notes import ALGORITHMS_NOTE
from repro_ctx.core.scope import open_activations
from tests.global_state import full_state, scramble
from tests.plugin_site import registry_preserved
from tests.waits import HANG_TIMEOUT


class CustomInterrupt(BaseException):
    """A ``BaseException`` that is neither ``KeyboardInterrupt`` nor ``SystemExit``."""


KINDS: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, CustomInterrupt)


class Library:
    """A library's module-level RNG and its source; ``raise_at`` arms one failure."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.raise_at: dict[str, type[BaseException]] = {}

    def _maybe_raise(self, where: str) -> None:
        kind = self.raise_at.pop(where, None)  # one shot: the next call works
        if kind is not None:
            raise kind(f"{self.name}.{where}")

    def capture(self) -> object:
        return self.rng.getstate()

    def seed(self, seed: int) -> None:
        self.rng.seed(seed)
        self._maybe_raise("seed")

    def restore(self, snapshot: Any) -> None:
        self._maybe_raise("restore")
        self.rng.setstate(snapshot)


@pytest.fixture
def libraries() -> Iterator[list[Library]]:
    """Three registered plugin sources, put back out of the registry afterwards."""
    with registry_preserved():
        made = [Library(f"lib{index}", 100 + index) for index in range(3)]
        for library in made:
            register_source(library)
        yield made


def states(libraries: list[Library]) -> list[object]:
    return [library.rng.getstate() for library in libraries]


def lock_is_free() -> bool:
    """Whether another thread can take the scope lock now (it is not left held)."""
    result: list[bool] = []

    def probe() -> None:
        taken = scope_module._lock.acquire(blocking=False)
        if taken:
            scope_module._lock.release()
        result.append(taken)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(timeout=HANG_TIMEOUT)  # guards against a hang only
    return result == [True]


def in_scope(scope: deterministic, body: Callable[[], object]) -> None:
    with scope:
        body()


def draw_everything(libraries: list[Library]) -> None:
    random.random()
    torch.rand(2)
    for library in libraries:
        library.rng.random()


def others(libraries: list[Library], failing: int) -> list[object]:
    return [state for index, state in enumerate(states(libraries)) if index != failing]


@pytest.mark.parametrize("kind", KINDS)
def test_an_interrupted_restore_on_exit_restores_every_other_source(
    libraries: list[Library], kind: type[BaseException]
) -> None:
    scramble(random.Random(1))
    before, plugins_before = full_state(), states(libraries)
    libraries[1].raise_at["restore"] = kind
    with pytest.raises(kind, match=r"lib1\.restore") as caught:
        in_scope(deterministic(7), lambda: draw_everything(libraries))
    assert full_state() == before  # random, NumPy, torch, every flag and variable
    assert others(libraries, 1) == [plugins_before[0], plugins_before[2]]
    assert open_activations() == ()
    assert lock_is_free()
    notes = getattr(caught.value, "__notes__", None) or [str(caught.value)]  # 3.10: in args
    assert any("while the scope restored 'lib1'" in note for note in notes)


def test_an_interrupted_restore_after_the_block_raised_keeps_the_block_error_as_context(
    libraries: list[Library],
) -> None:
    before = full_state()
    libraries[0].raise_at["restore"] = KeyboardInterrupt
    def body() -> None:
        torch.rand(1)
        raise ValueError("the block's own error")

    with pytest.raises(KeyboardInterrupt) as caught:
        in_scope(deterministic(3), body)
    assert full_state() == before
    context = caught.value.__context__
    assert isinstance(context, ValueError)
    assert str(context) == "the block's own error"


def test_the_block_error_keeps_its_note_when_a_restore_is_interrupted(
    libraries: list[Library],
) -> None:
    before = full_state()
    libraries[2].raise_at["restore"] = SystemExit
    with pytest.raises(SystemExit) as caught, deterministic(0):
        torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))  # no such algorithm
    assert full_state() == before
    context = caught.value.__context__
    assert isinstance(context, RuntimeError)
    notes = getattr(context, "__notes__", None) or [str(context)]
    assert any(ALGORITHMS_NOTE in note for note in notes)


def test_an_ordinary_restore_failure_is_still_reported_beside_the_interrupt(
    libraries: list[Library],
) -> None:
    class FailsOnRestore(torch.Generator):
        armed = False

        def set_state(self, new_state: torch.Tensor) -> torch.Generator:
            if FailsOnRestore.armed:
                FailsOnRestore.armed = False
                raise OSError("restore failed")
            return super().set_state(new_state)

    generator = FailsOnRestore()
    before = full_state()
    libraries[0].raise_at["restore"] = KeyboardInterrupt
    def body() -> None:
        random.random()
        FailsOnRestore.armed = True

    with pytest.warns(RuntimeWarning, match="could not restore OSError: restore failed"), \
            pytest.raises(KeyboardInterrupt):
        in_scope(deterministic(0, generators=[generator]), body)
    assert full_state() == before
    assert open_activations() == ()


@pytest.mark.parametrize("kind", KINDS)
def test_a_second_interrupt_in_the_entry_rollback_still_rolls_everything_back(
    libraries: list[Library], kind: type[BaseException]
) -> None:
    scramble(random.Random(2))
    before, plugins_before = full_state(), states(libraries)
    libraries[2].raise_at["seed"] = KeyboardInterrupt  # the first Ctrl-C, in the last seed
    libraries[1].raise_at["restore"] = kind  # the second, in the rollback
    with pytest.raises(kind, match=r"lib1\.restore") as caught:
        in_scope(deterministic(5), lambda: pytest.fail("the block must not run"))
    assert isinstance(caught.value.__context__, KeyboardInterrupt)  # the first one
    assert full_state() == before
    assert others(libraries, 1) == [plugins_before[0], plugins_before[2]]
    assert open_activations() == ()
    assert lock_is_free()


def test_an_interrupted_restore_of_a_decorated_call_restores_the_rest(
    libraries: list[Library],
) -> None:
    @reproducible(seed=4)
    def train() -> float:
        libraries[0].raise_at["restore"] = KeyboardInterrupt
        return float(torch.rand(1))

    before = full_state()
    with pytest.raises(KeyboardInterrupt):
        train()
    assert full_state() == before
    assert open_activations() == ()


def test_an_interrupted_restore_when_a_generator_finishes_restores_the_rest(
    libraries: list[Library],
) -> None:
    @reproducible(seed=4)
    def steps() -> Iterator[float]:
        yield float(torch.rand(1))
        libraries[1].raise_at["restore"] = KeyboardInterrupt  # the final restore's

    before = full_state()
    iterator = steps()
    next(iterator)
    assert full_state() == before
    with pytest.raises(KeyboardInterrupt):
        next(iterator)  # finishes: the final restore is interrupted
    assert full_state() == before
    assert open_activations() == ()
    assert lock_is_free()


def test_an_interrupted_suspension_gives_the_caller_its_state_back(
    libraries: list[Library],
) -> None:
    @reproducible(seed=4)
    def steps() -> Iterator[float]:
        libraries[0].raise_at["restore"] = KeyboardInterrupt  # the suspension's swap
        yield float(torch.rand(1))

    before = full_state()
    with pytest.raises(KeyboardInterrupt):
        next(steps())
    assert full_state() == before
    assert open_activations() == ()
    assert lock_is_free()


def test_an_interrupted_restore_of_an_async_block_restores_the_rest(
    libraries: list[Library],
) -> None:
    before = full_state()

    async def main() -> None:
        async with deterministic(9):
            libraries[2].raise_at["restore"] = CustomInterrupt
            torch.rand(1)

    with pytest.raises(CustomInterrupt):
        asyncio.run(main())
    assert full_state() == before
    assert open_activations() == ()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    failing=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(KINDS)), min_size=1, max_size=3,
        unique_by=lambda pair: pair[0],
    ),
    phase=st.sampled_from(["exit", "exit after an error", "entry rollback"]),
    seed=st.integers(0, 2**64 - 1),
    shuffle=st.integers(0, 2**32 - 1),
)
def test_whichever_sources_are_interrupted_every_other_comes_back(
    failing: list[tuple[int, type[BaseException]]], phase: str, seed: int, shuffle: int
) -> None:
    with registry_preserved():
        made = [Library(f"lib{index}", 200 + index) for index in range(3)]
        for library in made:
            register_source(library)
        scramble(random.Random(shuffle))
        before, plugins_before = full_state(), states(made)
        for index, kind in failing:
            made[index].raise_at["restore"] = kind
        # Restores run last plugin first: the first interrupt raised is the highest index.
        first_index, first_kind = max(failing, key=lambda pair: pair[0])
        if phase == "entry rollback":
            made[2].raise_at["seed"] = KeyboardInterrupt
        def body() -> None:
            draw_everything(made)
            if phase == "exit after an error":
                raise ValueError("inside")

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no restore failure may turn into a warning
            with pytest.raises(first_kind, match=rf"^lib{first_index}\.restore") as caught:
                in_scope(deterministic(seed), body)
        assert type(caught.value) is first_kind
        assert full_state() == before
        untouched = {index for index, _ in failing}
        assert [state for index, state in enumerate(states(made)) if index not in untouched] == [
            plugins_before[index] for index in range(3) if index not in untouched
        ]
        assert open_activations() == ()
        assert lock_is_free()
