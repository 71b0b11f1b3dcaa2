"""synchronize(src): every rank takes rank src's streams, in real gloo processes of 3 ranks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch.distributed as dist

from repro_ctx import distributed
from repro_ctx.state import distributed as distributed_impl
from tests.global_state import rng_state
from tests.rank_processes import run_ranks

WORLD = 3


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return run_ranks("tests.state.sync_ranks", "broadcast", WORLD,
                     tmp_path_factory.mktemp("sync"))


@pytest.mark.parametrize("src", range(WORLD))
def test_every_rank_draws_what_rank_src_draws_after_synchronize(
    ranks: list[dict[str, Any]], src: int
) -> None:
    draws = ranks[0][f"src{src}"]["draws"]  # every rank's draws, gathered after the sync
    assert all(row == draws[0] for row in draws)
    others = [ranks[0][f"src{other}"]["draws"][0] for other in range(WORLD) if other != src]
    assert all(row != draws[0] for row in others)  # each source rank had its own streams
    for rank in ranks:
        assert rank[f"src{src}"]["skipped"] == []
        assert rank[f"src{src}"]["benchmark"]  # flags stay each rank's own


def test_a_bad_src_is_refused_on_every_rank(ranks: list[dict[str, Any]]) -> None:
    for rank in ranks:
        assert len(rank["errors"]) == 4
        assert all("src must be a rank in [0, 3)" in error for error in rank["errors"])


def test_synchronize_needs_a_process_group() -> None:
    with pytest.raises(RuntimeError, match="init_process_group"):
        distributed.synchronize()


@pytest.fixture
def one_rank_group() -> Iterator[None]:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.usefixtures("one_rank_group")
def test_one_rank_keeps_its_streams_and_reports_a_failed_capture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = rng_state()
    assert distributed.synchronize() == []
    assert rng_state() == before
    with pytest.raises(TypeError, match="strict must be True or False"):
        distributed.synchronize(strict=None)  # type: ignore[arg-type]

    def fails() -> None:
        raise OSError("no state here")

    monkeypatch.setattr(distributed_impl, "capture", fails)
    with pytest.raises(RuntimeError, match="rank 0 could not capture its RNG state: OSError"):
        distributed.synchronize()
