"""Scope entry plus exit on CPU, against the peers, measured in one run.

Run: python benchmarks/bench_scope.py   (prints medians and ratios)

Contenders (all seed 0, all on CPU):
* repro_ctx ``with deterministic(seed=0): pass``: every RNG source, every
  torch flag, the environment variables;
* ``torch.random.fork_rng(devices=[])`` with ``torch.manual_seed(0)`` inside:
  torch CPU only;
* Lightning's ``isolate_rng()`` with ``seed_everything(0)`` inside (when
  lightning is installed): random, NumPy, torch;
* the bare public-API copy, seed and restore of random, NumPy's global state
  and torch's CPU generator (``getstate``/``seed``/``setstate`` and friends).
"""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import environment_note, per_call_medians, print_table

from repro_ctx import deterministic, register, unregister


def bare_public_api() -> None:
    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(th)


def main() -> None:
    scope = deterministic(seed=0)

    def repro_ctx_scope() -> None:
        with scope:
            pass

    def fork_rng_pair() -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)

    contenders = {
        "repro_ctx deterministic(0)": repro_ctx_scope,
        "fork_rng + manual_seed": fork_rng_pair,
        "bare public get/seed/set": bare_public_api,
    }
    try:
        from lightning.fabric.utilities.seed import seed_everything
        from lightning.pytorch.utilities.seed import isolate_rng

        logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.ERROR)

        def lightning_pair() -> None:
            with isolate_rng():
                seed_everything(0, verbose=False)

        contenders["lightning isolate_rng + seed_everything"] = lightning_pair
    except ImportError:
        print("lightning not installed: its contender is skipped")

    print(f"torch {torch.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    print(environment_note())
    medians = per_call_medians(contenders, calls=500, rounds=15)
    ours = medians["repro_ctx deterministic(0)"]
    print_table("scope enter + exit (median per call)", medians, "fork_rng + manual_seed")
    print("\nratios (repro_ctx / peer):")
    for name, value in medians.items():
        if not name.startswith("repro_ctx"):
            print(f"  vs {name}: {ours / value:.3f}x")

    print("\ncost per registered NumPy Generator")
    counts = (0, 16, 64)
    generators = [np.random.default_rng(i) for i in range(max(counts))]
    per_count: dict[str, float] = {}
    for count in counts:
        for generator in generators[:count]:
            register(generator)
        per_count[f"{count} registered"] = per_call_medians(
            {"scope": repro_ctx_scope}, calls=300, rounds=9
        )["scope"]
        for generator in generators[:count]:
            unregister(generator)
    for name, value in per_count.items():
        print(f"  {name:<14} {value * 1e6:9.2f} us")
    slope = (per_count[f"{counts[-1]} registered"] - per_count["0 registered"]) / counts[-1]
    print(f"  slope: {slope * 1e6:.2f} us per registered generator")


if __name__ == "__main__":
    main()
