"""One gloo rank for tests/state/test_distributed_sync.py (``python -m tests.state.sync_ranks``)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from repro_ctx import deterministic, distributed, register, unregister
from tests.rank_processes import rank_main


def _draws(generator: torch.Generator) -> list[float]:
    return [random.random(), float(np.random.rand()), float(np.random.randn()),
            float(torch.rand(())), float(torch.rand((), generator=generator))]


def _gather(value: object) -> list[Any]:
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast(rank: int, world: int, directory: Path) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(100 + rank)
    register(generator)
    try:
        out: dict[str, Any] = {}
        for src in range(world):
            with deterministic(5, per_rank=True):
                np.random.randn()  # a cached Gaussian on every rank
                _draws(generator)
                benchmark = torch.backends.cudnn.benchmark = rank == 1  # a flag: not sent
                skipped = distributed.synchronize(src=src)
                out[f"src{src}"] = {"draws": _gather(_draws(generator)), "skipped": skipped,
                                    "benchmark": torch.backends.cudnn.benchmark == benchmark}
        errors = []
        for bad in (world, -1, True, "0"):
            try:
                distributed.synchronize(src=bad)  # type: ignore[arg-type]
            except ValueError as exc:
                errors.append(str(exc))
        out["errors"] = errors
        return out
    finally:
        unregister(generator)


if __name__ == "__main__":
    rank_main({"broadcast": broadcast})
