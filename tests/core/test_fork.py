"""fork() while scopes are open: real child processes, each with a deadline.

A child forked while another thread held a lock inherits it held by a thread
that does not exist there; it must still open scopes. A child forked by the
thread that holds the scopes goes on inside them and closes them itself.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from repro_ctx import deterministic, register, unregister
from repro_ctx.core.fork import renew_after_fork
from repro_ctx.core.scope import open_activations
from repro_ctx.sources import default_set as _sources
from repro_ctx.sources import plugin_registry as _plugin_registry
from repro_ctx.sources import registry as _registry
from tests.global_state import full_state
from tests.waits import HANG_TIMEOUT

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform"),
    # Python 3.12+ warns that forking a process with threads may deadlock: that is the point.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]

DEADLINE = HANG_TIMEOUT  # a child that hangs is killed and the test fails


def _wait_for_child(pid: int, read_end: int) -> str:
    """What the child wrote before exiting, or a failure if it does not finish in time."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + DEADLINE
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"the forked child did not finish within {DEADLINE:.0f} s (deadlock?)")
            ready, _, _ = select.select([read_end], [], [], left)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def _report_and_exit(write_end: int, check: Callable[[], None]) -> None:
    """In the child: run ``check``, write "ok" or the traceback, and leave without cleanup."""
    try:
        check()
        result = "ok"
    except BaseException:
        result = traceback.format_exc()
    try:
        os.write(write_end, result.encode())
    finally:
        os._exit(0)


def in_child(check: Callable[[], None]) -> str:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read_end)
        _report_and_exit(write_end, check)
    os.close(write_end)
    return _wait_for_child(pid, read_end)


@contextmanager
def held_by_another_thread(
    enter: Callable[[], object], leave: Callable[[], object]
) -> Iterator[None]:
    """A thread that has run ``enter`` and runs ``leave`` only once the block is over."""
    inside, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def hold() -> None:
        try:
            enter()
            inside.set()
            release.wait(HANG_TIMEOUT)
            leave()
        except BaseException as exc:  # pragma: no cover - reported below
            failure.append(exc)
            inside.set()

    thread = threading.Thread(target=hold, name="holder")
    thread.start()
    try:
        assert inside.wait(HANG_TIMEOUT)
        yield
    finally:
        release.set()
        thread.join(HANG_TIMEOUT)
    assert not failure, failure


def _seeded_draws_twice() -> None:
    assert open_activations() == ()
    with deterministic(1):
        first = torch.rand(3)
    with deterministic(1):
        second = torch.rand(3)
    assert torch.equal(first, second)


def test_a_child_forked_while_another_thread_holds_a_scope_opens_scopes() -> None:
    scope = deterministic(5, algorithms=True)

    def child() -> None:
        # The holder's scope never closes in the child; the state stays as at the fork.
        assert torch.are_deterministic_algorithms_enabled()
        _seeded_draws_twice()
        assert torch.are_deterministic_algorithms_enabled()

    before = full_state()
    with held_by_another_thread(scope.__enter__, lambda: scope.__exit__(None, None, None)):
        assert in_child(child) == "ok"
    assert full_state() == before  # the parent's thread still closed its scope


def test_a_child_forked_while_another_thread_holds_the_registry_and_source_locks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another thread inside register(), or building the default sources, at the fork."""
    monkeypatch.setattr(_sources, "_default", None)  # so the child builds its own

    def enter() -> None:
        _registry._lock.acquire()
        _plugin_registry.lock.acquire()

    def leave() -> None:
        _plugin_registry.lock.release()
        _registry._lock.release()

    def child() -> None:
        generator = torch.Generator()
        register(generator)
        with deterministic(2):
            first = torch.rand(2, generator=generator)
        with deterministic(2):
            second = torch.rand(2, generator=generator)
        unregister(generator)
        assert torch.equal(first, second)

    with held_by_another_thread(enter, leave):
        assert in_child(child) == "ok"


def test_forked_inside_its_own_scope_the_child_closes_it_and_restores() -> None:
    read_end, write_end = os.pipe()
    before = full_state()
    pid = -1
    failure: str | None = None
    try:
        with deterministic(3, algorithms=True):
            torch.rand(2)
            pid = os.fork()
    except BaseException:
        if pid != 0:
            raise
        failure = traceback.format_exc()  # pragma: no cover - the child could not close it
    if pid == 0:  # pragma: no cover - the child's coverage is not collected

        def check() -> None:
            assert failure is None, failure
            assert full_state() == before
            _seeded_draws_twice()

        os.close(read_end)
        _report_and_exit(write_end, check)
    os.close(write_end)
    assert _wait_for_child(pid, read_end) == "ok"
    assert full_state() == before


def test_the_child_hook_frees_a_lock_another_thread_holds_and_drops_its_scopes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The at-fork hook itself, run here (a child's coverage is not collected)."""
    registered: list[Callable[[], None]] = []

    def register_at_fork(*, after_in_child: Callable[[], None]) -> None:
        registered.append(after_in_child)

    monkeypatch.setattr(os, "register_at_fork", register_at_fork)
    namespace: dict[str, Any] = {"lock": threading.RLock()}
    stack = ["an activation"]
    renew_after_fork(namespace, "lock", stack.clear)
    (renew,) = registered
    original = namespace["lock"]

    renew()  # free: kept
    assert namespace["lock"] is original
    assert stack == ["an activation"]

    with original:
        renew()  # held by this thread, which goes on and releases it: kept
    assert namespace["lock"] is original

    with held_by_another_thread(original.acquire, original.release):
        renew()
        assert namespace["lock"] is not original
        assert stack == []
        assert namespace["lock"].acquire(blocking=False)


def test_a_lock_with_nothing_else_to_drop_is_renewed_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered: list[Callable[[], None]] = []
    monkeypatch.setattr(os, "register_at_fork", lambda *, after_in_child: registered.append(
        after_in_child))
    namespace: dict[str, Any] = {"lock": threading.RLock()}
    renew_after_fork(namespace, "lock")
    original = namespace["lock"]
    with held_by_another_thread(original.acquire, original.release):
        registered[0]()
        assert namespace["lock"] is not original


def test_without_fork_nothing_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "register_at_fork")
    renew_after_fork({"lock": threading.RLock()}, "lock")  # no error, nothing to do
