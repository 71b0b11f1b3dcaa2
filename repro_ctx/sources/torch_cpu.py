"""torch's CPU default generator, and the plain form of any one-tensor generator state."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..core.plain import Malformed, Plain, Resolved, byte_tensor, check_plain, field
from ..core.source import Plan, swap_by_restore
from .seeded_states import SeededStates

if TYPE_CHECKING:
    import torch


def rejected_state(state: torch.Tensor, device: str | torch.device = "cpu") -> str | None:
    """Why a ``torch.Generator`` on ``device`` refuses ``state``; ``None`` if it takes it.

    torch checks a state's content only in ``set_state`` (an all-zero CPU
    state raises "Invalid mt19937 state"), so the state is tried on a scratch
    generator: a live one is never touched, and a CUDA generator's
    ``set_state`` has already changed its seed when it rejects the offset.
    Reading the state back proves nothing more: a CPU state keeps only the
    low 32 bits of each of its 64-bit words (tests/sources/test_torch_states.py).
    """
    import torch

    try:
        torch.Generator(device=device).set_state(state)
    except RuntimeError as exc:
        return f"not a valid state: a torch.Generator refuses it ({exc})"
    return None


@lru_cache(maxsize=1)
def cpu_state_bytes() -> int:
    """The size of this torch's CPU generator state (5,056 bytes in torch 2.x)."""
    import torch

    return int(torch.Generator().get_state().numel())


def check_cpu_state(state: torch.Tensor, where: str) -> None:
    """Reject a loaded byte state of the CPU generator's size that the CPU generator refuses.

    A state of another size is no CPU state here (an MPS one, or another
    torch's): ``resolve`` reports the size, and the device's own generator
    judges the content.
    """
    if state.numel() == cpu_state_bytes():
        problem = rejected_state(state)
        if problem is not None:
            raise Malformed(f"{where}: {problem}")


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
        state = byte_tensor(field(out, "state", "generator"), "generator.state")
        check_cpu_state(state, "generator.state")
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
