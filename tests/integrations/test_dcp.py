"""RNGStateful with plain dcp.save/dcp.load over gloo, in real processes of 2 and 3 ranks."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch

from repro_ctx.integrations.dcp import KEY, RNGStateful
from tests.rank_processes import run_ranks


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("dcp")
    module = "tests.integrations.dcp_ranks"
    two_save = run_ranks(module, "two_save", 2, directory)
    three = run_ranks(module, "three", 3, directory)
    two_load = run_ranks(module, "two_load", 2, directory)  # fresh processes
    return {"two_save": two_save, "three": three, "two_load": two_load}


def test_same_world_size_restores_each_rank_its_own_streams(
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    saved = [rank["saved"] for rank in runs["two_save"]]
    assert saved[0] != saved[1]  # the ranks had their own streams: dedup would mix them
    for rank, result in enumerate(runs["two_load"]):
        assert result["exact"] == {"draws": saved[rank], "warnings": []}


def test_another_world_size_raises_naming_both(
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    for rank in runs["three"]:
        assert "2 ranks" in rank["raise"]["error"]
        assert "world size 3" in rank["raise"]["error"]
        assert "on_resize='derive'" in rank["raise"]["error"]
    for rank in runs["two_load"]:
        assert "3 ranks" in rank["raise"]["error"]
        assert "world size 2" in rank["raise"]["error"]


def test_derive_keeps_saved_ranks_and_derives_new_ones_from_the_saved_seed(
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    saved = [rank["saved"] for rank in runs["two_save"]]
    three = runs["three"]
    for rank in (0, 1):
        assert three[rank]["derive"]["draws"] == saved[rank]
    assert three[2]["derive"]["draws"] == three[2]["derived"]  # deterministic(9, per_rank=True)
    assert three[2]["derived"] not in saved
    for rank in three:
        (message,) = rank["derive"]["warnings"]
        assert "saved by 2 ranks, loaded by 3: ranks 0-1 keep" in message
        assert "rank 2 get new streams derived from the saved seed 9" in message


def test_derive_from_three_ranks_to_two(runs: dict[str, list[dict[str, Any]]]) -> None:
    saved = [rank["saved"] for rank in runs["three"]]
    for rank, result in enumerate(runs["two_load"]):
        assert result["derive"]["draws"] == saved[rank]
        (message,) = result["derive"]["warnings"]
        assert "saved by 3 ranks, loaded by 2" in message
        assert "the saved streams of rank 2 are dropped" in message


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_one_process_without_a_group_round_trips(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp

    torch.manual_seed(3)
    dcp.save({"rng": RNGStateful()}, checkpoint_id=str(tmp_path))
    expected = torch.rand(4)
    torch.manual_seed(4)
    dcp.load({"rng": RNGStateful()}, checkpoint_id=str(tmp_path))
    assert torch.equal(torch.rand(4), expected)


def test_bad_input_says_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="on_resize must be 'raise' or 'derive'"):
        RNGStateful(on_resize="keep")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an int"):
        RNGStateful(seed="0")  # type: ignore[arg-type]
    stateful = RNGStateful()
    with pytest.raises(ValueError, match="not an RNGStateful state dict"):
        stateful.load_state_dict({"other": 1})
    other = io.BytesIO()
    torch.save({"format": "something else"}, other)
    with pytest.raises(ValueError, match="format mark"):
        stateful.load_state_dict({KEY: other.getvalue()})
    newer = io.BytesIO()
    torch.save({"format": "repro_ctx.integrations.dcp", "version": 99}, newer)
    with pytest.raises(ValueError, match="unsupported RNGStateful version 99"):
        stateful.load_state_dict({KEY: newer.getvalue()})


def test_an_entry_of_another_rank_is_refused() -> None:
    data = RNGStateful().state_dict()
    saved = torch.load(io.BytesIO(data[KEY]), weights_only=True)
    saved["ranks"][0]["rank"] = 1
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    with pytest.raises(ValueError, match="entry 0 is rank 1's state"):
        RNGStateful().load_state_dict({KEY: buffer.getvalue()})
