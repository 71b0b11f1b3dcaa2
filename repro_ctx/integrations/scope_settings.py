"""The scope settings a framework callback takes: ``deterministic``'s options and ``strict``.

Lightning's and the Hugging Face Trainer's ``ReproCallback`` take the same
keywords; ``ScopeSettings.checked`` checks them once, when the callback is
made, so a bad option raises there rather than when a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.source import Algorithms
from ..scopes.deterministic import deterministic


@dataclass(frozen=True)
class ScopeSettings:
    """``deterministic(seed, **options)`` to open per run, and ``RNGState.restore``'s ``strict``."""

    seed: int | None
    options: dict[str, Any]
    strict: bool

    @classmethod
    def checked(
        cls,
        seed: int | None,
        *,
        algorithms: Algorithms,
        benchmark: bool | None,
        tf32: bool | None,
        fill_uninitialized_memory: bool | None,
        per_rank: bool,
        strict: bool,
    ) -> ScopeSettings:
        """The settings, each checked as ``deterministic`` checks it."""
        options: dict[str, Any] = {
            "algorithms": algorithms, "benchmark": benchmark, "tf32": tf32,
            "fill_uninitialized_memory": fill_uninitialized_memory, "per_rank": per_rank}
        deterministic(seed, **options)  # checks every option; enters nothing
        if strict is not True and strict is not False:
            raise TypeError(f"strict must be True or False, got {strict!r}")
        return cls(seed, options, strict)

    def open(self) -> deterministic:
        """A new scope with these settings, entered."""
        scope = deterministic(self.seed, **self.options)
        scope.start()
        return scope

    def __str__(self) -> str:
        options = ", ".join(f"{name}={value!r}" for name, value in self.options.items())
        return f"seed={self.seed!r}, {options}, strict={self.strict!r}"
