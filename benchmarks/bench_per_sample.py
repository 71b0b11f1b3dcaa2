"""What ``per_sample`` adds to one sample, against the by-hand recipe, measured in one run.

Run: python benchmarks/bench_per_sample.py   (prints medians, ratios, paired differences)

The dataset's ``__getitem__`` draws one number from ``random``, NumPy and
torch (a small augmentation). Contenders, per sample:

* bare: ``dataset[i]``;
* by hand: ``random.seed(s); np.random.seed(s); torch.manual_seed(s)`` then
  ``dataset[i]``, the usual recipe; it restores nothing, and
  ``torch.manual_seed`` also seeds every accelerator backend;
* by hand, cheapest calls: the same with ``torch.default_generator.manual_seed``;
* ``per_sample``, batched: ``__getitems__`` over batches of 32, what a
  batching DataLoader calls (streams captured and restored once a batch);
* ``per_sample``, one at a time: ``wrapped[i]`` (captured and restored
  around every sample: NumPy's ``get_state`` alone copies 624 words).

"over bare" is the median over rounds of (contender - bare) timed in the
same round, per sample: the figure the 15 us budget is about.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import Contender, environment_note, paired_median, per_call_samples

from repro_ctx import per_sample

BATCH = 32


class Augment:
    def __len__(self) -> int:
        return 1 << 20

    def __getitem__(self, index: int) -> tuple[int, float, float, float]:
        return (index, random.random(), float(np.random.rand()), float(torch.rand(())))


def main() -> None:
    dataset = Augment()
    wrapped = per_sample(dataset, seed=0)
    generator = torch.default_generator
    counter = iter(range(1 << 40))
    batches = iter(range(0, 1 << 40, BATCH))

    def bare() -> None:
        for _ in range(BATCH):
            dataset[next(counter) & 0xFFFFF]

    def by_hand(seed_torch: Callable[[int], object]) -> Callable[[], None]:
        """The recipe, with torch seeded by ``seed_torch``."""

        def recipe() -> None:
            for _ in range(BATCH):
                i = next(counter) & 0xFFFFF
                random.seed(i)
                np.random.seed(i)
                seed_torch(i)
                dataset[i]

        return recipe

    def batched() -> None:
        start = next(batches) & 0xFFFFF
        wrapped.__getitems__(list(range(start, start + BATCH)))

    def one_at_a_time() -> None:
        for _ in range(BATCH):
            wrapped[next(counter) & 0xFFFFF]

    contenders: dict[str, Contender] = {
        "bare": bare,
        "by hand (torch.manual_seed)": by_hand(torch.manual_seed),
        "by hand (cheapest calls)": by_hand(generator.manual_seed),
        "per_sample, batched": batched,
        "per_sample, one at a time": one_at_a_time,
    }
    samples = per_call_samples(contenders, calls=20, rounds=41)
    medians = {name: sorted(values)[len(values) // 2] / BATCH for name, values in samples.items()}
    print(f"per-sample cost, medians of 41 interleaved rounds of {20 * BATCH} samples")
    print(environment_note())
    width = max(len(name) for name in medians)
    hand = medians["by hand (torch.manual_seed)"]
    print(f"  {'contender':<{width}}  {'per sample':>10}  {'over bare':>10}  "
          f"{'x bare':>7}  {'x by hand':>9}")
    for name, value in medians.items():
        over = paired_median(samples, name, "bare") / BATCH
        print(f"  {name:<{width}}  {value * 1e6:7.2f} us  {over * 1e6:7.2f} us  "
              f"{value / medians['bare']:7.2f}  {value / hand:9.3f}")


if __name__ == "__main__":
    main()
