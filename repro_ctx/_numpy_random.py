"""NumPy's legacy global ``RandomState`` (``np.random.seed``, ``np.random.rand``...)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import _rawstate
from ._seed import numpy_legacy_seed
from ._source import Plan


@lru_cache(maxsize=64)
def _seeded_state(seed: int) -> object:
    """The state ``np.random.seed`` leaves for ``seed`` (see ``numpy_legacy_seed``)."""
    state = np.random.RandomState()
    state.seed(numpy_legacy_seed(seed))
    return _rawstate.legacy_get(state)


def global_random_state() -> np.random.RandomState:
    """The RandomState behind ``np.random.*``, whichever way this NumPy names it."""
    return np.random.mtrand._rand


class NumPyGlobalSource:
    """The legacy global state, cached Gaussian included."""

    name = "numpy.random (global)"

    def capture(self) -> object:
        return _rawstate.legacy_get(global_random_state())

    def seed(self, snapshot: object, plan: Plan) -> None:
        if plan.seed is not None:
            _rawstate.legacy_set(global_random_state(), _seeded_state(plan.seed))

    def restore(self, snapshot: object) -> None:
        _rawstate.legacy_set(global_random_state(), snapshot)

    def swap(self, snapshot: object) -> object:
        return _rawstate.legacy_swap(global_random_state(), snapshot)
