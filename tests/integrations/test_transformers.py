"""ReproCallback for the Hugging Face Trainer: exact resume in a new process, inside an epoch
and at its end; a scoped train(); clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")

from repro_ctx import capture
from repro_ctx.integrations.transformers import ReproCallback
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


def _run(mode: str, folder: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    env["HF_HUB_OFFLINE"] = "1"
    completed = subprocess.run(
        [sys.executable, "-m", "tests.integrations.transformers_run", mode, str(folder)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_TIMEOUT)
    assert completed.returncode == 0, f"{completed.stdout}\n{completed.stderr}"
    assert f"{mode}: ok" in completed.stdout


def test_runs_resumed_in_a_new_process_end_with_the_uninterrupted_weights(
        tmp_path: Path) -> None:
    """From checkpoint-12 (inside epoch 2, after skip_first_batches) and checkpoint-8
    (the end of epoch 1) of a run that crashed at step 13."""
    _run("first", tmp_path)
    _run("resume", tmp_path)
    full = torch.load(tmp_path / "full.pt", weights_only=True)
    for step in (12, 8):
        assert torch.equal(full, torch.load(tmp_path / f"resumed-{step}.pt", weights_only=True))
    # the Trainer alone (its rng_state.pth) misses the registered generator's stream
    assert not torch.equal(full, torch.load(tmp_path / "bare.pt", weights_only=True))


# -- the hooks alone, with the Trainer's arguments stood in for ----------------------------


def _args(folder: Path, **kwargs: Any) -> Any:
    return SimpleNamespace(output_dir=str(folder), resume_from_checkpoint=None,
                           ignore_data_skip=False, **kwargs)


def _state(step: int, epoch: float) -> Any:
    return SimpleNamespace(global_step=step, epoch=epoch)


def _saved(folder: Path, step: int = 6, epoch: float = 1.5) -> ReproCallback:
    callback = ReproCallback(seed=0)
    callback.on_train_begin(_args(folder), _state(0, 0.0), None)  # type: ignore[arg-type]
    torch.rand(5)  # the streams at the save are not the seed's
    callback.on_save(_args(folder), _state(step, epoch), None)  # type: ignore[arg-type]
    callback.on_train_end(_args(folder), _state(step, epoch), None)  # type: ignore[arg-type]
    return callback


def test_a_train_that_raises_is_closed_by_the_with_block(tmp_path: Path) -> None:
    before = capture()
    callback = ReproCallback(seed=0)
    def train() -> None:
        callback.on_train_begin(_args(tmp_path), _state(0, 0.0), None)  # type: ignore[arg-type]
        assert torch.are_deterministic_algorithms_enabled()
        torch.rand(3)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), callback:
        train()
    assert capture().diff(before) == []
    # without the with block, the next train() closes what the last one left open
    callback.on_train_begin(_args(tmp_path), _state(0, 0.0), None)  # type: ignore[arg-type]
    torch.rand(3)
    callback.on_train_begin(_args(tmp_path), _state(0, 0.0), None)  # type: ignore[arg-type]
    callback.on_train_end(_args(tmp_path), _state(0, 0.0), None)  # type: ignore[arg-type]
    assert capture().diff(before) == []


def test_each_rank_s_file_records_its_world(tmp_path: Path) -> None:
    _saved(tmp_path)
    data = torch.load(tmp_path / "checkpoint-6" / "repro_ctx" / "rng_state_rank0.pt",
                      weights_only=True)
    assert (data["global_step"], data["epoch"]) == (6, 1.5)
    assert (data["state"]["rank"], data["state"]["world_size"]) == (0, 1)


def test_another_world_size_is_refused_before_the_scope_opens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _saved(tmp_path)
    callback = ReproCallback(seed=0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="world size 1; this run has world size 2"):
        callback.on_train_begin(_args(tmp_path), _state(6, 1.5), None)  # type: ignore[arg-type]
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match=r"no RNG state for rank 1 .* world size 1; this run "
                                         r"has world size 2"):
        callback.on_train_begin(_args(tmp_path), _state(6, 1.5), None)  # type: ignore[arg-type]
    assert not torch.are_deterministic_algorithms_enabled()


def test_the_checkpoint_must_be_the_one_resumed(tmp_path: Path) -> None:
    _saved(tmp_path)
    elsewhere = tmp_path / "moved"
    os.rename(tmp_path / "checkpoint-6", elsewhere)
    callback = ReproCallback(seed=0)
    args = _args(tmp_path / "out")
    args.resume_from_checkpoint = str(elsewhere)
    with pytest.raises(ValueError, match="saved at step 6, but the Trainer resumes at step 7"):
        callback.on_train_begin(args, _state(7, 1.75), None)
    path = elsewhere / "repro_ctx" / "rng_state_rank0.pt"
    torch.save({"format": "something else"}, path)
    with pytest.raises(ValueError, match="is not a ReproCallback state"):
        callback.on_train_begin(args, _state(6, 1.5), None)


def test_the_restore_waits_for_its_hook(tmp_path: Path) -> None:
    """Inside an epoch: at the first step; at a boundary (or ignore_data_skip): the epoch."""
    for epoch, ignore, hook in [(1.5, False, "on_step_begin"), (2.0, False, "on_epoch_begin"),
                                (1.5, True, "on_epoch_begin")]:
        _saved(tmp_path, step=6, epoch=epoch)
        saved = torch.load(tmp_path / "checkpoint-6" / "repro_ctx" / "rng_state_rank0.pt",
                           weights_only=True)
        callback = ReproCallback(seed=0)
        args = _args(tmp_path)
        args.ignore_data_skip = ignore
        callback.on_train_begin(args, _state(6, epoch), None)
        other = "on_epoch_begin" if hook == "on_step_begin" else "on_step_begin"
        getattr(callback, other)(args, _state(6, epoch), None)
        assert not torch.equal(torch.get_rng_state(), saved["state"]["state"]["sources"]
                               ["torch (cpu)"]["state"]["state"])
        getattr(callback, hook)(args, _state(6, epoch), None)
        restored = capture().state_dict()["sources"]["torch (cpu)"]
        assert torch.equal(restored["state"]["state"],
                           saved["state"]["state"]["sources"]["torch (cpu)"]["state"]["state"])
        callback.on_train_end(args, _state(6, epoch), None)


def test_bad_options_are_refused_at_construction() -> None:
    with pytest.raises(TypeError):
        ReproCallback(strict="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="algorithms"):
        ReproCallback(algorithms="always")  # type: ignore[arg-type]
    assert repr(ReproCallback(seed=None)).startswith("ReproCallback(seed=None, algorithms=True")
