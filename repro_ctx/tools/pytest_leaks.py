"""The pytest plugin's leak check (``--repro-leaks``): one test's before and after.

Kept apart from ``pytest_plugin`` (which holds the hooks and fixtures pytest
looks for) to keep that module small.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pytest

from ..core.source import Source
from ..diagnose.leaks import (
    ALL,
    StateLeakWarning,
    capture,
    changes,
    checked_snapshots,
    checked_sources,
    report,
)
from ..sources.default_set import default_sources


class LeakCheck:
    """Snapshots of the checked sources before a test, to compare with after it.

    Under a scope (``scoped``: its sources and entry snapshots), the scope's
    own snapshots are the "before": it captured the same sources a moment
    later, with nothing between.
    """

    __slots__ = ("allowed", "before", "sources")

    def __init__(
        self,
        allowed: frozenset[str],
        randomly: bool,
        scoped: tuple[Sequence[Source], Sequence[object]] | None,
    ) -> None:
        self.allowed = allowed
        if scoped is not None and ALL not in allowed:
            self.sources, self.before = checked_snapshots(*scoped, randomly=randomly)
        else:
            self.sources = checked_sources(default_sources(), randomly=randomly)
            self.before = () if ALL in allowed else capture(self.sources)

    def finish(self, item: pytest.Item, mode: str) -> list[str] | None:
        """Fail (``mode="fail"``) or warn about what changed; the leaks a warning showed."""
        if ALL in self.allowed:
            return None
        found = changes(self.sources, self.before, capture(self.sources), allow=self.allowed)
        if not found:
            return None
        message = report(item.nodeid, found)
        if mode == "fail":
            pytest.fail(message, pytrace=False)
        lineno = item.location[1]
        # The warning goes through the warning filters (-W error::..., filterwarnings
        # marks), but what gets through is shown once, grouped, at the end.
        with warnings.catch_warnings(record=True) as shown:
            warnings.warn_explicit(
                StateLeakWarning(message), StateLeakWarning, str(item.path), (lineno or 0) + 1
            )
        return [str(change) for change in found] if shown else None
