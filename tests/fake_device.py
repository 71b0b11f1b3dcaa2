"""A stand-in for ``torch.cuda``'s lazy initialisation, built on CPU generators.

It follows torch/cuda/__init__.py: seeds queued before initialisation go to
``_lazy_seed_tracker`` (latest seed and seed_all only), other calls to
``_queued_calls``; ``_lazy_init`` creates the generators, runs the plain
queued calls, then the tracker's calls. A never-seeded device starts from a
"random" seed, here a known one so tests can say what no-scope would give.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch._utils import _LazySeedTracker

UNSEEDED_BASE = 1000


class FakeLazyDevice:
    def __init__(self, devices: int = 2) -> None:
        self.devices = devices
        self._initialized = False
        self.bad_fork = False
        self._queued_calls: list[tuple[Callable[[], None], list[str]]] = []
        self._lazy_seed_tracker: Any = _LazySeedTracker()
        self.default_generators: tuple[torch.Generator, ...] = ()
        self.state_reads = 0

    # the parts of torch.cuda that repro_ctx uses
    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return self._initialized and not self.bad_fork

    def _is_in_bad_fork(self) -> bool:
        return self.bad_fork

    def device_count(self) -> int:
        return self.devices

    # the parts users call
    def _lazy_call(self, callable_: Callable[[], None], **kwargs: bool) -> None:
        if self.is_initialized():
            callable_()
        elif kwargs.get("seed_all"):
            self._lazy_seed_tracker.queue_seed_all(callable_, [])
        elif kwargs.get("seed"):
            self._lazy_seed_tracker.queue_seed(callable_, [])
        else:
            self._queued_calls.append((callable_, []))

    def init(self) -> None:
        if self.bad_fork:
            raise RuntimeError("Cannot re-initialize CUDA in forked subprocess")
        if self._initialized:
            return
        self.default_generators = tuple(torch.Generator() for _ in range(self.devices))
        for index, generator in enumerate(self.default_generators):
            generator.manual_seed(UNSEEDED_BASE + index)
        calls = list(self._queued_calls)
        calls.extend(call for call in self._lazy_seed_tracker.get_calls() if call)
        for call, _traceback in calls:
            call()
        self._initialized = True

    def manual_seed_all(self, seed: int) -> None:
        def cb() -> None:
            for generator in self.default_generators:
                generator.manual_seed(seed)

        self._lazy_call(cb, seed_all=True)

    def manual_seed(self, seed: int) -> None:
        def cb() -> None:
            self.default_generators[0].manual_seed(seed)

        self._lazy_call(cb, seed=True)

    def set_rng_state(self, state: torch.Tensor, device: int = 0) -> None:
        def cb() -> None:
            self.default_generators[device].set_state(state)

        cb.__module__ = "fake_device.random"  # as torch.cuda.random's closures are
        self._lazy_call(cb)

    def queue_other(self, log: list[str]) -> None:
        def cb() -> None:
            log.append("other ran")

        self._lazy_call(cb)

    def rand(self, device: int = 0) -> list[float]:
        self.init()
        return torch.rand(3, generator=self.default_generators[device]).tolist()


def expected(seed: int) -> list[float]:
    return torch.rand(3, generator=torch.Generator().manual_seed(seed)).tolist()
