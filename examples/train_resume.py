"""Train with a scope per step and seeded DataLoader workers; checkpoint; resume bit for bit.

    python examples/train_resume.py --out full.pt --checkpoint ckpt.pt  # 4 epochs; ckpt after 2
    python examples/train_resume.py --out resumed.pt --resume ckpt.pt   # new process: epochs 3-4

Both runs end with the same weights, bit for bit. What makes that hold:

* each step runs in ``deterministic(seed=step)``: its dropout masks depend on
  the step number only, and nothing a step draws leaks into the next;
* ``dataloader_kwargs`` seeds the workers' augmentation per worker and epoch
  from the loader's generator, which is registered, so the checkpoint's
  ``capture()`` carries it and the resumed run shuffles and augments the
  next epochs as the uninterrupted run did;
* the model and the optimizer (momentum buffers) go into the checkpoint too.
"""

from __future__ import annotations

import argparse
import hashlib

import torch
from torch.utils.data import DataLoader, Dataset

from repro_ctx import RNGState, capture, dataloader_kwargs, deterministic, register

EPOCHS = 4
CHECKPOINT_EPOCH = 2


class NoisyPoints(Dataset):
    """A small synthetic regression set; each sample gets fresh noise in the worker."""

    def __init__(self, size: int = 64) -> None:
        data = torch.Generator().manual_seed(1234)
        self.x = torch.randn(size, 8, generator=data)
        self.y = self.x @ torch.randn(8, 1, generator=data)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index] + 0.01 * torch.randn(8), self.y[index]  # augmentation


def build() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    with deterministic(seed=0):  # the same initial weights in every process
        model = torch.nn.Sequential(
            torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(32, 1)
        )
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def train(args: argparse.Namespace) -> None:
    model, optimizer = build()
    loader = DataLoader(NoisyPoints(), batch_size=16, shuffle=True, num_workers=2,
                        **dataloader_kwargs(seed=0))
    register(loader.generator)  # shuffling and the workers' seeds come from it
    first_epoch = 0
    if args.resume:
        checkpoint = torch.load(args.resume, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        RNGState.from_state_dict(checkpoint["rng"]).restore()
        first_epoch = checkpoint["epoch"]
    steps_per_epoch = len(loader)
    for epoch in range(first_epoch, EPOCHS):
        for index, (x, y) in enumerate(loader):
            with deterministic(seed=epoch * steps_per_epoch + index):  # one scope per step
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                optimizer.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.6f}")
        if args.checkpoint and epoch + 1 == CHECKPOINT_EPOCH:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "epoch": epoch + 1, "rng": capture().state_dict()}, args.checkpoint)
    torch.save(model.state_dict(), args.out)
    weights = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    print(f"weights sha256 {hashlib.sha256(weights).hexdigest()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where to save the final weights")
    parser.add_argument("--checkpoint", help=f"save a checkpoint after epoch {CHECKPOINT_EPOCH}")
    parser.add_argument("--resume", help="continue from this checkpoint")
    train(parser.parse_args())


if __name__ == "__main__":
    main()
