"""DataLoader workers: streams differ across workers, epochs and ranks, and repeat across runs."""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import repro_ctx
from repro_ctx import dataloader_kwargs, deterministic, register, seed_worker, unregister
from repro_ctx.core.seed import numpy_legacy_seed
from repro_ctx.state.workers import WorkerInit, worker_seed
from tests.global_state import rng_state
from tests.worker_dataset import COLUMNS, DrawsDataset, epochs

DRAWS = range(COLUMNS.index("random"), len(COLUMNS))


@pytest.fixture(autouse=True)
def _isolate_rng() -> Iterator[None]:
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        yield


def _loader(
    dataset: DrawsDataset, context: str, persistent: bool, **kwargs: Any
) -> DataLoader[Any]:
    return DataLoader(dataset, batch_size=2, shuffle=True, num_workers=2,
                      multiprocessing_context=context, persistent_workers=persistent, **kwargs)


@pytest.fixture
def dataset() -> Iterator[DrawsDataset]:
    """One dataset per test: its generator's registration (and so its stream key) is fixed."""
    data = DrawsDataset()
    yield data
    unregister(data.generator)


def _run(dataset: DrawsDataset, context: str, persistent: bool, seed: int = 0
         ) -> list[list[list[float]]]:
    return epochs(_loader(dataset, context, persistent, **dataloader_kwargs(seed)))


def _column(rows: list[list[float]], name: str, worker: int | None = None) -> list[float]:
    index = COLUMNS.index(name)
    return [row[index] for row in rows if worker is None or row[1] == worker]


@pytest.mark.parametrize("persistent", [False, True], ids=["fresh-workers", "persistent"])
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_worker_streams_differ_across_workers_and_epochs_and_repeat(
    dataset: DrawsDataset, context: str, persistent: bool
) -> None:
    first = _run(dataset, context, persistent)
    assert _run(dataset, context, persistent) == first  # reproducible from run to run
    for rows in first:
        assert sorted(_column(rows, "worker")) == [0.0] * 4 + [1.0] * 4
        for name in COLUMNS[2:]:
            values = _column(rows, name)
            assert len(set(values)) == len(values), (name, "a draw repeats across workers")
            assert _column(rows, name, 0)[0] != _column(rows, name, 1)[0]
        assert not set(_column(rows, "random")) & set(_column(rows, "numpy"))
    for name in COLUMNS[2:]:
        assert not set(_column(first[0], name)) & set(_column(first[1], name)), (
            name, "a draw repeats across epochs")


def test_another_seed_gives_other_streams(dataset: DrawsDataset) -> None:
    assert _run(dataset, "fork", False, seed=1)[0] != _run(dataset, "fork", False, seed=0)[0]


def test_without_seed_worker_registered_generators_repeat_across_workers(
    dataset: DrawsDataset,
) -> None:
    """The control: what the guarantee prevents (the test above would fail without it)."""
    generator = torch.Generator().manual_seed(0)
    rows = epochs(_loader(dataset, "fork", False, generator=generator), count=1)[0]
    assert _column(rows, "registered", 0) == _column(rows, "registered", 1)


# --------------------------------------------------------------------------
# In process, with a faked worker: what seed_worker derives and seeds
# --------------------------------------------------------------------------


def _fake_worker(monkeypatch: pytest.MonkeyPatch, worker_id: int, base: int) -> None:
    info = SimpleNamespace(id=worker_id, seed=base + worker_id, num_workers=4, dataset=None)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)


def _worker_state(monkeypatch: pytest.MonkeyPatch, worker_id: int, base: int, **kwargs: Any
                  ) -> tuple[dict[str, Any], list[float]]:
    _fake_worker(monkeypatch, worker_id, base)
    seed_worker(worker_id, **kwargs)
    return rng_state(), _draws_of_registered()


_registered_generator = torch.Generator()


def _draws_of_registered() -> list[float]:
    return torch.rand(2, generator=_registered_generator).tolist()


@pytest.fixture
def registered_generator() -> Iterator[None]:
    register(_registered_generator)
    yield
    unregister(_registered_generator)


@pytest.mark.usefixtures("registered_generator")
def test_seed_worker_seeds_every_source_from_its_own_worker_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RANK", "3")
    state, registered_draws = _worker_state(monkeypatch, 1, 1000, seed=7)

    def seed_of(source: str) -> int:
        return worker_seed(7, 1000, 1, 3, source)

    assert state["random"] == random.Random(seed_of("random")).getstate()
    legacy = np.random.RandomState(numpy_legacy_seed(seed_of("numpy.random (global)")))
    assert state["numpy"] == rng_state_of(legacy)
    torch_state = torch.Generator().manual_seed(seed_of("torch (cpu)")).get_state()
    assert state["torch"] == torch_state.numpy().tobytes()
    with deterministic(seed_of("registered generators"), algorithms=None, benchmark=None,
                       tf32=None):
        assert _draws_of_registered() == registered_draws


