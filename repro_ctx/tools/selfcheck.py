"""A small training step, run several ways, to show what a scope guarantees."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from ..diagnose.divergence import find_divergence
from ..scopes.deterministic import deterministic


def training_step(device: str = "cpu", steps: int = 3) -> bytes:
    """Train a tiny MLP with dropout on random data; return its weights' bytes.

    Every RNG a real step uses is drawn: data from torch, a shuffle from NumPy
    and Python's ``random``, dropout masks and initialisation from torch.
    """
    import random

    import numpy as np
    import torch

    model = torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Dropout(0.25), torch.nn.Linear(32, 4)
    ).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = torch.randn(64, 16, device=device)
    target = torch.randint(0, 4, (64,), device=device)
    for _ in range(steps):
        order = torch.as_tensor(np.random.permutation(64), device=device)
        batch = order[: 32 + random.randrange(8)]
        loss = torch.nn.functional.cross_entropy(model(data[batch]), target[batch])
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call, unused-ignore]
        optimizer.step()
    return b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())


@dataclass(frozen=True)
class SelfCheck:
    device: str
    first: str
    second: str
    outside: str

    @property
    def deterministic(self) -> bool:
        return self.first == self.second

    @property
    def outside_matches(self) -> bool:
        return self.outside == self.first


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def self_check_devices() -> list[str]:
    """The devices the self-check runs on here: the CPU, and CUDA where present."""
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def run_self_check(device: str = "cpu", seed: int = 0) -> SelfCheck:
    """Two runs inside ``deterministic(seed)`` and one outside any scope."""
    scope: Any = deterministic(seed)
    with scope:
        first = _digest(training_step(device))
    with scope:
        second = _digest(training_step(device))
    outside = _digest(training_step(device))
    return SelfCheck(device, first, second, outside)


def diagnose(device: str = "cpu", seed: int = 0) -> str | None:
    """Where the self-check failed: ``find_divergence``'s fix for the step, if it finds one."""
    report = find_divergence(functools.partial(training_step, device), seed=seed)
    if report.cause is None:
        return None
    return f"{report.cause.fix} ({report.detail})"
