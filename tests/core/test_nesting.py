"""Nesting, re-entry and exceptions, driven by Hypothesis against public-API state."""

from __future__ import annotations

import random
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from repro_ctx import deterministic
from tests.global_state import draws, full_state, rng_state


class Fail(Exception):
    pass


# A program is a list of steps: ("draw",), ("flag", i), ("enter", seed, program), ("raise",).
def _programs() -> st.SearchStrategy[list[Any]]:
    leaf = st.one_of(
        st.just(("draw",)),
        st.tuples(st.just("flag"), st.integers(0, 3)),
        st.just(("raise",)),
    )
    return st.recursive(
        st.lists(leaf, max_size=4),
        lambda inner: st.lists(
            st.one_of(
                leaf, st.tuples(st.just("enter"), st.sampled_from([None, 0, 1, 2**40]), inner)
            ),
            max_size=4,
        ),
        max_leaves=12,
    )


def _flip(which: int) -> None:
    if which == 0:
        torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
    elif which == 1:
        torch.use_deterministic_algorithms(not torch.are_deterministic_algorithms_enabled())
    elif which == 2:
        torch.set_float32_matmul_precision(random.choice(["high", "medium", "highest"]))
    else:
        np.random.randn(1)


def _run(program: list[Any], scopes: dict[Any, deterministic]) -> None:
    for step in program:
        if step[0] == "draw":
            draws()
        elif step[0] == "flag":
            _flip(step[1])
        elif step[0] == "raise":
            raise Fail
        else:
            _seed, inner = step[1], step[2]
            scope = scopes.setdefault(_seed, deterministic(_seed))  # shared: re-entered
            before = full_state()
            try:
                with scope:
                    _run(inner, scopes)
            except Fail:
                pass
            assert full_state() == before, "inner exit must restore the state at inner entry"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_programs())
def test_random_nested_programs_restore_at_every_exit(program: list[Any]) -> None:
    before = full_state()
    try:
        with deterministic(7):
            _run(program, {})
    except Fail:
        pass
    assert full_state() == before


@settings(max_examples=30, deadline=None)
@given(_programs(), st.sampled_from([0, 3]))
def test_inner_scopes_do_not_disturb_the_outer_stream(program: list[Any], seed: int) -> None:
    """Draws an outer scope makes after an inner scope equal those with no inner scope."""
    def outer(with_inner: bool) -> tuple[float, float, float]:
        with deterministic(seed):
            draws()
            if with_inner:
                try:
                    with deterministic(1):
                        _run(program, {})
                except Fail:
                    pass
            return draws()

    assert outer(True) == outer(False)


def test_one_object_used_recursively() -> None:
    scope = deterministic(5)

    def recurse(depth: int) -> list[float]:
        with scope:
            first = random.random()
            deeper = recurse(depth - 1) if depth else []
            assert random.random() != first or depth == 0
            return [first, *deeper]

    before = rng_state()
    values = recurse(4)
    assert len(set(values)) == 1  # every level starts from the same seeded state
    assert rng_state() == before


def test_exit_without_enter_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without a matching __enter__"):
        deterministic(0).stop()
