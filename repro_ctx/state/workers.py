"""Seeding DataLoader workers: a different, reproducible stream per worker, epoch and rank.

torch gives worker ``i`` the seed ``base + i``, where ``base`` is drawn from
the loader's generator each time an epoch's iterator is created, and seeds
``random``, NumPy and torch from it. Registered generators are not seeded at
all (every worker repeats the parent's stream: the duplicated-augmentation
bug), and every rank of a distributed job repeats the same streams.

``seed_worker`` seeds every RNG source a scope covers (``random``, NumPy's
global state, torch CPU and accelerators, registered generators) from
``SeedSequence(seed, spawn_key=(WORKER_KEY, base, worker id, rank, source))``,
through the sources' own ``seed``.

Epochs: without ``persistent_workers`` each epoch starts new workers with a
new ``base``. With ``persistent_workers=True`` the workers, and ``base``,
live for the whole run and ``seed_worker`` runs once; each epoch continues
the worker's streams where the previous one stopped, which differs from it
and is as reproducible as the order in which indices reach the workers
(fixed for map-style datasets).
"""

from __future__ import annotations

import zlib
from typing import Any, Final

from ..core import scope as _scope
from ..core.seed import WORKER_KEY, check_seed, current_rank
from ..core.source import Plan
from ..sources.default_set import default_sources
from ..sources.environment import EnvironmentSource

_U32: Final = 2**32
_U64: Final = 2**64


def _check_index(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _U32:
        raise ValueError(f"{what} must be an int in [0, 2**32), got {value!r}")
    return value


def worker_seed(seed: int, base: int, worker_id: int, rank: int, stream: str) -> int:
    """The 64-bit seed of one RNG source (``stream``: its name) in one worker.

    Independent for every distinct argument tuple: every field of the spawn
    key has a fixed width (``base`` takes two 32-bit words), and each source
    gets its own stream, so that, say, ``random`` and NumPy, both Mersenne
    Twisters, never draw the same numbers.
    """
    import numpy as np

    base %= _U64
    key = (WORKER_KEY, base % _U32, base // _U32, worker_id, rank, zlib.crc32(stream.encode()))
    words = np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)
    return int(words[0])


def _leave_flags(seed: int) -> Plan:
    return Plan(seed=seed, algorithms=None, benchmark=None, tf32=None,
                fill_uninitialized_memory=None)


def seed_worker(worker_id: int, *, seed: int = 0, rank: int | None = None) -> None:
    """Seed this DataLoader worker's RNGs; pass it as ``worker_init_fn``.

    ``seed`` is mixed with torch's per-epoch ``base`` seed (which comes from
    the loader's ``generator``), the worker id and the torch.distributed rank
    (``rank=None``: this process's rank, see ``current_rank``). Each source
    is seeded by its own ``seed`` with ``worker_seed(..., source.name)``;
    flags and environment variables are left alone.
    ``dataloader_kwargs(seed)`` binds ``seed`` and the rank for you.
    """
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    if info is None:
        raise RuntimeError(
            "seed_worker() runs inside a DataLoader worker: pass it as "
            "DataLoader(..., worker_init_fn=seed_worker) or use dataloader_kwargs(seed)"
        )
    if worker_id != info.id:
        raise ValueError(f"worker_id {worker_id!r} is not this worker's id {info.id}")
    seed = check_seed(seed)
    rank = _check_index(current_rank() if rank is None else rank, "rank")
    base, worker = int(info.seed) - int(info.id), int(info.id)
    with _scope._lock:
        for source in default_sources():
            if not isinstance(source, EnvironmentSource):
                plan = _leave_flags(worker_seed(seed, base, worker, rank, source.name))
                source.seed(source.capture(), plan)


class WorkerInit:
    """``worker_init_fn`` bound to a seed, and to the rank of the process that starts workers.

    Spawned workers are not part of the process group; they get the parent's
    rank through pickling, taken when the workers start.
    """

    __slots__ = ("rank", "seed")

    def __init__(self, seed: int, rank: int | None = None) -> None:
        self.seed = check_seed(seed)
        self.rank = None if rank is None else _check_index(rank, "rank")

    def __call__(self, worker_id: int) -> None:
        seed_worker(worker_id, seed=self.seed, rank=self.rank)

    def __reduce__(self) -> tuple[Any, tuple[int, int]]:
        return (WorkerInit, (self.seed, current_rank() if self.rank is None else self.rank))

    def __repr__(self) -> str:
        return f"WorkerInit(seed={self.seed!r}, rank={self.rank!r})"


def dataloader_kwargs(seed: int) -> dict[str, Any]:
    """``generator=`` and ``worker_init_fn=`` for ``torch.utils.data.DataLoader``.

    The generator (seeded with ``seed``) drives shuffling and each epoch's
    worker base seed, so it is shared by every rank; the workers' streams
    also depend on the rank. ``DataLoader(dataset, **dataloader_kwargs(0))``.
    """
    seed = check_seed(seed)
    import torch

    generator = torch.Generator()
    generator.manual_seed(seed)
    return {"generator": generator, "worker_init_fn": WorkerInit(seed)}
