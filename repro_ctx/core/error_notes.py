"""Notes on errors that a scope itself brought about, added as the error leaves the scope.

A scope turns torch's deterministic algorithms on by default. An op that has
no deterministic implementation then raises, and torch's message speaks of
``torch.use_deterministic_algorithms(True)``, a call the user never wrote.
The note says that the scope did it and names the option that lets the op
run. ``close_scope`` calls ``add_scope_notes`` only when an exception leaves
the scope, so a normal exit pays nothing.
"""

from __future__ import annotations

from .source import Plan

_NO_DETERMINISTIC_IMPLEMENTATION = "does not have a deterministic implementation"
_CUBLAS = "CUBLAS_WORKSPACE_CONFIG"

ALGORITHMS_NOTE = (
    "repro_ctx: this scope turned torch's deterministic algorithms on (algorithms=True, the "
    "default of deterministic(), @reproducible and %%deterministic). To run this op with a "
    'warning instead of an error, pass algorithms="warn" (%%deterministic --warn).'
)
CUBLAS_NOTE = (
    "repro_ctx: this scope turned torch's deterministic algorithms on and sets "
    "CUBLAS_WORKSPACE_CONFIG=:4096:8 when it is unset, but cuBLAS reads it once, when CUDA "
    "first uses it, which was before this scope. Set it before the program starts: "
    '`repro-ctx run -- python ...`; or pass algorithms="warn".'
)


def add_scope_notes(plan: Plan, error: BaseException) -> None:
    """Add the note that explains ``error``, if the scope's own settings caused it.

    Never raises: the scope's restore runs after this, whatever ``error`` is.
    """
    if plan.algorithms is not True or not isinstance(error, RuntimeError):
        return
    try:
        message = str(error)
        if _NO_DETERMINISTIC_IMPLEMENTATION in message:
            add_note(error, ALGORITHMS_NOTE)
        elif _CUBLAS in message:
            add_note(error, CUBLAS_NOTE)
    except Exception:  # a broken __str__ or read-only args: no note, and no new error
        return


def add_note(error: BaseException, note: str) -> None:
    """``error.add_note(note)`` once (nested scopes see the same error); 3.10: in the message."""
    if note in getattr(error, "__notes__", ()):
        return
    add = getattr(error, "add_note", None)
    if add is not None:
        add(note)
    else:  # Python 3.10 has no notes
        append_to_message(error, note)


def append_to_message(error: BaseException, note: str) -> None:
    """Put ``note`` at the end of the message, where a traceback shows it."""
    if error.args and isinstance(error.args[0], str):
        if note not in error.args[0]:
            error.args = (f"{error.args[0]}\n{note}", *error.args[1:])
    else:
        error.args = (*error.args, note)
