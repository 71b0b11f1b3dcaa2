"""torch.distributed: shared and per-rank streams, synchronisation checks, per-rank checkpoints.

Real gloo process groups of two ranks run as separate processes
(tests/distributed_script.py); the same functions also run here in a
one-rank group, and the comparison logic on synthetic digests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from repro_ctx import capture, deterministic, distributed
from repro_ctx.core.plain import digest
from repro_ctx.core.seed import rank_seed
from repro_ctx.state import distributed as distributed_impl
from repro_ctx.state.state_dict import unread
from tests.distributed_script import ENTRY
from tests.global_state import draws
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
WORLD = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_ranks(scenario: str, directory: Path) -> list[dict[str, Any]]:
    """Run ``scenario`` on two rank processes; a rank that hangs is killed."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.distributed_script", scenario, str(rank), str(WORLD),
             str(port), str(directory)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in range(WORLD)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=HANG_TIMEOUT)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
    return [json.loads((directory / f"{scenario}-{rank}.json").read_text())
            for rank in range(WORLD)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("ranks")
    streams = _run_ranks("streams", directory)
    resumed = _run_ranks("resume", directory)  # fresh processes, a fresh process group
    import_order = _run_ranks("import_order", directory)
    return {"streams": streams, "resume": resumed, "import_order": import_order}


def test_ranks_share_streams_by_default(ranks: dict[str, list[dict[str, Any]]]) -> None:
    shared = ranks["streams"][0]["shared"]
    assert shared[0] == shared[1]
    assert ranks["streams"][1]["shared"] == shared


def test_per_rank_streams_are_independent_and_derived_from_seed_and_rank(
    ranks: dict[str, list[dict[str, Any]]],
) -> None:
    per_rank = ranks["streams"][0]["per_rank"]
    assert per_rank[0] != per_rank[1]
    assert all(a != b for a, b in zip(per_rank[0], per_rank[1], strict=True))
    for rank in range(WORLD):
        assert per_rank[rank] == ranks["streams"][rank]["derived"]


def test_divergence_is_detected_on_every_rank(ranks: dict[str, list[dict[str, Any]]]) -> None:
    for result in ranks["streams"]:
        message = result["random_divergence"]
        assert message is not None
        assert "rank 1 differs from rank 0 in: random" in message
        flags = result["flag_divergence"]
        assert "rank 1 differs from rank 0 in: torch flags: torch.backends.cudnn.benchmark" in (
            flags
        )
        assert result["agreement_after_divergence"] is None


def test_a_flag_only_one_rank_has_imported_is_no_divergence(
    ranks: dict[str, list[dict[str, Any]]],
) -> None:
    """Only rank 1 imported inductor's config: it reads None on rank 0, True in rank 1's scope."""
    rank0, rank1 = ranks["import_order"]
    assert (rank0["imported"], rank1["imported"]) == (False, True)
    for result in (rank0, rank1):
        assert result["one_imported"] is None
        assert result["both_imported"] is None
        assert result["both_differ"] == (
            "RNG state is not synchronized across ranks:\n"
            f"rank 1 differs from rank 0 in: torch flags: torch._inductor.config.{ENTRY}"
        )


def test_per_rank_checkpoints_resume_in_fresh_processes(
    ranks: dict[str, list[dict[str, Any]]],
) -> None:
    for rank in range(WORLD):
        resumed = ranks["resume"][rank]
        assert resumed["skipped"] == []
        assert resumed["after_load"] == ranks["streams"][rank]["after_save"]
    assert ranks["resume"][0]["after_load"] != ranks["resume"][1]["after_load"]


# --------------------------------------------------------------------------
# In process: a one-rank gloo group, and the comparison on synthetic digests
# --------------------------------------------------------------------------


@pytest.fixture
def one_rank_group() -> Iterator[None]:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.usefixtures("one_rank_group")
def test_one_rank_is_synchronized_with_itself() -> None:
    distributed.assert_synchronized()
    distributed.assert_synchronized(state=capture())
    with pytest.raises(distributed.NotSynchronizedError, match="rank 0 could not capture"):
        distributed.assert_synchronized(state="not a state")  # type: ignore[arg-type]


@pytest.mark.usefixtures("one_rank_group")
def test_save_and_load_in_a_process_group(tmp_path: Path) -> None:
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        path = distributed.save(tmp_path / "ckpt")
        assert path == tmp_path / "ckpt" / "rng_state_rank0.pt"
        expected = draws()
        assert distributed.load(tmp_path / "ckpt") == []
        assert draws() == expected
        data = torch.load(path, weights_only=True)
        assert (data["rank"], data["world_size"]) == (0, 1)


def test_assert_synchronized_needs_a_process_group() -> None:
    with pytest.raises(RuntimeError, match="init_process_group"):
        distributed.assert_synchronized()


def _payload(rank: int, **items: dict[str, str]) -> dict[str, Any]:
    return {"rank": rank, "items": items}


def test_compare_groups_the_ranks_that_differ() -> None:
    same = {"random": {"": "a"}, "torch flags": {"x": "1", "y": "2"}}
    flag = {"random": {"": "a"}, "torch flags": {"x": "1", "y": "3"}}
    rng = {"random": {"": "b"}, "torch flags": {"x": "1", "y": "2"}}
    payloads = [_payload(0, **same), _payload(1, **flag), _payload(2, **same),
                _payload(3, **flag), _payload(4, **rng)]
    assert distributed_impl._compare(payloads) == (
        "RNG state is not synchronized across ranks:\n"
        "ranks 1, 3 differ from rank 0 in: torch flags: y\n"
        "rank 4 differs from rank 0 in: random"
    )
    assert distributed_impl._compare([_payload(0, **same), _payload(1, **same)]) is None
    errors = [_payload(0, **same), {"rank": 1, "error": "OSError: x"}]
    assert distributed_impl._compare(errors) == (
        "repro_ctx.distributed.assert_synchronized failed:\n"
        "rank 1 could not capture its state: OSError: x"
    )


def test_compare_skips_a_lazy_flag_only_where_a_rank_cannot_read_it() -> None:
    """Compared among the ranks that can read it, with the first of them; never failed alone."""
    lazy = "torch._inductor.config.deterministic"
    false, true = (digest(["flags", value]) for value in (False, True))
    none = unread()

    def flags(value: str) -> dict[str, str]:
        return {"torch.backends.cudnn.benchmark": false, lazy: value}

    def ranks(*values: str) -> list[dict[str, Any]]:
        return [_payload(rank, **{"torch flags": flags(value)})
                for rank, value in enumerate(values)]

    assert distributed_impl._compare(ranks(none, false)) is None
    assert distributed_impl._compare(ranks(false, none, none)) is None
    assert distributed_impl._compare(ranks(none, true, none, true)) is None
    assert distributed_impl._compare(ranks(false, true, none)) == (
        "RNG state is not synchronized across ranks:\n"
        f"rank 1 differs from rank 0 in: torch flags: {lazy}"
    )
    assert distributed_impl._compare(ranks(none, false, true, none, true)) == (
        "RNG state is not synchronized across ranks:\n"
        f"ranks 2, 4 differ from rank 0 in: torch flags: {lazy} (rank 0 has not imported "
        "its module: compared with rank 1)"
    )
    other = ranks(none, none)
    other[1]["items"]["torch flags"]["torch.backends.cudnn.benchmark"] = true
    assert distributed_impl._compare(other) == (
        "RNG state is not synchronized across ranks:\n"
        "rank 1 differs from rank 0 in: torch flags: torch.backends.cudnn.benchmark"
    )


def test_checkpoints_record_and_check_rank_and_world_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        data = distributed.state_dict()
        assert (data["rank"], data["world_size"]) == (1, 2)
        assert distributed.load_state_dict(data) == []
        distributed.save(tmp_path, capture())
        assert distributed.load(tmp_path) == []
        monkeypatch.setenv("WORLD_SIZE", "4")
        with pytest.raises(ValueError, match="world size 2; this run has world size 4"):
            distributed.load_state_dict(data)
        with pytest.raises(ValueError, match="world size 2; this run has world size 4"):
            distributed.load(tmp_path)
        monkeypatch.setenv("RANK", "3")
        with pytest.raises(ValueError, match=r"no RNG state for rank 3.*world size 2"):
            distributed.load(tmp_path)
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(ValueError, match="the RNG state of rank 1; this process is rank 0"):
            distributed.load_state_dict(data)
        with pytest.raises(FileNotFoundError, match="no RNG state for rank 0"):
            distributed.load(tmp_path / "empty")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "not a repro_ctx.distributed state dict"),
        ({"format": "other"}, "not a repro_ctx.distributed state dict"),
        ({"format": "repro_ctx.distributed", "version": 2}, "version 2"),
    ],
)
def test_bad_checkpoints(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        distributed.load_state_dict(data)


def test_a_bad_world_size_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        distributed.state_dict()


def test_rank_seed_is_what_per_rank_scopes_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    with deterministic(5, per_rank=True):
        inside = draws()
    with deterministic(rank_seed(5, 1)):
        assert draws() == inside
