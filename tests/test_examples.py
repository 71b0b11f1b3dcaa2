"""The scripts in examples/ run as their docstrings say, on their own small synthetic data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                               timeout=HANG_TIMEOUT)
    assert completed.returncode == 0, (
        f"{' '.join(command)}: exit status {completed.returncode}\n"
        f"{completed.stdout}\n{completed.stderr}"
    )
    return completed


def _weights_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("weights sha256"))


def test_a_resumed_run_ends_with_the_uninterrupted_run_s_weights(tmp_path: Path) -> None:
    script = str(EXAMPLES / "train_resume.py")
    full = _run(sys.executable, script, "--out", "full.pt", "--checkpoint", "ckpt.pt",
                cwd=tmp_path)
    resumed = _run(sys.executable, script, "--out", "resumed.pt", "--resume", "ckpt.pt",
                   cwd=tmp_path)
    assert _weights_line(resumed.stdout) == _weights_line(full.stdout)
    full_weights = torch.load(tmp_path / "full.pt", weights_only=True)
    resumed_weights = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert all(torch.equal(full_weights[name], resumed_weights[name]) for name in full_weights)
    # the last two epochs' losses, printed by both runs, agree too
    assert full.stdout.splitlines()[2:4] == resumed.stdout.splitlines()[:2]


def test_lightning_fit_inside_a_scope(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    completed = _run(sys.executable, str(EXAMPLES / "lightning_fit.py"), cwd=tmp_path)
    assert "bitwise-equal weights" in completed.stdout


def test_the_pytest_example_under_its_marker_and_repro_seed() -> None:
    seeded = _run(sys.executable, "-m", "pytest", str(EXAMPLES / "test_pytest_marker.py"), "-v",
                  "-p", "no:cacheprovider", "--repro-seed=1234", cwd=ROOT)
    assert "repro_ctx: --repro-seed=1234" in seeded.stdout
    assert "3 passed" in seeded.stdout


def test_repro_ctx_check_passes_on_the_checked_script(tmp_path: Path) -> None:
    completed = _run("repro-ctx", "check", "-n", "2", "--compare", "predictions.pt", "--",
                     sys.executable, str(EXAMPLES / "checked_script.py"), "predictions.pt",
                     cwd=tmp_path)
    assert "all 2 runs matched" in completed.stdout
