"""torch's CPU default generator."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ._source import Plan, swap_by_restore


class TorchCPUSource:
    """``torch.default_generator``.

    Seeding goes through the generator itself, not ``torch.manual_seed``,
    which also seeds (or queues seeding for) every accelerator backend and
    costs over a hundred times more. Accelerators are their own sources. The
    state ``manual_seed`` leaves is computed once per seed and then copied in,
    which is several times cheaper than running the seeding again.
    """

    name = "torch (cpu)"

    def __init__(self, torch: Any) -> None:
        self._generator = torch.default_generator
        new_generator = torch.Generator

        @lru_cache(maxsize=64)  # as random's and NumPy's seeded states are cached
        def seeded_state(seed: int) -> object:
            """The state ``manual_seed(seed)`` leaves."""
            fresh = new_generator()
            fresh.manual_seed(seed)
            return fresh.get_state()

        self._seeded_state = seeded_state

    def capture(self) -> object:
        return self._generator.get_state()

    def seed(self, snapshot: object, plan: Plan) -> None:
        if plan.seed is not None:
            self._generator.set_state(self._seeded_state(plan.seed))

    def restore(self, snapshot: object) -> None:
        self._generator.set_state(snapshot)

    swap = swap_by_restore
