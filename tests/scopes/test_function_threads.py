"""Decorated functions and generators used from many threads at once.

Scopes are serialised across threads (the core's design: a thread that opens
a scope while another thread has one open waits; nothing raises). A decorated
generator holds the lock only while its own code runs, so generators stepped
from several workers interleave step by step. Every worker must get exactly
the single-threaded results, and the process must end in its initial state:
a restore lost or applied out of order would show in either.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from repro_ctx import deterministic, reproducible
from repro_ctx.core.scope import open_activations
from tests.global_state import full_state
from tests.waits import HANG_TIMEOUT

Draws = tuple[float, float, float]


def _draws() -> Draws:
    value = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    time.sleep(0)  # invite a thread switch inside the scope
    return value


@reproducible(seed=lambda seed: seed)
def plain(seed: int) -> list[Draws]:
    torch.backends.cudnn.benchmark = seed % 2 == 0
    return [_draws() for _ in range(5)]


@reproducible(seed=lambda seed, length: seed)
def stream(seed: int, length: int) -> Generator[Draws, None, None]:
    torch.backends.cudnn.benchmark = seed % 2 == 1
    for _ in range(length):
        yield _draws()
        time.sleep(0)  # invite a thread switch between steps, outside the scope


def _work(seed: int) -> tuple[list[Draws], list[Draws], list[Draws]]:
    first, second = stream(seed, 4), stream(seed + 1, 4)
    got_first, got_second = [], []
    for _ in range(4):
        got_first.append(next(first))
        got_second.append(next(second))
    return plain(seed), got_first, got_second


def test_workers_get_their_single_threaded_results_and_nothing_leaks() -> None:
    seeds = range(8)
    expected = {seed: _work(seed) for seed in seeds}
    assert expected[0][1] != expected[0][2]
    before = full_state()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _round in range(3):
            assert list(pool.map(_work, seeds)) == [expected[seed] for seed in seeds]
    assert full_state() == before
    assert open_activations() == ()


def test_one_generator_stepped_by_turns_from_different_threads() -> None:
    alone = list(stream(3, 6))
    before = full_state()
    gen = stream(3, 6)
    with ThreadPoolExecutor(max_workers=3) as pool:
        got = [pool.submit(next, gen).result() for _ in range(6)]
    assert got == alone
    assert full_state() == before


def test_a_with_block_in_a_generator_resumed_in_another_thread() -> None:
    @reproducible(seed=0)
    def nested() -> Generator[Draws, None, None]:
        with deterministic(8):
            yield _draws()
            yield _draws()

    alone = list(nested())
    before = full_state()
    gen = nested()
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = [pool.submit(next, gen).result() for _ in range(2)]
        assert pool.submit(list, gen).result() == []
    assert got == alone
    assert full_state() == before
    assert open_activations() == ()


def test_a_suspended_generator_does_not_hold_the_lock() -> None:
    gen = stream(1, 3)
    next(gen)  # suspended: the lock must be free for other threads
    done = threading.Event()

    def other() -> None:
        with deterministic(2):
            done.set()

    thread = threading.Thread(target=other)
    thread.start()
    assert done.wait(timeout=HANG_TIMEOUT)
    thread.join()
    gen.close()
