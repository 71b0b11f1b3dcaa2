"""The one protocol every piece of scoped state implements, and the plan a scope applies.

A *source* is one RNG or one family of flags. A scope captures every source on
entry, seeds it (puts it in the state the plan asks for), and restores the
captured snapshot on exit. Adding a torch flag or a third-party RNG means
adding one small source, never editing the scope.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

Algorithms: TypeAlias = Literal[True, False, "warn"] | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What a scope asks of every source. ``None`` always means "leave as it is"."""

    seed: int | None
    algorithms: Algorithms
    benchmark: bool | None
    tf32: bool | None
    fill_uninitialized_memory: bool | None

    def with_seed(self, seed: int | None) -> Plan:
        """This plan with another seed: ``dataclasses.replace`` at a third of its cost.

        A per-sample seed makes a plan on every call with a new seed.
        """
        return Plan(seed, self.algorithms, self.benchmark, self.tf32,
                    self.fill_uninitialized_memory)

    @property
    def settings(self) -> tuple[object, ...]:
        """Everything but the seed: what flag sources depend on (a new seed reuses their work)."""
        return (self.algorithms, self.benchmark, self.tf32, self.fill_uninitialized_memory)

    @property
    def wants_determinism(self) -> bool:
        return self.algorithms is not None and self.algorithms is not False


class Source(Protocol):
    """Capture, seed and restore one piece of process-global state.

    ``capture`` returns an opaque snapshot that ``restore`` puts back exactly.
    ``seed`` receives the snapshot taken just before it, for sources (the lazy
    CUDA generators) whose seeding must record what it displaced.

    ``swap(snapshot)`` is capture followed by restore, returning what was
    captured: what a generator or coroutine scope does to every source at
    every suspension and resumption. A source whose restore reads the current
    state first (flags, TF32, environment) reuses that read; the flags
    remember their last write so that the swap back skips the comparison,
    and TF32 replays the writes of a transition it has made before. A source
    with no cheaper way says ``swap = swap_by_restore``.
    A swap whose restore fails
    puts the captured state back before the error propagates, so a source is
    never left half-swapped.
    """

    name: str

    def capture(self) -> object: ...

    def seed(self, snapshot: object, plan: Plan) -> None: ...

    def restore(self, snapshot: object) -> None: ...

    def swap(self, snapshot: object) -> object: ...


def swap_by_restore(source: Source, snapshot: object) -> object:
    """``Source.swap`` from ``capture`` and ``restore``, for sources with no cheaper way."""
    current = source.capture()
    try:
        source.restore(snapshot)
    except BaseException:
        undo(source, current)
        raise
    return current


class _Restores(Protocol):
    def restore(self, snapshot: object) -> None: ...


def undo(source: _Restores, current: object) -> None:
    """After a failed restore, put back ``current``; the first error is the one to report."""
    with contextlib.suppress(Exception):
        source.restore(current)


class WritesDifferences:
    """Restore and swap for a source that reads the current state and writes only what differs.

    A subclass gives ``capture`` and ``_write(current, snapshot, remember)``;
    a restore that finds the state as captured writes nothing. ``remember``
    is true for a swap: the writes may be reused by the swap back. A restore
    returns nothing a later swap could be handed, so it leaves what the
    source remembers alone (a ``with`` block inside a generator keeps the
    generator's swaps cheap).
    """

    __slots__ = ()

    if TYPE_CHECKING:  # what a subclass provides

        def capture(self) -> Any: ...

        def _write(self, current: Any, snapshot: Any, remember: bool) -> None: ...

    def restore(self, snapshot: object) -> None:
        current = self.capture()
        if current != snapshot:
            self._write(current, snapshot, False)

    def swap(self, snapshot: object) -> object:
        current = self.capture()
        if current != snapshot:
            try:
                self._write(current, snapshot, True)
            except BaseException:
                undo(self, current)
                raise
        return current
