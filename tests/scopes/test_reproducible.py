"""@reproducible on functions, methods, classmethods and staticmethods."""

from __future__ import annotations

import inspect
import random

import numpy as np
import torch

from repro_ctx import reproducible
from tests.global_state import rng_state


@reproducible(seed=3)
def experiment(n: int, *, scale: float = 1.0) -> list[float]:
    """Draw n numbers."""
    return [scale * random.random() for _ in range(n)] + np.random.rand(n).tolist() + torch.rand(
        n
    ).tolist()


class Model:
    def __init__(self) -> None:
        self.calls = 0

    @reproducible(seed=1)
    def method(self, n: int) -> list[float]:
        self.calls += 1
        return torch.rand(n).tolist()

    @reproducible(seed=1)
    @classmethod
    def cls_method(cls, n: int) -> tuple[str, list[float]]:
        return cls.__name__, torch.rand(n).tolist()

    @reproducible(seed=1)
    @staticmethod
    def static_method(n: int) -> list[float]:
        return torch.rand(n).tolist()


def test_every_call_gives_the_same_results_and_leaves_the_caller_alone() -> None:
    before = rng_state()
    first = experiment(3)
    assert rng_state() == before
    random.random()
    assert experiment(3) == first
    assert experiment(3, scale=2.0)[:3] == [2 * x for x in first[:3]]


def test_metadata_and_signature_are_preserved() -> None:
    assert experiment.__name__ == "experiment"
    assert experiment.__doc__ == "Draw n numbers."
    assert experiment.__wrapped__.__name__ == "experiment"
    signature = "(n: 'int', *, scale: 'float' = 1.0) -> 'list[float]'"
    assert str(inspect.signature(experiment)) == signature
    assert str(inspect.signature(Model().method)) == "(n: 'int') -> 'list[float]'"


def test_methods_classmethods_and_staticmethods() -> None:
    model = Model()
    torch.manual_seed(1)
    expected = torch.rand(4).tolist()
    torch.manual_seed(123)
    before = rng_state()
    assert model.method(4) == expected
    assert model.calls == 1
    assert Model.cls_method(4) == ("Model", expected)
    assert model.cls_method(4) == ("Model", expected)
    assert Model.static_method(4) == expected
    assert model.static_method(4) == expected
    assert rng_state() == before


def test_recursion_through_the_decorator() -> None:
    @reproducible(seed=2)
    def recurse(depth: int) -> list[float]:
        value = random.random()
        return [value, *(recurse(depth - 1) if depth else [])]

    values = recurse(3)
    assert len(set(values)) == 1


def test_bare_decorator_means_seed_zero() -> None:
    @reproducible
    def bare(n: int) -> list[float]:
        return torch.rand(n).tolist()

    torch.manual_seed(0)
    expected = torch.rand(3).tolist()
    torch.manual_seed(9)
    before = rng_state()
    assert bare(3) == expected
    assert bare.__name__ == "bare"
    assert rng_state() == before


def test_positional_int_seed_and_keyword_callable_seed() -> None:
    @reproducible(4)
    def fixed() -> float:
        return random.random()

    @reproducible(seed=lambda n: n)
    def per_call(n: int) -> float:
        return random.random()

    random.seed(4)
    assert fixed() == random.random()
    random.seed(7)
    assert per_call(7) == random.random()


def test_ambiguous_positional_forms_are_refused() -> None:
    import pytest

    with pytest.raises(TypeError, match="pass a per-call seed function as seed="):
        reproducible(lambda n: n, algorithms=False)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="both positionally and as seed="):
        reproducible(1, seed=2)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="at most one positional"):
        reproducible(1, 2)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="unexpected keyword"):
        reproducible(seed=1, bogus=True)  # type: ignore[call-overload]
