"""Scopes are serialised across threads and re-entrant within one."""

from __future__ import annotations

import random
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from repro_ctx import deterministic
from repro_ctx.core import scope as _scope
from repro_ctx.core.scope import ScopeWaitWarning
from tests.global_state import full_state
from tests.waits import HANG_TIMEOUT


def _work(seed: int) -> list[float]:
    with deterministic(seed):
        values = []
        for _ in range(20):
            values.append(random.random())
            values.append(float(np.random.rand()))
            values.append(float(torch.rand(1)))
            time.sleep(0)  # invite a thread switch mid-scope
        return values


def test_concurrent_scopes_in_a_thread_pool_never_mix_streams() -> None:
    expected = {seed: _work(seed) for seed in range(6)}
    before = full_state()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _round in range(5):
            results = list(pool.map(_work, range(6)))
            assert results == [expected[seed] for seed in range(6)]
    assert full_state() == before


def test_a_second_thread_waits_until_the_first_thread_closes_its_scope() -> None:
    events: list[str] = []
    inside = threading.Event()

    def other() -> None:
        with deterministic(1):
            events.append("other inside")

    with deterministic(0):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=0.2)
        events.append("main still inside")
        inside.set()
    thread.join()
    assert events == ["main still inside", "other inside"]


def test_a_long_wait_warns_and_names_both_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scope, "WAIT_WARNING_SECONDS", 0.1)
    caught: list[warnings.WarningMessage] = []
    recording: list[list[warnings.WarningMessage]] = []
    entered = threading.Event()

    def waiter() -> None:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            recording.append(records)
            with deterministic(1):
                entered.set()
        caught.extend(records)

    def warned() -> bool:
        return any(record.category is ScopeWaitWarning for records in recording[:1]
                   for record in records)

    with deterministic(0):
        thread = threading.Thread(target=waiter, name="waiting-worker")
        thread.start()
        deadline = time.monotonic() + HANG_TIMEOUT
        while not warned():  # the worker waits past the (patched) threshold, however slow
            assert time.monotonic() < deadline, "the waiting thread never warned"
            time.sleep(0.01)
        assert not entered.is_set()
    thread.join()
    assert entered.is_set()
    messages = [str(record.message) for record in caught if record.category is ScopeWaitWarning]
    assert len(messages) == 1
    assert "'waiting-worker'" in messages[0]
    assert f"'{threading.current_thread().name}'" in messages[0]
    assert "deadlock" in messages[0]
