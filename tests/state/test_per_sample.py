"""per_sample: a sample's streams depend on (seed, epoch, index) alone; the process's come back.

DataLoader tests start real worker processes (fork, and spawn for persistent
workers); distributed ranks are DistributedSampler shards, which is all a
rank changes for a map-style dataset.
"""

from __future__ import annotations

import copy
import pickle
import random
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from repro_ctx import per_sample, register, register_source, unregister, unregister_source
from repro_ctx.state.per_sample import PerSample, epoch_keys, sample_seeds
from tests.global_state import rng_state

SIZE = 24
Row = tuple[float, ...]


class Augment(torch.utils.data.Dataset[torch.Tensor]):
    """Item ``i``: ``[i, a draw from random, NumPy, torch, and two normals]`` (importable)."""

    def __len__(self) -> int:
        return SIZE

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index), random.random(), float(np.random.rand()),
                             float(torch.rand(())), float(np.random.randn()),
                             float(torch.randn(()))], dtype=torch.float64)


def _by_index(batches: Any) -> dict[int, Row]:
    out: dict[int, Row] = {}
    for batch in batches:
        for row in batch.reshape(-1, 6).tolist():
            out[int(row[0])] = tuple(row[1:])
    return out


def _epochs(dataset: PerSample[Any], epochs: int, **loader: Any) -> list[dict[int, Row]]:
    generator = torch.Generator().manual_seed(7)
    data = DataLoader(dataset, shuffle=True, generator=generator, **loader)
    out = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        out.append(_by_index(data))
    return out


@pytest.fixture(scope="module")
def reference() -> list[dict[int, Row]]:
    return _epochs(per_sample(Augment(), seed=3), 2, batch_size=5)


# -- the samples depend on (seed, epoch, index) alone ----------------------------------------


def test_a_sample_draws_from_streams_seeded_by_its_seed_epoch_and_index() -> None:
    dataset = per_sample(Augment(), seed=3)
    dataset.set_epoch(2)
    random_seed, numpy_seed, torch_seed, _ = sample_seeds(3, 2, 5)
    row = dataset[5].tolist()
    assert row[1] == random.Random(random_seed).random()
    assert row[2] == np.random.RandomState(numpy_seed).rand()
    assert row[3] == float(torch.rand((), generator=torch.Generator().manual_seed(torch_seed)))


def test_the_same_sample_repeats_in_any_order_and_batch() -> None:
    dataset = per_sample(Augment(), seed=3)
    single = {i: dataset[i].tolist() for i in reversed(range(SIZE))}
    batched = dataset.__getitems__([7, 3, 3, 20])
    assert [row.tolist() for row in batched] == [single[7], single[3], single[3], single[20]]


def test_epochs_and_seeds_give_other_streams() -> None:
    dataset = per_sample(Augment(), seed=3)
    first = dataset[4].tolist()
    dataset.set_epoch(1)
    assert dataset.epoch == 1
    assert dataset[4].tolist()[1:] != first[1:]
    other = per_sample(Augment(), seed=4)
    assert other[4].tolist()[1:] != first[1:]


def test_many_epochs_in_one_wrapper() -> None:
    dataset = per_sample(Augment(), seed=3)
    rows = []
    for epoch in range(12):  # more epochs than the wrapper keeps keys for
        dataset.set_epoch(epoch)
        rows.append(dataset[0].tolist())
    dataset.set_epoch(0)
    assert dataset[0].tolist() == rows[0]
    assert len({tuple(row) for row in rows}) == 12


def test_seeds_within_an_epoch_are_distinct_and_streams_apart() -> None:
    keys = epoch_keys(0, 0)
    assert len(set(keys)) == 4
    seeds = [sample_seeds(0, 0, i) for i in range(5000)]
    for column in range(4):
        assert len({row[column] for row in seeds}) == len(seeds)
    assert epoch_keys(0, 1) != keys
    assert epoch_keys(1, 0) != keys


# -- the process's streams come back -----------------------------------------------------------


def test_the_process_streams_come_back_exactly_after_each_sample_and_batch() -> None:
    np.random.randn()  # an odd number of normals: NumPy's cached Gaussian is set
    before = rng_state()
    dataset = per_sample(Augment(), seed=3)
    dataset[1]
    assert rng_state() == before
    dataset.__getitems__([0, 1, 2])
    assert rng_state() == before
    assert np.random.get_state()[3] == 1  # has_gauss, kept


class Fails(Augment):
    def __getitem__(self, index: int) -> torch.Tensor:
        super().__getitem__(index)
        raise KeyError(index)


def test_the_streams_come_back_when_a_sample_raises() -> None:
    before = rng_state()
    with pytest.raises(KeyError):
        per_sample(Fails(), seed=3).__getitems__([0, 1])
    assert rng_state() == before


