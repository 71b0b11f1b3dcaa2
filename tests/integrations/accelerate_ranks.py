"""One process of an accelerate run on CPU (gloo), for tests/integrations/test_accelerate.py."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from repro_ctx import register
from repro_ctx.integrations import accelerate as repro_accelerate
from tests.rank_processes import rank_main


def draws(generator: torch.Generator) -> list[float]:
    return [random.random(), float(np.random.rand()), float(np.random.randn()),
            float(torch.rand(())), float(torch.rand((), generator=generator))]


def _accelerator(rank: int) -> tuple[Accelerator, torch.Generator]:
    accelerator = Accelerator(cpu=True)
    assert accelerator.process_index == rank, (accelerator.process_index, rank)
    generator = torch.Generator()
    register(generator)
    repro_accelerate.register(accelerator)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    assert model is not None
    return accelerator, generator


def save(rank: int, world: int, directory: Path) -> dict[str, Any]:
    accelerator, generator = _accelerator(rank)
    seed = 100 + rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    generator.manual_seed(seed)
    np.random.randn()
    accelerator.save_state(str(directory / "checkpoint"))
    return {"saved": draws(generator), "processes": accelerator.num_processes}


def load(rank: int, world: int, directory: Path) -> dict[str, Any]:
    accelerator, generator = _accelerator(rank)
    random.seed(0)
    torch.manual_seed(0)
    generator.manual_seed(0)
    accelerator.load_state(str(directory / "checkpoint"))
    return {"loaded": draws(generator)}


def one_process(rank: int, world: int, directory: Path) -> dict[str, Any]:
    """One process: another number of processes, a missing file, a hook removed."""
    accelerator, generator = _accelerator(rank)
    out: dict[str, Any] = {}
    try:
        accelerator.load_state(str(directory / "checkpoint"))
    except ValueError as exc:
        out["resized"] = str(exc)
    accelerator.save_state(str(directory / "single"))
    repro_accelerate.state_path(directory / "single", 0).unlink()
    try:
        accelerator.load_state(str(directory / "single"))
    except FileNotFoundError as exc:
        out["missing"] = str(exc)
    # without the hooks, accelerate's own checkpoint leaves the registered generator out
    unhooked = Accelerator(cpu=True)
    unhooked.prepare(torch.nn.Linear(2, 2))
    generator.manual_seed(5)
    unhooked.save_state(str(directory / "unhooked"))
    expected = float(torch.rand((), generator=generator))
    generator.manual_seed(6)
    unhooked.load_state(str(directory / "unhooked"))
    out["unhooked_restores_generator"] = float(torch.rand((), generator=generator)) == expected
    return out


if __name__ == "__main__":
    rank_main({"save": save, "load": load, "one_process": one_process})
