"""The states a source's seeding reached, kept so that a seed that comes back is a state copy.

Copying a kept state in is several times cheaper than seeding again, but
reading the state to keep it costs more than the seeding it saves once: a
new seed on every call (a per-sample seed) would pay for a state it never
uses. So a state is kept only from a seed's second use, for the seeds used
last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Generic, TypeVar

_State = TypeVar("_State")

KEPT: Final = 64
"""Seeded states kept, for the seeds used last."""
_SEEN: Final = 4 * KEPT
"""Seeds remembered as used once; the set starts again when it is full."""


class SeededStates(Generic[_State]):
    """Seed -> the state seeding with it left, from the seed's second use on."""

    __slots__ = ("_seen", "_states")

    def __init__(self) -> None:
        self._states: dict[int, _State] = {}
        self._seen: set[int] = set()

    def get(self, seed: int) -> _State | None:
        return self._states.get(seed)

    def seeded(self, seed: int, read: Callable[[], _State]) -> None:
        """The source has just seeded with ``seed``: keep ``read()`` if the seed came before."""
        seen = self._seen
        if seed not in seen:
            if len(seen) >= _SEEN:
                seen.clear()
            seen.add(seed)
            return
        states = self._states
        if len(states) >= KEPT:
            del states[next(iter(states))]  # the oldest
        states[seed] = read()
