from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
import torch
import torch._inductor.config  # see below

from repro_ctx.sources.flags import build_flags_source
from repro_ctx.sources.tf32 import TF32Source
from tests.global_state import ENVIRONMENT

# torch.use_deterministic_algorithms imports inductor's config, which turns the
# scoped flag torch._inductor.config.deterministic from "not loaded" (None) into a
# value. Loading it up front keeps that import from showing up as a state change
# in whichever test first calls it. (A fresh process without it is tested in
# tests/sources/test_inductor_flag.py.)
_ENV = ENVIRONMENT
_FLAGS = build_flags_source(torch)
_TF32 = TF32Source(torch)


@pytest.fixture(autouse=True)
def _isolate_globals() -> Iterator[None]:
    """Tests flip global flags on purpose; put them back so tests stay independent.

    Assertions never rely on this: each test compares public-API state itself.
    """
    env = {name: os.environ.get(name) for name in _ENV}
    flags = _FLAGS.capture()
    tf32 = _TF32.capture()
    yield
    _FLAGS.restore(flags)
    _TF32.restore(tf32)
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write this process's coverage data now, not only when the process exits.

    pytest-xdist's controller gives a worker 10 seconds (``EXIT_TIMEOUT``) to
    exit once it reports its session finished, then kills it; a worker that
    exits slowly on a loaded machine (atexit handlers, threads still running)
    would lose everything it measured, and the total would fall by a worker's
    share. This hook runs inside xdist's ``pytest_sessionfinish`` wrapper,
    before the worker reports. coverage's own exit handler saves again later,
    with anything measured after this.
    """
    coverage = sys.modules.get("coverage")
    running = coverage.Coverage.current() if coverage is not None else None
    if running is not None:
        running.save()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: under ``-n 2`` one worker runs them while the other runs the rest."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _untraced_when_slow(request: pytest.FixtureRequest) -> Iterator[None]:
    """Slow tests (50,000 scope cycles) run without coverage's tracer.

    It would slow them fivefold and measure nothing the fast tests don't.
    """
    coverage = sys.modules.get("coverage")
    running = coverage.Coverage.current() if coverage is not None else None
    if running is None or request.node.get_closest_marker("slow") is None:
        yield
        return
    running.stop()
    try:
        yield
    finally:
        running.start()

