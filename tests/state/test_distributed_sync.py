"""synchronize(src): every rank takes rank src's streams, in real gloo processes of 3 ranks."""

from __future__ import annotations

from typing import Any

import pytest

from repro_ctx import distributed
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
