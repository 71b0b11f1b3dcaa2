"""The one protocol every piece of scoped state implements, and the plan a scope applies.

A *source* is one RNG or one family of flags. A scope captures every source on
entry, seeds it (puts it in the state the plan asks for), and restores the
captured snapshot on exit. Adding a torch flag or a third-party RNG means
adding one small source, never editing the scope.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

Algorithms: TypeAlias = Literal[True, False, "warn"] | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What a scope asks of every source. ``None`` always means "leave as it is"."""

    seed: int | None
    algorithms: Algorithms
    benchmark: bool | None
    tf32: bool | None
    fill_uninitialized_memory: bool | None

    @property
    def wants_determinism(self) -> bool:
        return self.algorithms is not None and self.algorithms is not False


class Source(Protocol):
    """Capture, seed and restore one piece of process-global state.

    ``capture`` returns an opaque snapshot that ``restore`` puts back exactly.
    ``seed`` receives the snapshot taken just before it, for sources (the lazy
    CUDA generators) whose seeding must record what it displaced.
    """

    name: str

    def capture(self) -> object: ...

    def seed(self, snapshot: object, plan: Plan) -> None: ...

    def restore(self, snapshot: object) -> None: ...


def swap(source: Source, snapshot: object) -> object:
    """Capture ``source``, restore ``snapshot``, and return what was captured.

    What a suspending or resuming scope does to each source. A source whose
    restore has to read the current state first (flags, environment) may
    offer ``restore_from(current, snapshot)`` to reuse the capture instead of
    reading everything twice. If the restore fails, the captured state is put
    back before the error propagates, so the source is never left half-swapped.
    """
    current = source.capture()
    restore_from = getattr(source, "restore_from", None)
    try:
        if restore_from is not None:
            restore_from(current, snapshot)
        else:
            source.restore(snapshot)
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report
            source.restore(current)
        raise
    return current
