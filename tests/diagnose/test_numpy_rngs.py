"""find_divergence names an unseeded NumPy Generator and the fix, as it does a torch.Generator."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from repro_ctx import find_divergence, register, unregister
from repro_ctx.diagnose.numpy_rngs import moved, named_generators, states

rng = np.random.default_rng()  # module level, unseeded: what the fix must name


def global_step() -> torch.Tensor:
    return (torch.from_numpy(rng.standard_normal(8)) * 2).sum()


def test_an_unseeded_global_numpy_generator_is_named_with_the_fix() -> None:
    report = find_divergence(global_step)
    assert not report.matched
    assert report.cause is not None
    assert report.cause.kind == "uncovered_rng"
    assert "the NumPy Generator `rng`" in report.cause.reason
    assert report.cause.fix == ("pass generators=[rng] (to find_divergence or deterministic), "
                                "or register(rng) where it is created")


def test_the_fix_works_passed_or_registered() -> None:
    assert find_divergence(global_step, generators=[rng]).matched
    register(rng)
    try:
        assert find_divergence(global_step).matched
    finally:
        unregister(rng)


def test_generators_in_a_closure_an_attribute_or_a_partial_are_named() -> None:
    local = np.random.default_rng()

    def closure() -> torch.Tensor:
        return torch.tensor(local.random(3)).sum()

    class Model:
        def __init__(self) -> None:
            self.noise = np.random.default_rng()

        def step(self) -> torch.Tensor:
            return torch.tensor(self.noise.random(3)).sum()

    def with_argument(source: Any) -> torch.Tensor:
        return torch.tensor(source.random(3)).sum()

    for fn, name in ((closure, "local"), (Model().step, "self.noise"),
                     (functools.partial(with_argument, source=np.random.default_rng()),
                      "source")):
        report = find_divergence(fn)
        assert report.cause is not None
        assert report.cause.kind == "uncovered_rng", fn
        assert f"the NumPy Generator `{name}`" in report.cause.reason
        assert f"generators=[{name}]" in report.cause.fix


def test_names_states_and_what_moved() -> None:
    first, second = np.random.default_rng(1), np.random.Generator(np.random.MT19937(2))

    def fn() -> None:
        second.random()

    found = named_generators(functools.partial(fn, first, first))
    assert found["<argument 1>"] is first  # the same object is named once
    assert "<argument 2>" not in found
    assert found["second"] is second
    before = states(found)
    fn()
    assert moved(found, before) == ["second"]


def test_a_numpy_generator_fn_does_not_reach_changes_nothing() -> None:
    def step() -> torch.Tensor:
        return torch.randn(3) + torch.tensor(np.random.default_rng().random(3))

    report = find_divergence(step)
    assert report.cause is not None
    assert report.cause.kind != "uncovered_rng"  # a fresh unseeded Generator: OS entropy


def test_an_empty_closure_cell_is_skipped() -> None:
    def outer() -> Any:
        def inner() -> Any:
            return late  # noqa: F821 - a cell, emptied below

        late = None
        del late  # the cell inner reads is empty now
        return inner

    assert "late" not in named_generators(outer())  # no error, and nothing from the cell
