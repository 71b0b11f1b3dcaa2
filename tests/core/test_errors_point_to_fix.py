"""Errors that point to the fix: @deterministic on a function, torch's nondeterministic-op error.

torch raises "... does not have a deterministic implementation" for ``put_``
(accumulate=False) on the CPU while deterministic algorithms are on: a real
error to add the note to, on any machine.
"""

from __future__ import annotations

import asyncio
import random
import sys
import unittest
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch

from repro_ctx import deterministic, reproducible
from repro_ctx.core.error_notes import ALGORITHMS_NOTE, CUBLAS_NOTE, add_note, append_to_message
from tests.global_state import full_state


def put_without_accumulate() -> torch.Tensor:
    return torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))


def notes(error: BaseException) -> list[str]:
    """The notes a scope added: ``__notes__`` from Python 3.11; on 3.10, which has no
    notes, those ``add_note`` put at the end of the message instead."""
    if sys.version_info >= (3, 11):
        return list(getattr(error, "__notes__", []))
    assert not hasattr(error, "__notes__")
    message = error.args[0] if error.args and isinstance(error.args[0], str) else ""
    return [note for note in (ALGORITHMS_NOTE, CUBLAS_NOTE) if f"\n{note}" in message]


# @deterministic(...) on a function --------------------------------------------------------------


def test_deterministic_decorates_a_function_each_call_in_its_own_scope() -> None:
    scope = deterministic(seed=7)

    @scope
    def draw(offset: float) -> float:
        """Drawn in a scope."""
        return random.random() + offset

    before = full_state()
    assert draw(0.0) == draw(0.0) == random.Random(7).random()
    assert draw(1.0) == random.Random(7).random() + 1.0
    assert full_state() == before
    assert draw.__name__ == "draw"
    assert draw.__doc__ == "Drawn in a scope."
    # the object still works as a context manager
    with scope:
        assert random.random() == random.Random(7).random()


def test_deterministic_decorates_generators_coroutines_methods_and_test_cases() -> None:
    @deterministic(seed=3)
    def stream() -> Iterator[float]:
        while True:
            yield random.random()

    first, second = stream(), stream()
    expected = random.Random(3)
    assert [next(first), next(second), next(first)] == [
        expected.random(), random.Random(3).random(), expected.random()
    ]

    @deterministic(seed=4)
    async def sample() -> float:
        await asyncio.sleep(0)
        return random.random()

    assert asyncio.run(sample()) == random.Random(4).random()

    class Model:
        @deterministic(seed=5)
        @classmethod
        def build(cls) -> float:
            return random.random()

    assert Model.build() == random.Random(5).random()

    @deterministic(seed=6, algorithms=None)
    class Case(unittest.TestCase):
        def test_draw(self) -> None:
            assert random.random() == random.Random(6).random()

    result = unittest.TestResult()
    Case("test_draw").run(result)
    assert result.wasSuccessful(), result.failures


def test_every_option_reaches_the_decorated_calls() -> None:
    g = torch.Generator()

    @deterministic(seed=2, algorithms="warn", benchmark=None, tf32=True, generators=[g])
    def flags() -> tuple[bool, bool, int]:
        return (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(), g.initial_seed())

    with deterministic(seed=2, generators=[g]):
        expected_seed = g.initial_seed()
    assert flags() == (True, True, expected_seed)


def test_deterministic_on_something_not_callable_names_reproducible() -> None:
    with pytest.raises(TypeError, match=r"@deterministic\(\.\.\.\) decorates a function.*"
                       r"as @reproducible does\); got int 3\. To scope a block, use "
                       r"`with deterministic\(\.\.\.\):`"):
        deterministic()(3)  # type: ignore[call-overload]


# torch's nondeterministic-op error, with a note that names the fix -----------------------------


