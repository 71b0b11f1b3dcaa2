"""A Lightning ``Trainer.fit`` inside a scope: the same weights from every fit, nothing left behind.

    python examples/lightning_fit.py

Lightning's own ``seed_everything`` seeds once and never undoes it; a scope
seeds, turns on deterministic algorithms for the fit, and gives the process
back every RNG and flag afterwards: what runs next (an evaluation, another
fit) is not affected by how much the fit drew.
"""

from __future__ import annotations

import logging
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from repro_ctx import capture, dataloader_kwargs, deterministic


class Regressor(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1)
        )

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def fit() -> torch.Tensor:
    """Build, train for two epochs on synthetic data, and return the flat weights."""
    with deterministic(seed=0):
        x = torch.randn(64, 8)
        data = TensorDataset(x, x.sum(dim=1, keepdim=True))
        loader = DataLoader(data, batch_size=16, shuffle=True, **dataloader_kwargs(seed=0))
        model = Regressor()
        trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        trainer.fit(model, loader)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # its tips and banners
    warnings.filterwarnings("ignore", module="lightning")  # tips about workers and GPUs
    before = capture()
    first, second = fit(), fit()
    assert torch.equal(first, second), "two fits in the same scope gave different weights"
    changed = before.diff(capture())
    assert not changed, f"the fits left state behind: {changed}"
    print(f"two fits, bitwise-equal weights (sum {first.sum().item():.6f}); "
          "every RNG and flag restored")


if __name__ == "__main__":
    main()
