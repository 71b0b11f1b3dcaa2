"""``Source.swap``: what every suspension and resumption of a generator scope does.

A swap puts a snapshot back and returns the state it replaced. The flags and
TF32 sources remember their last write so that the reverse swap (a
generator's suspension right after its resumption) skips the comparison; these
tests drive every source through random sequences of swaps, captures, undos
and outside changes, and compare public-API views after every swap.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro_ctx import deterministic, register, unregister
from repro_ctx.core.source import Source
from repro_ctx.sources.default_set import default_sources
from tests.global_state import env_state, flag_state, rng_state, scramble

_registered = np.random.default_rng(7)

VIEWS: dict[str, Callable[[], object]] = {
    "environment": env_state,
    "torch flags": lambda: {k: v for k, v in flag_state().items() if k != "tf32"},
    "tf32": lambda: flag_state()["tf32"],
    "random": random.getstate,
    "numpy.random (global)": lambda: rng_state()["numpy"],
    "torch (cpu)": lambda: rng_state()["torch"],
    "registered generators": lambda: repr(_registered.bit_generator.state),
}

_NODES = (
    (torch.backends, ("none", "ieee", "tf32", "bf16")),
    (torch.backends.cuda.matmul, ("none", "ieee", "tf32")),
    (torch.backends.cudnn.conv, ("none", "ieee", "tf32")),
    (torch.backends.mkldnn.matmul, ("none", "ieee", "tf32", "bf16")),
) if hasattr(torch.backends, "fp32_precision") else ()


def change(rng: random.Random) -> None:
    """Move RNGs, flags, TF32 (through either API) and the environment."""
    scramble(rng)
    _registered.random(rng.randrange(1, 3))
    for node, values in _NODES:
        if rng.random() < 0.3:
            node.fp32_precision = rng.choice(values)


def _source(name: str) -> Source:
    (source,) = [s for s in default_sources() if s.name == name]
    return source


_ops = st.lists(
    st.one_of(
        st.just(("change",)),
        st.just(("capture",)),
        st.just(("undo",)),  # swap back what the last swap replaced
        st.tuples(st.just("swap"), st.integers(0, 30)),
    ),
    max_size=25,
)


@pytest.mark.parametrize("name", list(VIEWS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops, seed=st.integers(0, 2**32 - 1))
def test_a_swap_puts_back_its_snapshot_and_returns_what_it_replaced(
    name: str, ops: list[tuple[Any, ...]], seed: int
) -> None:
    source, view, rng = _source(name), VIEWS[name], random.Random(seed)
    register(_registered)
    try:
        with deterministic(None, algorithms=None, benchmark=None, tf32=None):
            saved = [(source.capture(), view())]
            last = saved[0]
            for op in ops:
                if op[0] == "change":
                    change(rng)
                elif op[0] == "capture":
                    saved.append((source.capture(), view()))
                else:
                    snapshot, expected = last if op[0] == "undo" else saved[op[1] % len(saved)]
                    before = view()
                    replaced = source.swap(snapshot)
                    assert view() == expected
                    last = (replaced, before)
                    saved.append(last)
    finally:
        unregister(_registered)


@pytest.mark.parametrize("name", ["torch flags", "tf32"])
def test_the_remembered_write_is_not_reused_after_an_outside_change(name: str) -> None:
    """Swap there and back, change the state outside, swap back again: exact each time."""
    source, view = _source(name), VIEWS[name]
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = False
        caller_view = view()
        with deterministic(0, benchmark=True, tf32=False):
            inside, inside_view = source.capture(), view()
        for _ in range(3):
            outside = source.swap(inside)  # a resumption
            assert view() == inside_view
            inside = source.swap(outside)  # the suspension after it
            assert view() == caller_view
        # the caller changes a flag each of these sources holds between steps
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        changed_view = view()
        assert changed_view != caller_view
        outside = source.swap(inside)
        assert view() == inside_view
        source.swap(outside)
        assert view() == changed_view
        # ... and the inside state changes between a resumption and its suspension
        outside = source.swap(inside)
        torch.backends.cudnn.deterministic = not torch.backends.cudnn.deterministic
        torch.set_float32_matmul_precision("medium")
        moved_view = view()
        inside = source.swap(outside)
        assert view() == changed_view
        source.swap(inside)
        assert view() == moved_view


def test_a_failing_write_during_a_swap_leaves_the_flags_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = _source("torch flags")
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = False
        before, before_view = source.capture(), VIEWS["torch flags"]()
        with deterministic(0, benchmark=True):
            target = source.capture()
        calls = 0
        real = torch._C._set_cudnn_deterministic

        def fails_once(value: bool) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                real(value)  # half done: the value is written, then it fails
                raise OSError("setter failed")
            real(value)

        flags = source.flags  # type: ignore[attr-defined]
        index = [flag.name for flag in flags].index("torch.backends.cudnn.deterministic")
        setters = list(source._setters)  # type: ignore[attr-defined]
        setters[index] = fails_once
        monkeypatch.setattr(source, "_setters", tuple(setters))
        with pytest.raises(OSError, match="setter failed"):
            source.swap(target)
        assert VIEWS["torch flags"]() == before_view
        assert source.capture() == before


def test_a_failing_environment_write_during_a_swap_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = _source("environment")
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        monkeypatch.delenv("PYTHONHASHSEED", raising=False)
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
        before = env_state()
        with deterministic(3):
            target = source.capture()
        environ = source._environ  # type: ignore[attr-defined]
        real_set = environ.set
        calls = 0

        def fails_second(name: str, value: str) -> None:
            nonlocal calls
            calls += 1
            real_set(name, value)
            if calls == 2:
                raise OSError("putenv failed")

        monkeypatch.setattr(environ, "set", fails_second)
        with pytest.raises(OSError, match="putenv failed"):
            source.swap(target)
        assert env_state() == before



def test_flag_targets_are_shared_by_every_seed() -> None:
    """A per-sample seed must not recompute what the flags want: they never depend on it."""
    from repro_ctx.core.source import Plan
    from repro_ctx.sources.flags import build_flags_source

    flags = build_flags_source(torch)
    plans = [Plan(seed, True, False, False, None) for seed in range(300)]
    targets = {flags._targets_for(plan) for plan in plans}
    assert len(targets) == 1
    assert len(flags._targets) == 1
    assert flags._targets_for(Plan(0, "warn", False, False, None)) != targets.pop()
