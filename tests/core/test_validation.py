"""Bad input: a clear TypeError or ValueError naming what is accepted, and nothing changed."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
import torch

from repro_ctx import deterministic, register, reproducible, unregister
from repro_ctx.core.seed import check_seed
from tests.global_state import full_state


@pytest.mark.parametrize(
    ("seed", "error", "match"),
    [
        (1.0, TypeError, r"seed must be an int in \[0, 2\*\*64\) or None, got float"),
        ("3", TypeError, "got str"),
        (True, TypeError, "got bool"),
        (Fraction(1, 2), TypeError, "got Fraction"),
        (-1, ValueError, r"seed must be in \[0, 2\*\*64\), got -1"),
        (2**64, ValueError, "got 18446744073709551616"),
    ],
)
def test_bad_seeds(seed: object, error: type[Exception], match: str) -> None:
    before = full_state()
    with pytest.raises(error, match=match):
        deterministic(seed)  # type: ignore[arg-type]
    if error is TypeError:  # @reproducible also takes a callable, and says so
        match = match.replace(r" or None, got", r", None, or a callable that computes it .* got")
    with pytest.raises(error, match=match):
        reproducible(seed)  # type: ignore[arg-type]
    assert full_state() == before


def test_numpy_integers_are_valid_seeds() -> None:
    assert check_seed(np.uint64(2**64 - 1)) == 2**64 - 1
    assert check_seed(np.int32(5)) == 5


@pytest.mark.parametrize("value", ["strict", 1, 0, "True"])
def test_bad_algorithms(value: object) -> None:
    with pytest.raises(ValueError, match=r"algorithms must be True, False, 'warn' or None"):
        deterministic(0, algorithms=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["benchmark", "tf32", "fill_uninitialized_memory"])
@pytest.mark.parametrize("value", [1, "yes", 0.0])
def test_bad_flag_options(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"{name} must be True, False or None"):
        deterministic(0, **{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "generators",
    [[object()], [np.random], [random.SystemRandom()], "abc", 5, [torch.randn(2)]],
)
def test_bad_generators(generators: object) -> None:
    before = full_state()
    with pytest.raises(TypeError, match=r"generator|SystemRandom"):
        deterministic(0, generators=generators)  # type: ignore[arg-type]
    assert full_state() == before


def test_unknown_object_in_register() -> None:
    with pytest.raises(TypeError, match=r"expected numpy\.random\.Generator"):
        register([1, 2])
    with pytest.raises(ValueError, match="is not registered"):
        unregister(np.random.default_rng())


def test_callable_seed_is_refused_by_the_context_manager() -> None:
    with pytest.raises(TypeError, match="@reproducible"):
        deterministic(lambda: 3)  # type: ignore[arg-type]


def test_reproducible_refuses_non_callables() -> None:
    with pytest.raises(TypeError, match="decorates a function"):
        reproducible(0)(42)  # type: ignore[arg-type]
