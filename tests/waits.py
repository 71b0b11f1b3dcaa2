"""How long a test waits for what should happen at once: a guard against a hang, never a measure.

A loaded machine runs the suite many times slower than a quiet one (at twice
its core count in load it took ten times as long), so no wait in a test may
be short enough for slowness to fail it. Every wait for a child process, a
thread, an event or a collective uses this limit; it only ends a test that
hangs, with a failure that says so.
"""

from __future__ import annotations

from typing import Final

HANG_TIMEOUT: Final = 15 * 60
"""Seconds: a process, thread or event that has not finished by then is taken to hang."""
