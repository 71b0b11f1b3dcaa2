"""``ReproCallback`` for Lightning: a scoped fit, seeded workers, every rank's streams saved.

Lightning 2.x checkpoints carry no RNG state, and ``seed_everything`` seeds
once and never undoes it. This callback:

* opens a ``deterministic(...)`` scope in ``setup`` and closes it in
  ``teardown``, or in ``on_exception`` when the run raises, so every RNG,
  flag and environment variable is back as it was when the Trainer returns;
* seeds DataLoader workers per rank and epoch: for the scope's duration it
  sets ``PL_SEED_WORKERS=1`` (and ``PL_GLOBAL_SEED``), so Lightning gives
  every loader without a ``worker_init_fn`` its own per-rank worker seeding,
  from the epoch's base seed, before it starts the first worker (no callback
  hook runs that early);
* writes every rank's state into the checkpoint: ``state_dict`` runs on
  every rank and gathers all ranks' states into one entry (``rank_states``),
  which rank 0 writes;
* restores this rank's streams when a fit resumes from ``ckpt_path``, as
  Lightning loads the checkpoint, before it creates the resumed epoch's
  data iterator.

Imports Lightning; ``import repro_ctx`` never imports this module.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch import Callback

from ..core.source import Algorithms
from ..scopes.deterministic import deterministic
from ..sources.registry import registered
from ..state.snapshot import capture
from .rank_states import gather_states, restore_own
from .scope_settings import ScopeSettings

_ENV = ("PL_SEED_WORKERS", "PL_GLOBAL_SEED")
_VERSION = 1


def _loaders(obj: object) -> Iterator[Any]:
    """The DataLoaders in what ``trainer.train_dataloader`` returns (one, or a collection)."""
    from torch.utils.data import DataLoader

    if isinstance(obj, DataLoader):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _loaders(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _loaders(value)


def _generators(loader: Any) -> list[Any]:
    """The torch generators a loader draws from besides the global one (its own, its sampler's)."""
    found = [loader.generator, getattr(loader.sampler, "generator", None),
             getattr(getattr(loader.batch_sampler, "sampler", None), "generator", None)]
    out: list[Any] = []
    for generator in found:
        if generator is not None and all(generator is not seen for seen in out):
            out.append(generator)
    return out


class ReproCallback(Callback):
    """Scope every ``fit``, ``validate``, ``test`` and ``predict`` in ``deterministic(seed, ...)``
    and make ``ckpt_path=`` resume every rank on the streams it stopped with.

    The keyword options are ``deterministic``'s and are checked here, before
    any run. ``strict`` is ``RNGState.restore``'s on resume: with ``True`` a
    checkpoint that does not match this process (another set of registered
    generators, another number of CUDA devices) raises and restores nothing.

    Put it first in ``callbacks=``: a callback that draws in a hook before it
    would draw outside the restored streams.
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
        self._env: dict[str, str | None] = {}
        self._stage: str | None = None
        self._restored = False
        self._warned: set[str] = set()

    # -- the scope ---------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Lightning's hook before fit, validate, test or predict: opens the scope."""
        self._close(None)  # a scope a previous run could not close (its on_exception never ran)
        self._env = {name: os.environ.get(name) for name in _ENV}
        scope = self._settings.open()
        self._scope, self._stage, self._restored = scope, stage, False
        os.environ["PL_SEED_WORKERS"] = "1"
        if self.seed is not None:  # DistributedSampler's default seed
            os.environ["PL_GLOBAL_SEED"] = str(self.seed)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Lightning's hook after the stage: closes the scope, so everything is back."""
        self._close(None)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Lightning's hook when the run raises (no teardown follows): closes the scope."""
        self._close(exception)

    def _close(self, error: BaseException | None) -> None:
        scope, self._scope = self._scope, None
        if scope is None:
            return
        try:
            scope.stop(error)
        finally:
            for name, value in self._env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._env = {}

    # -- checkpoints ---------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Every rank's RNG state, gathered on every rank (Lightning calls this on all of them)."""
        return {"version": _VERSION, "rank_states": gather_states(capture())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore this rank's streams from a checkpoint a fit resumes from."""
        if self._stage != "fit":  # validate/test/predict on a checkpoint: the scope's seed
            return
        if not isinstance(state_dict, dict) or state_dict.get("version") != _VERSION:
            raise ValueError(f"unsupported ReproCallback checkpoint state (expected version "
                             f"{_VERSION}, got {type(state_dict).__name__})")
        skipped = restore_own(state_dict.get("rank_states"), strict=self.strict)
        if skipped:
            warnings.warn("ReproCallback restored the checkpoint's RNG state except: "
                          + "; ".join(skipped), RuntimeWarning, stacklevel=2)
        self._restored = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Lightning's hook as training starts: warns about a checkpoint without our state."""
        if trainer.ckpt_path is not None and not self._restored:
            self._warn("no-state", f"the checkpoint {trainer.ckpt_path} holds no ReproCallback "
                       "state (it was written without this callback): the resumed streams "
                       "start from the seed, not where the run stopped")

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Say once what a resume from this checkpoint cannot make exact."""
        mine = registered()
        for loader in _loaders(trainer.train_dataloader):
            if loader.num_workers > 0 and loader.persistent_workers:
                self._warn("persistent", "a train DataLoader has persistent_workers=True: its "
                           "workers' streams run on across epochs and are not in the "
                           "checkpoint, so a resumed run's workers start afresh")
            if any(all(g is not obj for obj in mine) for g in _generators(loader)):
                self._warn("generator", "a train DataLoader draws from a generator of its own "
                           "that is not register()ed, so the checkpoint cannot restore it: "
                           "register() it, or leave generator=None so the global stream, which "
                           "is restored, drives the shuffling")

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"ReproCallback: {message}", RuntimeWarning, stacklevel=3)

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
