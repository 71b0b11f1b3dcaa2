"""Module locks that a forked child can still take.

``fork()`` copies only the thread that calls it. A lock another thread held at
that moment is copied held, and no thread in the child will ever release it:
the child's first scope would wait forever. Such a lock is replaced in the
child. A lock the forking thread holds itself is kept: that thread goes on in
the child and releases it (a fork inside a ``with deterministic(...)`` block
leaves the block in both processes, and each restores its own state).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, MutableMapping
from typing import Any


def renew_after_fork(
    namespace: MutableMapping[str, Any], name: str, abandoned: Callable[[], None] | None = None
) -> None:
    """In a forked child, replace the RLock ``namespace[name]`` if another thread held it.

    ``abandoned`` then runs as well, to drop what that thread had open.
    """
    register = getattr(os, "register_at_fork", None)
    if register is None:  # no fork() on this platform
        return

    def renew() -> None:
        lock = namespace[name]
        if lock.acquire(blocking=False):  # free, or held by this (the forking) thread
            lock.release()
            return
        namespace[name] = threading.RLock()
        if abandoned is not None:
            abandoned()

    register(after_in_child=renew)
