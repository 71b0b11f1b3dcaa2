"""A small training run with dropout, augmentation and shuffling, stopped and resumed.

Imported by tests/state/test_snapshot.py, and run as a fresh process to resume:
``python -m tests.resume_training CHECKPOINT STEPS OUTPUT``.
"""

from __future__ import annotations

import random
import sys
from typing import Any

import numpy as np
import torch

from repro_ctx import RNGState, register

SAMPLES = 24
BATCH = 6
STEPS_PER_EPOCH = SAMPLES // BATCH


class NoisyDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Fixed data, augmented on every access with NumPy and ``random`` noise."""

    def __init__(self) -> None:
        data = torch.Generator().manual_seed(1234)
        self.x = torch.randn(SAMPLES, 8, generator=data)
        self.y = torch.randint(0, 2, (SAMPLES,), generator=data)

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.from_numpy(np.random.normal(0.0, 0.1, 8)).float()
        scale = 1.0 + random.uniform(-0.1, 0.1)
        return self.x[index] * scale + noise, self.y[index]


def build() -> tuple[Any, Any, Any, torch.Generator]:
    """Model, optimizer and a shuffling loader whose generator is registered."""
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 2)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    generator = torch.Generator()
    register(generator)
    loader = torch.utils.data.DataLoader(
        NoisyDataset(), batch_size=BATCH, shuffle=True, generator=generator
    )
    return model, optimizer, loader, generator


def train(model: Any, optimizer: Any, loader: Any, start: int, stop: int) -> None:
    """Steps ``start`` to ``stop``; both are whole epochs."""
    assert start % STEPS_PER_EPOCH == 0
    assert stop % STEPS_PER_EPOCH == 0
    model.train()
    for _epoch in range(start // STEPS_PER_EPOCH, stop // STEPS_PER_EPOCH):
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def weights(model: Any) -> bytes:
    return b"".join(p.detach().numpy().tobytes() for p in model.parameters())


def resume(checkpoint: str, start: int, stop: int) -> bytes:
    """Load model, optimizer and RNG state (weights_only) and train on."""
    import torch._inductor.config  # the state records inductor's deterministic flag

    model, optimizer, loader, _generator = build()
    saved = torch.load(checkpoint, weights_only=True)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    skipped = RNGState.from_state_dict(saved["rng"]).restore()
    assert skipped == []
    train(model, optimizer, loader, start, stop)
    return weights(model)


if __name__ == "__main__":
    path, start, stop, output = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    with open(output, "wb") as out:
        out.write(resume(path, start, stop))
