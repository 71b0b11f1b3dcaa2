"""Scopes are serialised across threads and re-entrant within one."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from repro_ctx import deterministic
from tests.state import full_state


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
