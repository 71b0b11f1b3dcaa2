"""One gloo rank for tests/integrations/test_dcp.py (``python -m tests.integrations.dcp_ranks``)."""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp

from repro_ctx import deterministic
from repro_ctx.integrations.dcp import RNGStateful
from tests.rank_processes import rank_main

SEED = 9


def draws() -> list[float]:
    return [random.random(), float(np.random.rand()), float(np.random.randn()),
            float(torch.rand(()))]


def _own_streams(rank: int, world: int) -> None:
    """Streams of this rank alone, and a cached NumPy Gaussian."""
    random.seed(1000 * world + rank)
    np.random.seed(1000 * world + rank)
    torch.manual_seed(1000 * world + rank)
    np.random.randn()


def _save(rank: int, world: int, path: Path) -> list[float]:
    _own_streams(rank, world)
    dcp.save({"rng": RNGStateful(seed=SEED)}, checkpoint_id=str(path))
    return draws()  # what a run resumed from the checkpoint must draw


def _load(path: Path, on_resize: Any = "raise") -> dict[str, Any]:
    random.seed(7)  # whatever a fresh process has
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dcp.load({"rng": RNGStateful(seed=0, on_resize=on_resize)},
                     checkpoint_id=str(path))
        except ValueError as exc:
            return {"error": str(exc)}
    return {"draws": draws(), "warnings": [str(w.message) for w in caught
                                           if issubclass(w.category, RuntimeWarning)]}


def _derived() -> list[float]:
    with deterministic(SEED, per_rank=True):
        return draws()


def two_save(rank: int, world: int, directory: Path) -> dict[str, Any]:
    return {"saved": _save(rank, world, directory / "two")}


def three(rank: int, world: int, directory: Path) -> dict[str, Any]:
    return {"raise": _load(directory / "two"), "derive": _load(directory / "two", "derive"),
            "derived": _derived(), "saved": _save(rank, world, directory / "three")}


def two_load(rank: int, world: int, directory: Path) -> dict[str, Any]:
    return {"exact": _load(directory / "two"), "raise": _load(directory / "three"),
            "derive": _load(directory / "three", "derive")}


if __name__ == "__main__":
    rank_main({"two_save": two_save, "three": three, "two_load": two_load})
