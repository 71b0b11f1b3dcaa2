"""The one scope primitive: capture every source, seed it, restore it exactly.

Every face (``with``, ``async with``, the decorator, the cell magic, the
pytest marker) opens and closes scopes through ``open_scope`` and
``close_scope``. An open scope is an ``Activation``: it holds the snapshots
taken on entry and lives on a process-wide stack, never on the object that
opened it, so one ``deterministic`` object can be entered any number of
times, recursively and from several tasks.

Threads: RNG state and torch flags are process-wide, so scopes are
serialised across threads. A thread that opens a scope while another thread
has one open waits until that thread has closed all of its scopes; a thread
re-entering its own scopes never waits. Consequently, code inside a scope
must not wait for another thread that opens a scope: that is a deadlock, and
after ``WAIT_WARNING_SECONDS`` the waiting thread says so with a
``ScopeWaitWarning`` naming both threads.

Fork: a child forked while another thread has scopes open starts with none
open and a free lock (that thread does not exist in the child, so its scopes
can never close); the process state is what it was at the fork. A thread
that forks inside its own scopes goes on in the child inside them, and
closing them there restores the child's state as in the parent.
"""

from __future__ import annotations

import contextvars
import threading
import warnings
from collections.abc import Sequence

from .error_notes import add_note, add_scope_notes
from .fork import renew_after_fork
from .source import Plan, Source

_lock = threading.RLock()
_stack: list[Activation] = []
entered: contextvars.ContextVar[tuple[Activation, ...]] = contextvars.ContextVar(
    "repro_ctx_entered", default=()
)
"""The activations entered by ``deterministic`` faces in the current context (thread or
asyncio task), innermost last: how an exit finds its own activation when one object is
entered several times or by interleaved tasks, and what a generator step sets aside."""
renew_after_fork(globals(), "_lock", _stack.clear)
WAIT_WARNING_SECONDS = 10.0
_WAIT_SLICE = 0.05


class ScopeOrderWarning(RuntimeWarning):
    """A scope was closed while a scope opened after it was still open."""


class ScopeWaitWarning(RuntimeWarning):
    """A thread has waited long for another thread's scopes to close."""


def thread_name(ident: int | None) -> str:
    """The name of the thread ``ident``, or a stand-in once it has ended."""
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return f"thread {ident}"


def _acquire() -> None:
    """Wait for the scope lock; warn, naming both threads, if the wait looks like a deadlock."""
    waited = 0.0
    warned = False
    while not _lock.acquire(timeout=_WAIT_SLICE):
        waited += _WAIT_SLICE
        if not warned and waited >= WAIT_WARNING_SECONDS:
            warned = True
            holder = _stack[0].thread if _stack else None
            me = threading.current_thread().name
            other = thread_name(holder)
            warnings.warn(
                f"{me!r} has waited {waited:.0f} s to open a repro_ctx scope while "
                f"{other!r} holds scopes open. Scopes are serialised across threads "
                f"(RNG state is process-wide); if {other!r} is waiting for {me!r}, "
                "this is a deadlock: do not wait inside a scope for threads that open scopes.",
                ScopeWaitWarning,
                stacklevel=4,
            )


class Activation:
    """One open scope: what it captured, and the sources to restore."""

    __slots__ = ("closed", "owner", "plan", "snapshots", "sources", "thread")

    def __init__(self, owner: object, plan: Plan, sources: Sequence[Source]) -> None:
        self.owner = owner
        self.plan = plan
        self.sources = sources
        self.snapshots: list[object] = []
        self.closed = False
        self.thread = threading.get_ident()


def open_scope(
    owner: object,
    plan: Plan,
    sources: Sequence[Source],
    resume: Sequence[object] | None = None,
) -> Activation:
    """Capture every source, then seed it, or put back ``resume``.

    ``resume`` is what ``close_scope(..., keep=True)`` returned when this
    scope was last suspended: the state inside the scope at that moment.
    If any capture, seed or restore raises, every source already touched is
    restored, the lock is released and the error propagates.
    """
    if not _lock.acquire(blocking=False):
        _acquire()
    activation = Activation(owner, plan, sources)
    snapshots = activation.snapshots
    try:
        if resume is None:
            for source in sources:
                snapshot = source.capture()
                snapshots.append(snapshot)
                source.seed(snapshot, plan)
        else:
            for source, inside in zip(sources, resume):
                snapshots.append(source.swap(inside))
    except BaseException as exc:
        try:
            _restore_all(sources, snapshots, exc)
        finally:
            _lock.release()
        raise
    _stack.append(activation)
    return activation