def test_registered_generators_and_plugin_sources_are_seeded_per_sample() -> None:
    generator = torch.Generator().manual_seed(99)
    register(generator)

    class Counter:
        name = "per-sample test counter"

        def __init__(self) -> None:
            self.value = -1

        def capture(self) -> int:
            return self.value

        def seed(self, seed: int) -> None:
            self.value = seed

        def restore(self, snapshot: int) -> None:
            self.value = snapshot

    counter = Counter()
    register_source(counter)

    class Uses(Augment):
        def __getitem__(self, index: int) -> torch.Tensor:
            return torch.tensor([float(torch.rand((), generator=generator)), counter.value],
                                dtype=torch.float64)

    try:
        before = generator.get_state()
        dataset = per_sample(Uses(), seed=3)
        rows = [dataset[i].tolist() for i in (0, 1, 0)]
        assert rows[0] == rows[2]
        assert rows[0][0] != rows[1][0]
        assert rows[0][1] != rows[1][1]
        assert rows[0][1] != -1
        assert torch.equal(generator.get_state(), before)
        assert counter.value == -1
        dataset.set_epoch(1)
        assert dataset[0].tolist() != rows[0]
    finally:
        unregister(generator)
        unregister_source(counter)


def test_a_global_state_backed_by_another_bit_generator() -> None:
    mt = np.random.get_bit_generator()
    pcg = np.random.PCG64(5)
    np.random.set_bit_generator(pcg)
    try:
        state = pcg.state
        dataset = per_sample(Augment(), seed=3)
        first, again = dataset[2].tolist(), dataset[2].tolist()
        assert first == again
        assert np.random.get_bit_generator() is pcg
        assert pcg.state == state
    finally:
        np.random.set_bit_generator(mt)


# -- DataLoaders, workers, batch sizes, ranks, resume ----------------------------------------


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
@pytest.mark.parametrize(("workers", "batch"), [(0, 1), (2, 4), (3, 7), (2, 1)])
def test_workers_and_batch_sizes_do_not_change_any_sample(
    reference: list[dict[int, Row]], workers: int, batch: int
) -> None:
    got = _epochs(per_sample(Augment(), seed=3), 2, batch_size=batch, num_workers=workers)
    assert got == reference
    assert got[0] != got[1]


def test_without_batching_a_loader_gets_the_same_samples(
    reference: list[dict[int, Row]],
) -> None:
    got = _epochs(per_sample(Augment(), seed=3), 2, batch_size=None, num_workers=2)
    assert got == reference


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_persistent_workers_see_the_epoch(
    reference: list[dict[int, Row]], context: str
) -> None:
    got = _epochs(per_sample(Augment(), seed=3), 2, batch_size=3, num_workers=2,
                  persistent_workers=True, multiprocessing_context=context)
    assert got == reference


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_any_number_of_ranks_gives_the_same_samples(
    reference: list[dict[int, Row]], ranks: int
) -> None:
    dataset = per_sample(Augment(), seed=3)
    for epoch in range(2):
        dataset.set_epoch(epoch)
        seen: dict[int, Row] = {}
        for rank in range(ranks):
            sampler = DistributedSampler(dataset, num_replicas=ranks, rank=rank, seed=7)
            sampler.set_epoch(epoch)
            seen.update(_by_index(DataLoader(dataset, sampler=sampler, batch_size=4,
                                             num_workers=2 if rank == 0 else 0)))
        assert seen == reference[epoch]


def test_resuming_mid_epoch_by_skipping_consumed_samples(
    reference: list[dict[int, Row]],
) -> None:
    """Epoch 1 of a fresh run that had consumed 9 of the epoch's samples: no RNG snapshot."""
    order = torch.randperm(SIZE, generator=torch.Generator().manual_seed(11)).tolist()
    dataset = per_sample(Augment(), seed=3)
    dataset.set_epoch(1)
    tail = _by_index(DataLoader(Subset(dataset, order[9:]), batch_size=4, num_workers=2))
    assert tail == {i: reference[1][i] for i in order[9:]}


# -- copies and bad input ----------------------------------------------------------------------


def test_copies_carry_the_epoch_value() -> None:
    dataset = per_sample(Augment(), seed=3)
    dataset.set_epoch(4)
    for other in (pickle.loads(pickle.dumps(dataset)), copy.deepcopy(dataset)):
        assert (other.epoch, other.seed) == (4, 3)
        assert torch.equal(other[2], dataset[2])
        other.set_epoch(5)  # its own epoch, not the original's
        assert dataset.epoch == 4
    assert len(dataset) == SIZE
    assert repr(dataset).startswith("per_sample(")
    assert "seed=3" in repr(dataset)


def test_bad_input_says_what_is_accepted() -> None:
    dataset = per_sample(Augment(), seed=3)
    with pytest.raises(TypeError, match="map-style dataset"):
        per_sample(iter([1, 2]))
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        per_sample(Augment(), seed=-1)
    with pytest.raises(TypeError, match="int index"):
        dataset["a"]  # type: ignore[index]
    with pytest.raises(TypeError, match="int index"):
        dataset[True]  # type: ignore[index]
    with pytest.raises(ValueError, match="negative index"):
        dataset[-1]
    assert torch.equal(dataset[np.int64(3)], dataset[3])  # type: ignore[index]
    for epoch in (-1, 1.0, True, 2**63):
        with pytest.raises(ValueError, match="epoch must be an int"):
            dataset.set_epoch(epoch)  # type: ignore[arg-type]
    assert dataset.epoch == 0