def rng_state_of(legacy: np.random.RandomState) -> tuple[Any, ...]:
    public = legacy.get_state(legacy=False)
    return (public["state"]["key"].tobytes(), public["state"]["pos"], public["has_gauss"],
            public["gauss"])


@pytest.mark.usefixtures("registered_generator")
def test_every_input_of_the_worker_seed_matters(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = _worker_state(monkeypatch, 0, 2**40, seed=5, rank=0)
    assert _worker_state(monkeypatch, 0, 2**40, seed=5, rank=0) == reference
    others = [
        _worker_state(monkeypatch, 1, 2**40, seed=5, rank=0),  # worker
        _worker_state(monkeypatch, 0, 2**40 + 1, seed=5, rank=0),  # epoch base
        _worker_state(monkeypatch, 0, 2**40, seed=6, rank=0),  # seed
        _worker_state(monkeypatch, 0, 2**40, seed=5, rank=1),  # rank
    ]
    for other in others:
        assert other[0]["random"] != reference[0]["random"]
        assert other[0]["numpy"] != reference[0]["numpy"]
        assert other[0]["torch"] != reference[0]["torch"]
        assert other[1] != reference[1]


def test_worker_seeds_do_not_collide_across_fields() -> None:
    seeds = {
        worker_seed(0, 2**32, 0, 0, "random"), worker_seed(0, 0, 1, 0, "random"),
        worker_seed(0, 1, 0, 0, "random"), worker_seed(0, 0, 0, 1, "random"),
        worker_seed(1, 0, 0, 0, "random"), worker_seed(0, 0, 0, 0, "random"),
        worker_seed(0, 2**64 - 1, 0, 0, "random"),
        worker_seed(0, 2**32 - 1, 2**32 - 1, 0, "random"),
        worker_seed(0, 0, 0, 0, "torch (cpu)"),
    }
    assert len(seeds) == 9
    assert worker_seed(3, -1, 0, 0, "x") == worker_seed(3, 2**64 - 1, 0, 0, "x")


@pytest.mark.usefixtures("registered_generator")
def test_seed_worker_uses_the_rank_of_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "2")
    implicit = _worker_state(monkeypatch, 0, 10)
    assert _worker_state(monkeypatch, 0, 10, rank=2) == implicit
    assert _worker_state(monkeypatch, 0, 10, seed=0, rank=0) != implicit


def test_seed_worker_outside_a_worker_or_with_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    before = rng_state()
    with pytest.raises(RuntimeError, match="worker_init_fn"):
        seed_worker(0)
    _fake_worker(monkeypatch, 1, 0)
    with pytest.raises(ValueError, match="not this worker's id 1"):
        seed_worker(0)
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_worker(1, seed="0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        seed_worker(1, seed=-1)
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\*\*32\)"):
        seed_worker(1, rank=-1)
    with pytest.raises(ValueError, match="rank must be an int"):
        seed_worker(1, rank=True)
    assert rng_state() == before  # nothing changed


def test_dataloader_kwargs() -> None:
    kwargs = dataloader_kwargs(42)
    assert set(kwargs) == {"generator", "worker_init_fn"}
    assert kwargs["generator"].initial_seed() == 42
    assert isinstance(kwargs["worker_init_fn"], WorkerInit)
    assert kwargs["worker_init_fn"].seed == 42
    assert "seed=42" in repr(kwargs["worker_init_fn"])
    with pytest.raises(ValueError, match=r"\[0, 2\*\*64\)"):
        dataloader_kwargs(2**64)
    with pytest.raises(TypeError):
        dataloader_kwargs(1.5)  # type: ignore[arg-type]
    assert repro_ctx.seed_worker is seed_worker
    assert repro_ctx.dataloader_kwargs is dataloader_kwargs


def test_worker_init_binds_the_parents_rank_when_pickled_for_spawned_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RANK", "3")
    spawned = pickle.loads(pickle.dumps(WorkerInit(5)))
    assert (spawned.seed, spawned.rank) == (5, 3)
    explicit = pickle.loads(pickle.dumps(WorkerInit(5, rank=1)))
    assert explicit.rank == 1
    with pytest.raises(ValueError, match="rank"):
        WorkerInit(5, rank=2**32)


@pytest.mark.usefixtures("registered_generator")
def test_worker_init_seeds_like_seed_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    expected = _worker_state(monkeypatch, 1, 99, seed=4, rank=1)
    _fake_worker(monkeypatch, 1, 99)
    WorkerInit(4)(1)
    assert (rng_state(), _draws_of_registered()) == expected
