"""Fifty thousand scope cycles leave no memory behind.

Tracing every allocation of every cycle costs about five times the cycles
themselves, so tracemalloc traces windows spread over the whole run: an
allocation a cycle leaks shows up as growth inside every window (2,000 cycles
leaking one small object are 30 KiB or more). The resident set size over the
whole run (32 bytes a cycle or more) catches what tracemalloc cannot see
(memory outside Python's allocator, such as torch tensors' storage).

After the first cycles have filled the one-time caches, the resident set does
not move at all (0 bytes over 10,000 to 40,000 cycles, measured), so the
slack below is the whole tolerance: with 1.5 MiB over 50,000 cycles it
catches the same 32 bytes a cycle that 8 MiB over 250,000 cycles did, at a
third of the cost (the traced windows included).
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from repro_ctx import deterministic, register, unregister

CYCLES = 50_000  # ~100 us a cycle on a quiet core, five times that traced: about ten seconds
WINDOWS = 5
WINDOW_CYCLES = 2_000
WINDOW_SLACK = 16 * 1024  # bytes: allocator noise; one leaked object a cycle is >= 32 KiB
RSS_SLACK = 1536 * 1024  # bytes: 32 bytes a cycle over CYCLES


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - not Linux


def _cycles(scope: deterministic, count: int) -> None:
    for _ in range(count):
        with scope:
            pass


@pytest.mark.slow
def test_fifty_thousand_enter_exit_cycles_do_not_grow_memory() -> None:
    generator = np.random.default_rng(0)
    register(generator)
    scope = deterministic(0, generators=[torch.Generator()])
    try:
        _cycles(scope, 5_000)  # first entries fill one-time caches
        gc.collect()
        rss_before = _rss()
        growth = []
        untraced = (CYCLES - WINDOWS * WINDOW_CYCLES) // WINDOWS
        for _ in range(WINDOWS):
            _cycles(scope, untraced)
            gc.collect()
            tracemalloc.start()
            try:
                start = tracemalloc.get_traced_memory()[0]
                _cycles(scope, WINDOW_CYCLES)
                gc.collect()
                growth.append(tracemalloc.get_traced_memory()[0] - start)
            finally:
                tracemalloc.stop()
        rss_growth = _rss() - rss_before
    finally:
        unregister(generator)
    assert max(growth) < WINDOW_SLACK, f"traced memory grew within windows: {growth}"
    assert rss_growth < RSS_SLACK, f"resident memory grew by {rss_growth} bytes"
