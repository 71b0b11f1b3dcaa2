"""torch's CPU default generator, and the plain form of any one-tensor generator state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.plain import Plain, Resolved, byte_tensor, check_plain, field
from ..core.source import Plan, swap_by_restore
from .seeded_states import SeededStates

if TYPE_CHECKING:
    import torch



def state_size_mismatch(loaded: torch.Tensor, current: torch.Tensor) -> str | None:
    """Why a loaded byte state cannot go into a generator whose state is ``current``."""
    if loaded.numel() != current.numel():
        return f"the state has {loaded.numel()} bytes, a generator here has {current.numel()}"
    return None


class TensorStatePlain:
    """Plain form of an eager generator whose state is one byte tensor (torch CPU, MPS).

    Mixed into the source, which provides ``capture``.
    """

    __slots__ = ()
    kind = "tensor"

    if TYPE_CHECKING:

        def capture(self) -> Any: ...

    def to_plain(self, snapshot: object) -> Plain:
        import torch

        assert isinstance(snapshot, torch.Tensor)
        return {"state": snapshot.clone()}

    @staticmethod
    def check(data: object) -> Plain:
        out = check_plain(data, "generator")
        byte_tensor(field(out, "state", "generator"), "generator.state")
        return out

    def resolve(self, data: Plain) -> Resolved:
        problem = state_size_mismatch(data["state"], self.capture())
        if problem is not None:
            return Resolved(None, (problem,))
        return Resolved(data["state"].clone())

    @staticmethod
    def items(data: Plain) -> dict[str, Plain]:
        return {"": data}


class TorchCPUSource(TensorStatePlain):
    """``torch.default_generator``.

    Seeding goes through the generator itself, not ``torch.manual_seed``,
    which also seeds (or queues seeding for) every accelerator backend and
    costs over a hundred times more. Accelerators are their own sources. A
    seed that comes back is seeded by copying in the state ``manual_seed``
    left (see ``SeededStates``).
    """

    name = "torch (cpu)"

    def __init__(self, torch: Any) -> None:
        self._generator = torch.default_generator
        self._seeded: SeededStates[object] = SeededStates()

    def capture(self) -> object:
        return self._generator.get_state()

    def seed(self, snapshot: object, plan: Plan) -> None:
        seed = plan.seed
        if seed is None:
            return
        generator = self._generator
        state = self._seeded.get(seed)
        if state is not None:
            generator.set_state(state)
            return
        generator.manual_seed(seed)
        self._seeded.seeded(seed, generator.get_state)

    def restore(self, snapshot: object) -> None:
        self._generator.set_state(snapshot)

    swap = swap_by_restore
