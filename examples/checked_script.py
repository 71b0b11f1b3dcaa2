"""A script that ``repro-ctx check`` runs several times, comparing its output and its file.

    repro-ctx check -n 3 --compare out.pt -- python examples/checked_script.py out.pt

``repro-ctx run`` (which ``check`` uses) hands the script its seed
(``REPRO_CTX_SEED``, read by ``env_seed()``) and sets ``PYTHONHASHSEED``, so
even the order of a set of strings, printed below, repeats from run to run.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import repro_ctx


def main(path: str) -> None:
    with repro_ctx.deterministic(seed=repro_ctx.env_seed()):
        model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        inputs = torch.randn(32, 16) + torch.from_numpy(np.random.rand(32, 16)).float()
        predictions = model(inputs).detach()
    torch.save({"predictions": predictions}, path)
    print(f"prediction sum {predictions.sum().item():.8f}")
    print("labels", list({"cat", "dog", "bird", "fish"}))  # set order follows the hash seed


if __name__ == "__main__":
    main(sys.argv[1])
