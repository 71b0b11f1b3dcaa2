"""Errors that say what happened and name the fix (#21): closing a scope, seed callables, seeds.

* A scope closed in a thread that did not open it, or closed in an asyncio
  task other than its own, or never entered: each says which.
* A seed callable whose signature does not fit the call gets a note: it
  receives the call's exact arguments.
* ``@reproducible(seed="seed")`` names every seed it accepts, the callable
  included.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from typing import Any

import pytest

from repro_ctx import deterministic, reproducible
from repro_ctx.core import error_notes
from repro_ctx.core.scope import open_activations
from tests.global_state import full_state
from tests.waits import HANG_TIMEOUT


def notes(error: BaseException) -> list[str]:
    """The error's notes; on Python 3.10, which has none, the note repro_ctx appended
    to the message (``core.error_notes.add_note``), from its first line on."""
    if sys.version_info >= (3, 11):
        return list(getattr(error, "__notes__", []))
    lines = str(error.args[0]).splitlines() if error.args else []
    starts = [index for index, line in enumerate(lines) if line.startswith("repro_ctx:")]
    return ["\n".join(lines[starts[0]:])] if starts else []


# closing a scope ---------------------------------------------------------------------------


def test_exit_without_enter_says_it_was_never_entered() -> None:
    scope = deterministic(0)
    with pytest.raises(RuntimeError, match="not open here") as info:
        scope.__exit__(None, None, None)
    message = str(info.value)
    assert "without a matching __enter__ (or start())" in message
    assert "never entered, or it was closed already" in message
    assert "thread" not in message
    with deterministic(1), pytest.raises(RuntimeError, match="not open here"):
        scope.__exit__(None, None, None)  # another object's scope is open: not this one's


def test_a_scope_closed_twice_says_it_was_closed_already() -> None:
    scope = deterministic(0)
    scope.__enter__()
    scope.__exit__(None, None, None)
    with pytest.raises(RuntimeError, match="closed already"):
        scope.__exit__(None, None, None)


def test_closing_in_another_thread_names_the_thread_that_opened_it() -> None:
    scope = deterministic(3)
    before = full_state()
    opened, close_now, done = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def owner() -> None:
        with scope:
            random.random()
            opened.set()
            close_now.wait(HANG_TIMEOUT)  # guards against a hang only
        done.set()

    thread = threading.Thread(target=owner, name="trainer-thread")
    thread.start()
    assert opened.wait(HANG_TIMEOUT)
    try:
        scope.__exit__(None, None, None)
    except RuntimeError as exc:
        errors.append(exc)
    finally:
        close_now.set()
        thread.join(HANG_TIMEOUT)
    assert done.is_set()
    assert len(errors) == 1
    message = str(errors[0])
    assert "opened in thread 'trainer-thread' and must be closed there" in message
    assert f"not in {threading.current_thread().name!r}" in message
    assert full_state() == before  # the owner closed it: nothing was left changed
    assert open_activations() == ()


def test_closing_in_another_task_says_to_close_it_in_its_own_task() -> None:
    scope = deterministic(5)
    before = full_state()

    async def main() -> str:
        opened = asyncio.Event()
        finish = asyncio.Event()

        async def owner() -> None:
            async with scope:
                opened.set()
                await finish.wait()

        task = asyncio.create_task(owner())
        await opened.wait()
        try:
            await scope.__aexit__(None, None, None)
        except RuntimeError as exc:
            return str(exc)
        finally:
            finish.set()
            await task
        return "no error"  # pragma: no cover

    message = asyncio.run(main())
    assert "opened in another asyncio task (or contextvars context) of this thread" in message
    assert "must be closed in the one that opened it" in message
    assert "@reproducible" in message
    assert full_state() == before


# a seed callable that does not fit the call ------------------------------------------------


def test_a_seed_callable_that_does_not_fit_the_call_gets_a_note() -> None:
    @reproducible(seed=lambda seed: seed)
    def train(lr: float) -> float:
        return lr  # pragma: no cover

    before = full_state()
    with pytest.raises(TypeError, match="unexpected keyword argument 'lr'") as info:
        train(lr=0.2)
    assert full_state() == before
    assert open_activations() == ()
    (note,) = [note for note in notes(info.value) if note.startswith("repro_ctx:")]
    assert "<lambda>(seed) receives the decorated call's exact arguments" in note
    assert "here (lr=...)" in note
    assert "seed=lambda *args, **kwargs: ..." in note


def test_the_note_names_self_for_a_method() -> None:
    class Model:
        @reproducible(seed=lambda epoch: epoch)
        def step(self, epoch: int) -> int:
            return epoch  # pragma: no cover

    with pytest.raises(TypeError) as info:
        Model().step(3)
    (note,) = notes(info.value)
    assert "(self or cls first for a method), here (Model, int)" in note


def test_a_type_error_inside_a_fitting_seed_callable_gets_no_note() -> None:
    def seed_of(lr: float) -> int:
        return int("x" + lr)  # type: ignore[operator]

    @reproducible(seed=seed_of)
    def train(lr: float) -> float:
        return lr  # pragma: no cover

    with pytest.raises(TypeError, match="can only concatenate str") as info:
        train(0.1)
    assert notes(info.value) == []


def test_a_seed_callable_without_a_signature_still_gets_the_note() -> None:
    @reproducible(seed=int)  # a builtin: int(x=0, base=10), no signature to bind on 3.11
    def pick(a: int, b: int, c: int) -> int:
        return a  # pragma: no cover

    with pytest.raises(TypeError) as info:
        pick(1, 2, 3)
    (note,) = notes(info.value)
    assert note.startswith("repro_ctx: the seed callable int")
    assert "here (int, int, int)" in note


def test_without_notes_the_seed_note_goes_into_the_message(monkeypatch: Any) -> None:
    """Python 3.10 has no add_note: the message carries it."""
    captured: list[str] = []
    real = error_notes.append_to_message

    def add_note(error: BaseException, note: str) -> None:
        captured.append(note)
        real(error, note)

    monkeypatch.setattr("repro_ctx.scopes.decorator.add_note", add_note)

    @reproducible(seed=lambda: 0)
    def train(lr: float) -> float:
        return lr  # pragma: no cover

    with pytest.raises(TypeError) as info:
        train(0.5)
    assert captured
    assert str(info.value).endswith(captured[0])
    assert "receives the decorated call's exact arguments" in str(info.value)


# a seed that is neither an int, None nor a callable ----------------------------------------


@pytest.mark.parametrize("seed", ["seed", 1.5, b"7"])
def test_a_bad_reproducible_seed_names_the_callable_it_also_accepts(seed: object) -> None:
    expected = (r"@reproducible's seed must be an int in \[0, 2\*\*64\), None, or a callable "
                r"that computes it from each call's arguments")
    with pytest.raises(TypeError, match=expected):
        reproducible(seed=seed)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=expected):
        reproducible(seed)  # type: ignore[call-overload]


def test_a_parameter_name_as_seed_is_shown_how_to_read_that_parameter() -> None:
    with pytest.raises(TypeError, match="got str 'seed'; to take the seed from the call's "
                       "argument 'seed', pass a callable") as info:
        reproducible(seed="seed")  # type: ignore[call-overload]
    assert str(info.value).endswith("seed=lambda <those parameters>: seed")
    with pytest.raises(TypeError) as spaced:
        reproducible(seed="not a name")  # type: ignore[call-overload]
    assert str(spaced.value).endswith("got str 'not a name'")


def test_deterministic_still_says_it_takes_no_callable() -> None:
    with pytest.raises(TypeError, match=r"or None, got str 'seed'$"):
        deterministic("seed")  # type: ignore[arg-type]
