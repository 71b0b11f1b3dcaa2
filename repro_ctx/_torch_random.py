"""torch's CPU default generator."""

from __future__ import annotations

from typing import Any

from ._source import Plan


class TorchCPUSource:
    """``torch.default_generator``.

    Seeding goes through the generator itself, not ``torch.manual_seed``,
    which also seeds (or queues seeding for) every accelerator backend and
    costs over a hundred times more. Accelerators are their own sources.
    """

    name = "torch (cpu)"

    def __init__(self, torch: Any) -> None:
        self._generator = torch.default_generator

    def capture(self) -> object:
        return self._generator.get_state()

    def seed(self, snapshot: object, plan: Plan) -> None:
        if plan.seed is not None:
            self._generator.manual_seed(plan.seed)

    def restore(self, snapshot: object) -> None:
        self._generator.set_state(snapshot)
