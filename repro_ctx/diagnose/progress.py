"""A one-line progress display on stderr, for tools that run the user's code several times.

``find_divergence`` runs ``fn`` up to four times, at several times its
normal cost: a person at a terminal should see that it is working. The line
is rewritten in place (carriage return), at most every ``interval`` seconds,
and erased at the end. Where stderr is not a terminal (a log, a pipe, CI)
nothing is written and the recorder is handed no callback at all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

INTERVAL = 0.1  # seconds between two redraws


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """``stage("run 1/2")`` starts a stage; the callback it returns takes the op count."""

    def __init__(
        self, title: str, stream: TextIO | None = None, interval: float | None = None
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = _is_terminal(self.stream)
        self.title = title
        self.interval = INTERVAL if interval is None else interval
        self._stage = ""
        self._shown_at = -float("inf")
        self._written = False

    def stage(self, text: str) -> Callable[[int], None] | None:
        """Show a new stage now; the op-count callback for it, or ``None`` when silent."""
        if not self.enabled:
            return None
        self._stage = text
        self._write(f"{text} ...", force=True)
        return self.ops

    def ops(self, count: int) -> None:
        self._write(f"{self._stage}, {count:,} ops recorded")

    def _write(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown_at < self.interval:
            return
        self._shown_at = now
        self.stream.write(f"\r{self.title}: {text}\x1b[K")
        self.stream.flush()
        self._written = True

    def close(self) -> None:
        """Erase the line, so that what the caller prints next starts clean."""
        if self._written:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._written = False
