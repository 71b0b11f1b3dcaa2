"""``repro-ctx doctor`` on a CUDA machine: the devices, the versions and a CUDA self-check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


def test_doctor_lists_the_gpus_and_checks_a_cuda_training_step() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CUBLAS_WORKSPACE_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "repro_ctx", "doctor", "--json"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=HANG_TIMEOUT, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["versions"]["cuda"] == torch.version.cuda
    assert report["versions"]["cudnn"] == torch.backends.cudnn.version()
    gpus = [device for device in report["devices"] if device["type"] == "cuda"]
    assert [gpu["name"] for gpu in gpus] == [
        torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())
    ]
    checks = {check["device"]: check for check in report["self_check"]}
    assert set(checks) == {"cpu", "cuda"}
    assert checks["cuda"]["deterministic"] is True
    assert checks["cuda"]["first"] == checks["cuda"]["second"]
    assert report["flags"]["torch (cuda)"]["devices"] == torch.cuda.device_count()
