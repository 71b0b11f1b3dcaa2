"""pytest with repro_ctx: the marker, the ``repro_scope`` fixture and ``--repro-seed``.

    pytest examples/test_pytest_marker.py                    # the marked tests in their scopes
    pytest examples/test_pytest_marker.py --repro-seed=1234  # every test in a scope of its own

The plugin comes with the package; nothing to add to a conftest.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from repro_ctx import deterministic


@pytest.fixture
def model() -> torch.nn.Module:
    """Function-scoped fixtures run inside the test's scope: seeded too."""
    return torch.nn.Linear(4, 1)


@pytest.mark.deterministic(seed=0)
def test_initial_weights_are_seeded(model: torch.nn.Module, repro_scope: deterministic) -> None:
    assert repro_scope.seed == 0
    torch.manual_seed(0)  # what the scope did before the fixture ran
    assert torch.equal(model.weight, torch.nn.Linear(4, 1).weight)


@pytest.mark.deterministic(seed=0)
def test_flags_inside_a_scope() -> None:
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark


def test_seed_derived_from_the_run_seed(repro_scope: deterministic | None) -> None:
    """Under --repro-seed=N each test gets its own seed, derived from N and its node id."""
    if repro_scope is None:
        pytest.skip("only under --repro-seed=N")
    assert repro_scope.seed is not None
    drawn = (random.random(), np.random.rand())
    with deterministic(seed=repro_scope.seed):  # the same seed gives the same draws
        assert (random.random(), np.random.rand()) == drawn