def close_scope(
    activation: Activation, *, keep: bool = False, error: BaseException | None = None
) -> list[object] | None:
    """Restore what ``activation`` captured and release its hold on the lock.

    With ``keep=True`` the state inside the scope is captured first and
    returned, for a later ``open_scope(..., resume=...)``. ``error`` is the
    exception leaving the block, if any: it keeps priority over a failure
    to restore, which then becomes a warning.
    """
    if activation.closed:
        raise RuntimeError("this scope activation is already closed")
    activation.closed = True
    if error is not None:  # only then: a normal exit pays one comparison
        add_scope_notes(activation.plan, error)
    try:
        if _stack[-1] is activation:
            _stack.pop()
            if keep:
                return _swap_out(activation)
            _restore_all(activation.sources, activation.snapshots, error)
            return None
        inside = [source.capture() for source in activation.sources] if keep else None
        _hand_on(activation, _stack.index(activation))
        return inside
    finally:
        _lock.release()


def _swap_out(activation: Activation) -> list[object]:
    """Restore the entry state and return the inside state, one swap per source."""
    sources, snapshots = activation.sources, activation.snapshots
    inside: list[object] = [None] * len(snapshots)
    index = len(snapshots) - 1
    try:
        while index >= 0:
            inside[index] = sources[index].swap(snapshots[index])
            index -= 1
    except BaseException as exc:
        _restore_all(sources[: index + 1], snapshots[: index + 1], exc)
        raise
    return inside


def _hand_on(activation: Activation, index: int) -> None:
    """Close a scope that is not the innermost one.

    This happens when asyncio tasks interleave ``async with`` blocks. The
    scope opened right after this one captured this scope's *inside* state;
    it now takes over this scope's entry snapshots, so when it closes the
    state returns to what it was before this scope was entered.
    """
    successor = _stack[index + 1]
    if successor.sources is activation.sources:
        successor.snapshots = activation.snapshots
    else:
        successor.snapshots = _translate(activation, successor)
    del _stack[index]
    warnings.warn(
        "a repro_ctx scope was closed while a scope opened after it is still open "
        "(interleaved asyncio tasks using `async with`?). Its entry state was handed to "
        "the newer scope and comes back when that one closes. To give each task its own "
        "state, decorate the coroutine function with @reproducible instead.",
        ScopeOrderWarning,
        stacklevel=4,
    )


def _translate(older: Activation, newer: Activation) -> list[object]:
    """Map ``older``'s entry snapshots onto ``newer``'s sources, by identity."""
    by_source = {id(source): snap for source, snap in zip(older.sources, older.snapshots)}
    return [
        by_source.get(id(source), snap) for source, snap in zip(newer.sources, newer.snapshots)
    ]


def _restore_all(
    sources: Sequence[Source], snapshots: Sequence[object], error: BaseException | None
) -> None:
    """Restore in reverse order; every source is attempted whatever the others raise.

    A restore that raises ``Exception`` becomes a ``RuntimeError`` once every
    source has been attempted, or a warning when ``error`` (the exception
    leaving the block, or the one that failed the entry) is on its way out.
    A ``KeyboardInterrupt``, ``SystemExit`` or other ``BaseException`` is
    never turned into a warning: the first one propagates after the loop,
    with a note naming the source it interrupted. Raised inside the caller's
    ``except``/``__exit__``, it has ``error`` as its ``__context__``, and
    ``error`` keeps its own notes.
    """
    failure: Exception | None = None
    interrupt: BaseException | None = None
    interrupted = ""
    for index in range(len(snapshots) - 1, -1, -1):
        try:
            sources[index].restore(snapshots[index])
        except Exception as exc:
            if failure is None:
                failure = exc
        except BaseException as exc:  # Ctrl-C, sys.exit(): the other sources still come back
            if interrupt is None:
                interrupt = exc
                interrupted = sources[index].name
    if failure is None and interrupt is None:
        return
    if failure is not None:
        message = f"repro_ctx could not restore {type(failure).__name__}: {failure}"
        if error is None and interrupt is None:
            raise RuntimeError(message) from failure
        warnings.warn(message, RuntimeWarning, stacklevel=4)
    if interrupt is not None:
        add_note(interrupt, INTERRUPTED_NOTE.format(name=interrupted))
        raise interrupt


INTERRUPTED_NOTE = (
    "repro_ctx: raised while the scope restored {name!r}, which may be left part-restored; "
    "every other source was restored"
)


def open_activations() -> tuple[Activation, ...]:
    """The open scopes, outermost first."""
    return tuple(_stack)
