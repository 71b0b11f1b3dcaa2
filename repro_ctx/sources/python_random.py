"""The ``random`` module's global generator: its state, seeding and plain-data form.

Everything goes through ``random.getstate``/``random.setstate``, which run
under the GIL without releasing it, so no draw can interleave with them.
"""

from __future__ import annotations

import random
from typing import Any

from ..core.plain import Plain, Resolved, check_plain, expect, field, round_trip
from ..core.source import Plan, swap_by_restore
from .seeded_states import SeededStates


def random_plain(state: tuple[Any, ...]) -> Plain:
    """A ``random.Random.getstate()`` value as ``{"version", "state", "gauss_next"}``."""
    version, internal, gauss_next = state
    return {"version": version, "state": list(internal), "gauss_next": gauss_next}


def random_state(data: Plain) -> tuple[Any, ...]:
    """The ``getstate()`` value for checked ``random_plain`` data."""
    return (data["version"], tuple(data["state"]), data["gauss_next"])


def check_random(data: object, where: str) -> Plain:
    """Validate ``random_plain`` data by setting it on a scratch generator."""
    out = check_plain(data, where)
    expect(field(out, "version", where), int, f"{where}.version", "an int")
    state = expect(field(out, "state", where), list, f"{where}.state", "a list of ints")
    for value in state:
        expect(value, int, f"{where}.state", "a list of ints")
    expect(field(out, "gauss_next", where), (float, type(None)), f"{where}.gauss_next",
           "a float or None")
    scratch = random.Random()
    round_trip(lambda d: scratch.setstate(random_state(d)),
               lambda: random_plain(scratch.getstate()), out, where)
    return out


class PythonRandomSource:
    """``random.random()`` and friends, through the module's own getstate/setstate."""

    name = "random"
    kind = "random"

    def __init__(self) -> None:
        self._getstate = random.getstate
        self._setstate = random.setstate
        self._seed = random.seed
        self._seeded: SeededStates[tuple[Any, ...]] = SeededStates()

    def capture(self) -> tuple[Any, ...]:
        state: tuple[Any, ...] = self._getstate()
        return state

    def seed(self, snapshot: object, plan: Plan) -> None:
        seed = plan.seed
        if seed is None:
            return
        state = self._seeded.get(seed)
        if state is not None:  # copying in a seeded state is cheaper than seeding again
            self._setstate(state)
            return
        self._seed(seed)
        self._seeded.seeded(seed, self._getstate)

    def restore(self, snapshot: object) -> None:
        self._setstate(snapshot)  # type: ignore[arg-type]

    swap = swap_by_restore

    # -- plain data ------------------------------------------------------------

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, tuple)
        return random_plain(snapshot)

    @staticmethod
    def check(data: object) -> Plain:
        return check_random(data, "random")

    def resolve(self, data: Plain) -> Resolved:
        return Resolved(random_state(data))

    @staticmethod
    def items(data: Plain) -> dict[str, Plain]:
        return {"": data}

