"""torch's CPU default generator."""

from __future__ import annotations

from typing import Any

from ._source import Plan, swap_by_restore

_SEEDED_STATES = 64


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
        self._new_generator = torch.Generator
        self._seeded: dict[int, object] = {}

    def capture(self) -> object:
        return self._generator.get_state()

    def seed(self, snapshot: object, plan: Plan) -> None:
        seed = plan.seed
        if seed is None:
            return
        state = self._seeded.get(seed)
        if state is None:  # what manual_seed(seed) leaves, computed once per seed
            fresh = self._new_generator()
            fresh.manual_seed(seed)
            state = fresh.get_state()
            if len(self._seeded) < _SEEDED_STATES:
                self._seeded[seed] = state
        self._generator.set_state(state)

    def restore(self, snapshot: object) -> None:
        self._generator.set_state(snapshot)

    swap = swap_by_restore
