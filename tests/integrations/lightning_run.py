"""Lightning fits with ReproCallback, run as fresh processes by test_lightning.py.

``python -m tests.integrations.lightning_run first DIR``: the uninterrupted
four-epoch fit (``DIR/full.pt``), then the same fit crashing at the start of
its third epoch, after the checkpoint of its second (``DIR/crash/epoch=1.ckpt``);
both leave the process's RNG, flags and environment as they found them.

``python -m tests.integrations.lightning_run resume DIR``: that checkpoint
resumed to four epochs (``DIR/resumed.pt``), then resumed once more from a
copy without the callback's state (``DIR/bare.pt``): the control.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from repro_ctx import capture, deterministic
from repro_ctx.integrations.lightning import ReproCallback

EPOCHS = 4


class Augmented(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Fixed samples, augmented on every access with torch, NumPy and ``random`` noise."""

    def __init__(self) -> None:
        data = torch.Generator().manual_seed(1234)
        self.x = torch.randn(48, 8, generator=data)
        self.y = self.x.sum(dim=1, keepdim=True)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = 0.1 * torch.randn(8) + float(np.random.normal()) * 0.05
        sign = -1.0 if random.random() < 0.5 else 1.0
        return sign * (self.x[index] + noise), sign * self.y[index]


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(),
                                       torch.nn.Dropout(0.5), torch.nn.Linear(32, 1))
        self.flags_seen: list[bool] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.flags_seen.append(torch.are_deterministic_algorithms_enabled())
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Crash(L.Callback):
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 2:
            raise RuntimeError("the machine went away")


def fit(folder: Path, *, crash: bool = False, ckpt_path: Path | None = None) -> Net:
    with deterministic(seed=1):  # the same initial weights in every fit
        model = Net()
    loader = DataLoader(Augmented(), batch_size=8, shuffle=True, num_workers=2)
    callbacks: list[L.Callback] = [ReproCallback(seed=0)]
    if crash:
        callbacks.append(Crash())
    callbacks.append(ModelCheckpoint(dirpath=folder, filename="{epoch}", save_top_k=-1))
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False,
                        callbacks=callbacks, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, loader, ckpt_path=ckpt_path)
    return model


def weights(model: Net) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def untouched(before: object) -> None:
    """The process's RNG, flags and environment are as they were before the fit."""
    assert capture().diff(before) == [], capture().diff(before)  # type: ignore[arg-type]
    assert not torch.are_deterministic_algorithms_enabled()
    assert "PL_SEED_WORKERS" not in os.environ
    assert "PL_GLOBAL_SEED" not in os.environ


def first(folder: Path) -> None:
    before = capture()
    model = fit(folder / "full")
    untouched(before)
    assert model.flags_seen
    assert all(model.flags_seen)  # deterministic algorithms in the fit
    torch.save(weights(model), folder / "full.pt")
    try:
        fit(folder / "crash", crash=True)
    except RuntimeError as exc:
        if "went away" not in str(exc):
            raise
    else:
        raise AssertionError("the crashing fit did not crash")
    untouched(before)
    print("first: ok")


def resume(folder: Path) -> None:
    checkpoint = folder / "crash" / "epoch=1.ckpt"
    torch.save(weights(fit(folder / "resumed", ckpt_path=checkpoint)), folder / "resumed.pt")
    bare = torch.load(checkpoint, weights_only=False)
    del bare["callbacks"]["ReproCallback"]
    torch.save(bare, folder / "bare.ckpt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit(folder / "bare", ckpt_path=folder / "bare.ckpt")
    assert any("holds no ReproCallback state" in str(w.message) for w in caught)
    torch.save(weights(model), folder / "bare.pt")
    print("resume: ok")


if __name__ == "__main__":
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    mode, where = sys.argv[1], Path(sys.argv[2])
    {"first": first, "resume": resume}[mode](where)