def test_the_nondeterministic_op_error_says_the_scope_turned_algorithms_on() -> None:
    no_implementation = "does not have a deterministic implementation"
    with pytest.raises(RuntimeError, match=no_implementation) as info, deterministic():
        put_without_accumulate()
    assert notes(info.value) == [ALGORITHMS_NOTE]
    assert 'algorithms="warn"' in ALGORITHMS_NOTE
    assert "this scope turned torch's deterministic algorithms on" in ALGORITHMS_NOTE
    # and the fix it names works
    with deterministic(algorithms="warn"), pytest.warns(UserWarning, match="put_"):
        put_without_accumulate()


def test_the_note_reaches_the_decorator_and_the_function_scopes() -> None:
    @reproducible
    def call() -> None:
        put_without_accumulate()

    @reproducible(seed=1)
    def steps() -> Iterator[None]:
        yield
        put_without_accumulate()

    @deterministic()
    async def task() -> None:
        await asyncio.sleep(0)
        put_without_accumulate()

    for run in (call, lambda: list(steps()), lambda: asyncio.run(task())):
        with pytest.raises(RuntimeError) as info:
            run()
        assert notes(info.value) == [ALGORITHMS_NOTE]


def test_nested_scopes_add_the_note_once() -> None:
    with pytest.raises(RuntimeError) as info, deterministic(), deterministic(seed=1):
        put_without_accumulate()
    assert notes(info.value) == [ALGORITHMS_NOTE]


def test_no_note_where_the_scope_did_not_turn_algorithms_on() -> None:
    def turn_on_and_put() -> None:
        torch.use_deterministic_algorithms(True)  # the user's own call, not the scope's
        put_without_accumulate()

    for algorithms in (None, False):
        with pytest.raises(RuntimeError, match="put_") as info, deterministic(
            algorithms=algorithms
        ):
            turn_on_and_put()
        assert notes(info.value) == []
    with pytest.raises(RuntimeError, match="other") as info, deterministic():
        raise RuntimeError("other")
    assert notes(info.value) == []
    no_implementation = "does not have a deterministic implementation"
    with pytest.raises(ValueError, match=no_implementation) as value_info, deterministic():
        raise ValueError(no_implementation)
    assert notes(value_info.value) == []


def test_a_cublas_workspace_error_points_before_the_program_starts() -> None:
    message = ("Deterministic behavior was enabled with either `torch.use_deterministic_"
               "algorithms(True)` ..., but this operation is not deterministic because it uses "
               "CuBLAS and you have set CUBLAS_WORKSPACE_CONFIG=:4096:8 or :16:8.")
    with pytest.raises(RuntimeError) as info, deterministic():
        raise RuntimeError(message)
    assert notes(info.value) == [CUBLAS_NOTE]
    assert "`repro-ctx run -- python ...`" in CUBLAS_NOTE


def test_an_error_that_cannot_be_read_still_leaves_the_scope_restored() -> None:
    class Unreadable(RuntimeError):
        def __str__(self) -> str:
            raise ValueError("no message")

    def draw_and_fail() -> None:
        random.random()
        raise Unreadable

    before = full_state()
    with pytest.raises(Unreadable), deterministic(seed=3):
        draw_and_fail()
    assert full_state() == before


def test_without_notes_the_note_goes_into_the_message() -> None:
    """Python 3.10 has no add_note: the message carries the note, once."""
    error = RuntimeError("torch says no")
    append_to_message(error, "the note")
    append_to_message(error, "the note")
    assert error.args == ("torch says no\nthe note",)
    bare = RuntimeError()
    append_to_message(bare, "the note")
    assert bare.args == ("the note",)
    no_notes = SimpleNamespace(args=("torch says no",))  # what 3.10's exceptions lack
    add_note(no_notes, "the note")  # type: ignore[arg-type]
    assert no_notes.args == ("torch says no\nthe note",)
    if sys.version_info >= (3, 11):
        error = RuntimeError("x")
        add_note(error, "n")
        add_note(error, "n")
        assert notes(error) == ["n"]
