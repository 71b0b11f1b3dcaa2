"""``ReproCallback`` for the Hugging Face ``Trainer``: a scoped ``train()`` and exact resume.

What the Trainer does itself (transformers 5.x): ``Trainer.__init__`` calls
``set_seed(args.seed)``; every ``checkpoint-N`` holds ``rng_state.pth`` (or
``rng_state_{rank}.pth``) with Python's, NumPy's, torch's CPU and CUDA
states; on resume inside an epoch it skips the consumed batches with
accelerate's ``skip_first_batches`` and restores that file after fetching
the first batches of the resumed step, at an epoch boundary before the
epoch's data iterator. Registered generators, plugin sources and flags are
not in it, and nothing it seeds or sets is put back after ``train()``.

This callback:

* opens a ``deterministic(...)`` scope in ``on_train_begin`` and closes it in
  ``on_train_end``; the Trainer has no hook for a ``train()`` that raises,
  so ``with callback: trainer.train()`` closes it then (and the next
  ``on_train_begin`` closes a scope an earlier ``train()`` left open);
* in ``on_save`` writes this rank's full state (``capture()``) into the
  checkpoint, ``checkpoint-N/repro_ctx/rng_state_rank{rank}.pt``, on every
  rank;
* on resume restores it where the Trainer's own ``_load_rng_state`` runs, and
  after it: in ``on_step_begin`` of the first resumed step when the
  checkpoint is inside an epoch (after ``skip_first_batches`` and the fetch),
  in ``on_epoch_begin`` when it is at an epoch boundary (before the epoch's
  iterator draws its shuffling and worker seeds).

Imports transformers; ``import repro_ctx`` never imports this module.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..core.source import Algorithms
from ..scopes.deterministic import deterministic
from ..state import distributed
from ..state.distributed import rank_and_world
from ..state.snapshot import capture
from .scope_settings import ScopeSettings

FORMAT: Final = "repro_ctx.integrations.transformers"
VERSION: Final = 1
FOLDER: Final = "repro_ctx"


def _file(checkpoint: str | os.PathLike[str], rank: int) -> Path:
    return Path(checkpoint) / FOLDER / f"rng_state_rank{rank}.pt"


class ReproCallback(TrainerCallback):
    """Scope ``Trainer.train()`` in ``deterministic(seed, ...)`` and resume every rank on
    the streams it had at ``checkpoint-N``.

    The keyword options are ``deterministic``'s and are checked here.
    ``strict`` is ``RNGState.restore``'s on resume. The checkpoint resumed
    from is found as the Trainer finds it: ``args.resume_from_checkpoint``
    when set, else ``output_dir/checkpoint-{global_step}``, which is where
    ``train(resume_from_checkpoint=True)`` and a path under ``output_dir``
    point.
    """

    def __init__(
        self,
        seed: int | None = 0,
        *,
        algorithms: Algorithms = True,
        benchmark: bool | None = False,
        tf32: bool | None = False,
        fill_uninitialized_memory: bool | None = None,
        per_rank: bool = False,
        strict: bool = True,
    ) -> None:
        self._settings = ScopeSettings.checked(
            seed, algorithms=algorithms, benchmark=benchmark, tf32=tf32,
            fill_uninitialized_memory=fill_uninitialized_memory, per_rank=per_rank,
            strict=strict)
        self._scope: deterministic | None = None
        self._pending: dict[str, Any] | None = None
        self._pending_at = ""

    # -- the scope -----------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """The Trainer's hook as ``train()`` starts: checks the checkpoint, opens the scope."""
        self._close(None)  # left open by a train() that raised outside `with callback:`
        pending = self._load(args, state) if state.global_step > 0 else None
        scope = self._settings.open()
        self._scope, self._pending = scope, pending
        if pending is not None:
            inside = not float(pending["epoch"]).is_integer() and not args.ignore_data_skip
            self._pending_at = "step" if inside else "epoch"

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """The Trainer's hook as ``train()`` returns: closes the scope."""
        self._close(None)

    def __enter__(self) -> ReproCallback:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close(exc)

    def _close(self, error: BaseException | None) -> None:
        scope, self._scope, self._pending = self._scope, None, None
        if scope is not None:
            scope.stop(error)

    # -- checkpoints ---------------------------------------------------------------

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Write this rank's state into the checkpoint the Trainer has just written."""
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        rank, _ = rank_and_world()
        path = _file(checkpoint, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "version": VERSION, "global_step": state.global_step,
                "epoch": float(state.epoch or 0.0), "state": distributed.state_dict(capture())}
        partial = path.with_name(path.name + ".partial")
        torch.save(data, partial)
        partial.replace(path)

    def _load(self, args: TrainingArguments, state: TrainerState) -> dict[str, Any] | None:
        """This rank's saved data from the checkpoint being resumed, checked; ``None`` if absent."""
        rank, world = rank_and_world()
        candidates = [Path(args.output_dir) / f"checkpoint-{state.global_step}"]
        if isinstance(args.resume_from_checkpoint, str):
            candidates.insert(0, Path(args.resume_from_checkpoint))
        found = [c for c in candidates if (c / FOLDER).is_dir()]
        if not found:
            warnings.warn(
                f"ReproCallback: resuming at step {state.global_step} from a checkpoint without "
                f"repro_ctx state (looked in {', '.join(str(c) for c in candidates)}): only what "
                "the Trainer restores itself is restored", RuntimeWarning, stacklevel=3)
            return None
        path = _file(found[0], rank)
        if not path.exists():
            others = sorted((found[0] / FOLDER).glob("rng_state_rank*.pt"))
            saved = torch.load(others[0], weights_only=True)["state"].get("world_size") \
                if others else "unknown"
            raise ValueError(f"no RNG state for rank {rank} in {found[0]}: it was saved by a "
                             f"run with world size {saved}; this run has world size {world}")
        data = torch.load(path, weights_only=True)
        if not isinstance(data, dict) or data.get("format") != FORMAT \
                or data.get("version") != VERSION:
            raise ValueError(f"{path} is not a ReproCallback state of version {VERSION}")
        saved_world = data["state"].get("world_size") if isinstance(data["state"], dict) else None
        if saved_world != world:
            raise ValueError(f"{path} was saved by a run with world size {saved_world}; this "
                             f"run has world size {world}. Per-rank streams cannot be mapped "
                             "onto another number of ranks")
        if data["global_step"] != state.global_step:
            raise ValueError(f"{path} was saved at step {data['global_step']}, but the Trainer "
                             f"resumes at step {state.global_step}: not the same checkpoint")
        return data

    def _restore(self, at: str) -> None:
        if self._pending is None or self._pending_at != at:
            return
        pending, self._pending = self._pending, None
        skipped = distributed.load_state_dict(pending["state"], strict=self.strict)
        if skipped:
            warnings.warn("ReproCallback restored the checkpoint's RNG state except: "
                          + "; ".join(skipped), RuntimeWarning, stacklevel=3)

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """The Trainer's hook at each epoch: restores the streams on an epoch-boundary resume."""
        self._restore("epoch")  # an epoch boundary: before the epoch's iterator draws

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """The Trainer's hook at each step: restores the streams on a mid-epoch resume."""
        self._restore("step")  # inside an epoch: after the Trainer's own _load_rng_state

    @property
    def seed(self) -> int | None:
        """The scope's seed."""
        return self._settings.seed

    @property
    def strict(self) -> bool:
        """``RNGState.restore``'s ``strict`` on resume."""
        return self._settings.strict

    def __repr__(self) -> str:
        return f"ReproCallback({self._settings})"
