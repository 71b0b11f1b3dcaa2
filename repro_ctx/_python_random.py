"""The ``random`` module's global generator."""

from __future__ import annotations

import random
from functools import lru_cache

from . import _rawstate
from ._source import Plan


@lru_cache(maxsize=64)
def _seeded_state(seed: int) -> object:
    """The state ``random.seed(seed)`` leaves, computed once per seed."""
    return _rawstate.random_get(random.Random(seed))


class PythonRandomSource:
    """``random.random()`` and friends: the hidden ``random._inst``."""

    name = "random"

    def __init__(self) -> None:
        self._instance: random.Random = random._inst

    def capture(self) -> object:
        return _rawstate.random_get(self._instance)

    def seed(self, snapshot: object, plan: Plan) -> None:
        if plan.seed is not None:
            _rawstate.random_set(self._instance, _seeded_state(plan.seed))

    def restore(self, snapshot: object) -> None:
        _rawstate.random_set(self._instance, snapshot)

    def swap(self, snapshot: object) -> object:
        return _rawstate.random_swap(self._instance, snapshot)
