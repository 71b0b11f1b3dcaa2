"""A dataset whose items are augmentation draws, for DataLoader worker tests.

It lives in an importable module so that spawned workers can unpickle it.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from repro_ctx import register

COLUMNS = ("index", "worker", "random", "numpy", "torch", "registered")


class DrawsDataset(torch.utils.data.Dataset[torch.Tensor]):
    """Item ``i``: ``(i, worker id, one draw from each RNG a worker uses)``.

    Its own ``torch.Generator`` is registered, in the process that builds it
    and in every spawned worker that unpickles it; forked workers inherit the
    registration.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.generator = torch.Generator().manual_seed(1234)
        register(self.generator)

    def __getstate__(self) -> dict[str, Any]:
        # bytes, not a tensor: a temporary tensor pickled for a spawned process
        # goes through shared memory that is freed before the child opens it
        return {"size": self.size, "state": self.generator.get_state().numpy().tobytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.size = state["size"]
        self.generator = torch.Generator()
        self.generator.set_state(torch.frombuffer(bytearray(state["state"]), dtype=torch.uint8))
        register(self.generator)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        info = torch.utils.data.get_worker_info()
        return torch.tensor(
            [
                index,
                -1 if info is None else info.id,
                random.random(),
                np.random.rand(),
                torch.rand(()).item(),
                torch.rand((), generator=self.generator).item(),
            ],
            dtype=torch.float64,
        )


def epochs(loader: Any, count: int = 2) -> list[list[list[float]]]:
    """The rows each epoch yields, in order."""
    return [torch.cat(list(loader)).tolist() for _ in range(count)]
