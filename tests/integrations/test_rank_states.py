"""Every rank's state in one entry: gathered in real processes, restored per rank, checked."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repro_ctx import capture
from repro_ctx.integrations.rank_states import (
    check_states,
    gather_states,
    rank_and_world,
    restore_own,
)
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_gets_its_own_streams_back_from_one_gathered_entry(
        tmp_path: Path, world: int) -> None:
    port = str(_free_port())
    base = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    ranks = [subprocess.Popen(
        [sys.executable, "-m", "tests.integrations.rank_states_run", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**base, "RANK": str(rank), "WORLD_SIZE": str(world),
             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
        for rank in range(world)]
    outputs = [process.communicate(timeout=HANG_TIMEOUT)[0] for process in ranks]
    for rank, (process, output) in enumerate(zip(ranks, outputs)):
        assert process.returncode == 0, output
        assert f"rank {rank}: ok" in output
    entry = torch.load(tmp_path / "states.pt", weights_only=True)
    assert check_states(entry)["world_size"] == world


def test_one_process_gathers_its_own_state_alone() -> None:
    state = capture()
    entry = gather_states(state)
    assert entry["world_size"] == 1
    assert entry["ranks"][0]["rank"] == 0
    assert restore_own(entry) == []
    assert capture().diff(state) == []


def test_a_world_without_a_process_group_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="not initialised"):
        gather_states()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        rank_and_world()


def test_another_world_size_names_both_before_anything_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    entry = gather_states()
    torch.rand(2)
    before = capture()
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="world size 1; this run has world size 3"):
        restore_own(entry)
    assert capture().diff(before) == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [({"format": "other"}, "not a repro_ctx rank-states entry"),
     ({"version": 2}, "unsupported repro_ctx rank-states version 2"),
     ({"world_size": 2}, "one state per rank"),
     ({"world_size": True}, "one state per rank"),
     ({"ranks": "all"}, "one state per rank")],
)
def test_a_malformed_entry_says_what_is_wrong(edit: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        restore_own({**gather_states(), **edit})
    with pytest.raises(ValueError, match="not a repro_ctx rank-states entry"):
        check_states([])
