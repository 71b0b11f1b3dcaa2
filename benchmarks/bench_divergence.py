"""What recording every op costs: find_divergence's runs against plain runs, measured in one run.

Run: python benchmarks/bench_divergence.py [--rounds N] [--threads N]   (medians, ratios)

One torch thread by default: on a shared 2-core machine, two OpenMP threads
spinning against other processes made the plain step 10x slower and the
ratios meaningless.

Two small CPU training steps, each building its model, drawing its data and
taking two SGD steps (forward, backward, update), as ``find_divergence``
needs ``fn`` to do:

* MLP: 64 -> 256 -> 256 -> 10 with dropout, batch 64;
* CNN: two 3x3 convs (3 -> 16 -> 32 channels), pooling and a linear head,
  batch 32 of 3x32x32.

Contenders, timed in interleaved rounds (medians per call):

* ``plain``: the step, no scope;
* ``in scope``: the step inside ``deterministic(0)`` (the baseline for the
  ratios: every find_divergence run is one);
* ``recorded run``: one run with every op recorded and each output hashed
  (what each of find_divergence's runs costs);
* ``replay``: one run as find_divergence replays it after a divergence
  (op in the middle): it also notes which op wrote each storage, and hashes
  that op's inputs, for the cause;
* ``find_divergence``: the whole call, two runs compared (no divergence here,
  so no replays).

A third workload diverges (OS noise added to the MLP's input), so
``find_divergence`` runs twice and replays twice, then names the cause:
the cost of a report with a cause, against the same step in a scope.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro_ctx import deterministic, find_divergence
from repro_ctx.diagnose.op_recorder import record_run


def mlp_step() -> None:
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Dropout(0.1),
        torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10),
    )
    _train(model, torch.randn(64, 64), torch.randint(0, 10, (64,)))


def cnn_step() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10),
    )
    _train(model, torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,)))


def noisy_mlp_step() -> None:
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Dropout(0.1),
        torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10),
    )
    noise = torch.tensor(list(os.urandom(64)), dtype=torch.float32) * 1e-3
    _train(model, torch.randn(64, 64) + noise, torch.randint(0, 10, (64,)))


def _train(model: torch.nn.Module, data: torch.Tensor, target: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(data), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def medians(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call, contenders interleaved so that noise hits them alike."""
    for fn in contenders.values():
        for _ in range(2):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rounds = args.rounds
    torch.set_num_threads(args.threads)
    scope = deterministic(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, "
          f"{rounds} rounds, medians")
    for label, step in (("MLP training step", mlp_step), ("CNN training step", cnn_step)):

        def in_scope(step: Callable[[], None] = step) -> None:
            with scope:
                step()

        def recorded(step: Callable[[], None] = step) -> None:
            record_run(step, (), scope)

        ops = len(record_run(step, (), scope).ops)

        def replay(step: Callable[[], None] = step, middle: int = ops // 2) -> None:
            record_run(step, (), scope, capture_at=middle)

        def whole(step: Callable[[], None] = step) -> None:
            assert find_divergence(step).matched

        result = medians(
            {"plain": step, "in scope": in_scope, "recorded run": recorded, "replay": replay,
             "find_divergence": whole},
            rounds,
        )
        _show(f"{label} ({ops} ops recorded per run)", result)

    def in_scope_noisy() -> None:
        with scope:
            noisy_mlp_step()

    def diverging() -> None:
        report = find_divergence(noisy_mlp_step)
        assert report.cause is not None
        assert report.cause.kind == "os_entropy"

    _show("MLP step with OS noise in its input (a divergence: 2 runs, 2 replays, the cause)",
          medians({"in scope": in_scope_noisy, "find_divergence": diverging}, rounds))


def _show(title: str, result: dict[str, float]) -> None:
    base = result["in scope"]
    print(f"\n{title}")
    for name, value in result.items():
        print(f"  {name:<16} {value * 1e3:9.2f} ms   {value / base:6.2f}x in scope")


if __name__ == "__main__":
    main()
