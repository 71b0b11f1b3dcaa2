"""Every process's RNG streams in accelerate's ``save_state``/``load_state`` checkpoints.

``register(accelerator)`` adds a save-state and a load-state pre-hook. In
``save_state`` every process runs the save hook, which writes that process's
``capture()`` to ``repro_ctx_rng_state_{process_index}.pt`` in the checkpoint
folder; in ``load_state`` every process's load hook restores its own file.
``register_for_checkpointing`` would not do: accelerate saves those objects
from the main process only, so every process would resume on the main
process's streams.

What the files add to accelerate's own ``random_states_{i}.pkl``: registered
generators, source plugins and every accelerator generator, read with
``torch.load(weights_only=True)``. accelerate's own loading, which runs after
the pre-hook, writes the same ``random``/NumPy/torch states back (both were
saved at the same moment). The file records the process index and the number
of processes; loading it with another number raises ``ValueError`` naming
both. Flags and environment variables are not restored (see
``RNGState.restore``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import torch
from accelerate import Accelerator
from torch.utils.hooks import RemovableHandle

from ..state.snapshot import RNGState, capture

FORMAT: Final = "repro_ctx.integrations.accelerate"
VERSION: Final = 1


def state_path(directory: str | os.PathLike[str], process_index: int) -> Path:
    """Where process ``process_index``'s RNG state lies in a checkpoint folder."""
    return Path(directory) / f"repro_ctx_rng_state_{process_index}.pt"


class _Hooks:
    """The two hooks of one accelerator, and the handles that remove them."""

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator
        self.handles: tuple[RemovableHandle, RemovableHandle] = (
            accelerator.register_save_state_pre_hook(self.save),
            accelerator.register_load_state_pre_hook(self.load),
        )

    def save(self, models: Any, weights: Any, output_dir: str) -> None:
        accelerator = self.accelerator
        state = capture()  # first: nothing below draws, but be sure
        path = state_path(output_dir, accelerator.process_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save({"format": FORMAT, "version": VERSION,
                    "process_index": accelerator.process_index,
                    "num_processes": accelerator.num_processes,
                    "state": state.state_dict()}, partial)
        partial.replace(path)

    def load(self, models: Any, input_dir: str) -> None:
        accelerator = self.accelerator
        path = state_path(input_dir, accelerator.process_index)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: this checkpoint was saved without "
                "repro_ctx.integrations.accelerate.register(accelerator), or by fewer "
                "processes")
        saved = torch.load(path, weights_only=True)
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ValueError(f"{path} is not a repro_ctx accelerate RNG state")
        if saved.get("version") != VERSION:
            raise ValueError(f"{path}: unsupported version {saved.get('version')!r}; this "
                             f"repro_ctx reads {VERSION}")
        if saved.get("num_processes") != accelerator.num_processes:
            raise ValueError(
                f"this checkpoint's RNG streams were saved by {saved.get('num_processes')!r} "
                f"processes; this run has {accelerator.num_processes}. Per-process streams "
                "cannot be mapped onto another number of processes")
        if saved.get("process_index") != accelerator.process_index:
            raise ValueError(f"{path} holds process {saved.get('process_index')!r}'s state; "
                             f"this is process {accelerator.process_index}")
        RNGState.from_state_dict(saved["state"]).restore()


def register(accelerator: Accelerator) -> tuple[RemovableHandle, RemovableHandle]:
    """Save and restore every process's RNG streams in ``accelerator``'s checkpoints.

    Call it on every process, before ``save_state``/``load_state``. Returns
    the two hooks' handles (``handle.remove()`` takes a hook out again).
    """
    if not isinstance(accelerator, Accelerator):
        raise TypeError(f"register() takes an accelerate.Accelerator, got "
                        f"{type(accelerator).__name__}")
    return _Hooks(accelerator).handles
