"""The environment record holds what can make two machines differ, and says which differences do.

Process pairs whose environments really differ are in
``tests/diagnose/test_environment_cause.py``; here: each field read from its
source, the explanations, and the state dict's summary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import repro_ctx
from repro_ctx import RNGState
from repro_ctx.state import environment_record as module
from repro_ctx.state.environment_diff import (
    Difference,
    differences,
    record_in,
    restore_warning,
    summary_in,
    verdict_line,
)
from repro_ctx.state.environment_record import (
    SCHEMA,
    SUMMARY_FIELDS,
    environment_record,
    environment_summary,
    flatten,
    hash_seed_fixed,
    kernel_variables,
    torch_backends,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_record_has_every_documented_key_and_is_json() -> None:
    record = environment_record()
    documented = re.findall(r"``(\w+)``", (environment_record.__doc__ or "").split("GPUs")[0])
    assert set(record) == set(documented) - {"read", "driver", "devices", "VARIABLE_PREFIXES",
                                             "fixed", "FRAMEWORKS", "commit", "None",
                                             "PYTHONHASHSEED"}
    assert (record["schema"], record["schema_version"]) == (SCHEMA, 1)
    assert json.loads(json.dumps(record)) == record


def test_the_record_reads_torch_numpy_and_the_machine() -> None:
    record = environment_record()
    assert record["python"]["version"] == sys.version.split()[0]
    assert record["torch"]["version"] == torch.__version__
    assert record["torch"]["git_version"] == torch.version.git_version
    assert record["torch"]["cuda"] == torch.version.cuda
    assert record["torch"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["torch"]["interop_threads"] == torch.get_num_interop_threads()
    blas, lapack, _ = torch_backends(torch.__config__.show())
    assert record["torch"]["blas"] == blas
    assert record["torch"]["lapack"] == lapack
    assert record["numpy"]["version"] == np.__version__
    assert record["os"]["system"] == __import__("platform").system()
    assert record["cpu"]["count"] == os.cpu_count()
    assert record["flags"]["torch.backends.cudnn.benchmark"] is False
    assert "PYTHONHASHSEED" not in record["flags"]  # variables are apart


def test_threads_are_read_every_time() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert environment_record()["torch"]["threads"] == threads + 1
        assert environment_summary()["torch.threads"] == threads + 1
    finally:
        torch.set_num_threads(threads)


def test_torch_backends_are_read_from_the_config_text() -> None:
    text = ("PyTorch built with:\n  - OpenMP 201511 (a.k.a. OpenMP 4.5)\n"
            "  - Build settings: BLAS_INFO=open, BUILD_TYPE=Release, LAPACK_INFO=open, \n")
    assert torch_backends(text) == ("open", "open", "OpenMP 201511 (a.k.a. OpenMP 4.5)")
    assert torch_backends("PyTorch built with:\n") == (None, None, None)


def test_kernel_variables_are_those_that_change_kernels() -> None:
    found = kernel_variables({"OMP_NUM_THREADS": "4", "NCCL_ALGO": "Ring", "TORCH_HOME": "/x",
                              "HOME": "/root", "ATEN_CPU_CAPABILITY": "avx2"})
    assert found == {"ATEN_CPU_CAPABILITY": "avx2", "NCCL_ALGO": "Ring", "OMP_NUM_THREADS": "4"}


@pytest.mark.parametrize(("value", "fixed"), [
    (None, False), ("random", False), ("0", True), ("1", True), ("4294967295", True),
])
def test_the_hash_seed_is_fixed_by_its_value(value: str | None, fixed: bool) -> None:
    env = {key: val for key, val in os.environ.items() if key != "PYTHONHASHSEED"}
    if value is not None:
        env["PYTHONHASHSEED"] = value
    code = ("from repro_ctx.state.environment_record import hash_seed_fixed; "
            "print(hash_seed_fixed())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env, "PYTHONPATH": str(ROOT)}, check=True, timeout=300)
    assert result.stdout.strip() == str(fixed)


def test_hash_seed_fixed_reads_the_given_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "sys", SimpleNamespace(flags=SimpleNamespace(hash_randomization=1)))
    assert hash_seed_fixed({"PYTHONHASHSEED": "17"})
    assert not hash_seed_fixed({"PYTHONHASHSEED": "-1"})
    assert not hash_seed_fixed({})
    monkeypatch.setattr(module, "sys", SimpleNamespace(flags=SimpleNamespace(hash_randomization=0)))
    assert hash_seed_fixed({})


def test_gpus_without_cuda_in_the_build() -> None:
    if torch.version.cuda is not None:
        pytest.skip("this torch has CUDA")
    assert environment_record()["gpus"] == {
        "read": "no CUDA or ROCm in this torch build", "driver": None, "devices": []}


def fake_torch(initialised: bool = False, available: bool = False) -> SimpleNamespace:
    cuda = SimpleNamespace(
        is_initialized=lambda: initialised, is_available=lambda: available,
        device_count=lambda: 1, get_device_capability=lambda index: (9, 0),
        get_device_name=lambda index: "NVIDIA H200",
    )
    return SimpleNamespace(version=SimpleNamespace(cuda="12.8", hip=None), cuda=cuda)


def test_gpus_are_read_with_nvidia_smi_without_initialising_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 9.0, 570.86.15'\necho 'NVIDIA H200, 9.0, "
                   "570.86.15'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    torch_ = fake_torch()
    torch_.cuda.is_initialized = lambda: pytest.fail("nvidia-smi is read first")
    assert module._gpus(torch_, read_gpus=False) == {
        "read": "nvidia-smi (CUDA not initialised)", "driver": "570.86.15",
        "devices": [{"name": "NVIDIA H200", "capability": "9.0"}] * 2,
    }
    smi.write_text("#!/bin/sh\nexit 9\n")  # a failing nvidia-smi: torch.cuda, if allowed
    monkeypatch.setattr(module.shutil, "which", lambda name: str(smi))
    assert module._gpus(fake_torch(), read_gpus=False)["read"].startswith("not read")


def test_gpus_through_torch_cuda_say_whether_it_initialised_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    assert module._gpus(fake_torch(), read_gpus=False) == {
        "read": "not read: nvidia-smi was not found, and torch.cuda would initialise CUDA",
        "driver": None, "devices": []}
    assert module._gpus(fake_torch(), read_gpus=True)["read"] == "torch.cuda: no device available"
    read = module._gpus(fake_torch(available=True), read_gpus=True)
    assert read["devices"] == [{"name": "NVIDIA H200", "capability": "9.0"}]
    assert read["read"].startswith("torch.cuda, which initialised CUDA")
    already = module._gpus(fake_torch(initialised=True, available=True), read_gpus=False)
    assert already["read"].startswith("torch.cuda (CUDA was initialised already)")


def test_the_git_commit_of_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("no git")
    monkeypatch.chdir(tmp_path)
    for name in ("GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(name, raising=False)
    # git looks no higher than tmp_path, wherever the session's temporary folders are
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert environment_record()["git"] is None  # not a working directory
    subprocess.run([git, "init", "-q"], check=True, timeout=60)
    assert environment_record()["git"] is None  # no commit yet
    subprocess.run([git, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True, timeout=60)
    head = subprocess.run([git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()
    assert environment_record()["git"] == {"commit": head}
    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    assert environment_record()["git"] is None


def test_threadpools_come_from_threadpoolctl_where_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = {"user_api": "blas", "internal_api": "openblas", "version": "0.3.31",
            "num_threads": 2, "architecture": "Haswell", "filepath": "/x.so"}
    monkeypatch.setitem(sys.modules, "threadpoolctl",
                        SimpleNamespace(threadpool_info=lambda: [pool]))
    assert environment_record()["threadpools"] == [
        {key: pool[key] for key in pool if key != "filepath"}]
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    assert environment_record()["threadpools"] is None


def test_numpy_without_a_config_dict_gives_no_blas() -> None:
    def old_show_config(mode: str = "stdout") -> None:
        raise TypeError("show_config() got an unexpected keyword argument 'mode'")

    assert module._numpy_blas(SimpleNamespace(show_config=old_show_config)) == {
        "blas": None, "lapack": None}


def test_the_summary_is_the_records_summary_fields() -> None:
    summary = environment_summary()
    assert tuple(summary) == SUMMARY_FIELDS
    flat = flatten(environment_record())
    assert summary == {name: flat[name] for name in SUMMARY_FIELDS}


# differences ----------------------------------------------------------------------------------


def test_each_difference_says_whether_and_how_it_changes_results() -> None:
    a = environment_record()
    a["packages"].setdefault("lightning", "2.6.6")  # on both sides, installed or not
    b = json.loads(json.dumps(a))
    b["torch"]["version"] = "9.9.9"
    b["os"]["release"] = "another"
    b["packages"]["lightning"] = "0.0.1"
    b["flags"]["torch.backends.cudnn.benchmark"] = True
    b["variables"]["NCCL_ALGO"] = "Tree"
    b["variables"]["SOME_NEW_ONE"] = "1"  # not a kernel variable: no explanation needed
    b["hash_seed"] = {"PYTHONHASHSEED": "3", "fixed": True}
    b["gpus"]["devices"] = [{"name": "NVIDIA H200", "capability": "9.0"}]
    found = {item.field: item for item in differences(a, b)}
    assert found["torch.version"].why == (
        f"{a['torch']['version']} vs 9.9.9: different torch: kernels and RNG can change "
        "between releases")
    assert not found["os.release"].changes_results
    assert found["packages.lightning"].why.endswith("different lightning: its defaults and "
                                                    "code paths can change")
    assert found["flags.torch.backends.cudnn.benchmark"].why == (
        "torch.backends.cudnn.benchmark False vs True: selects other kernels or precision")
    assert found["variables.NCCL_ALGO"].why.startswith("NCCL_ALGO unset vs Tree: NCCL's")
    assert found["variables.SOME_NEW_ONE"].why.startswith("SOME_NEW_ONE unset vs 1: read by")
    assert found["gpus.devices"].why == "[] vs [NVIDIA H200 9.0]: other GPUs: kernels are " \
                                        "chosen per architecture"
    assert found["hash_seed"].line().endswith("(can change results)")
    assert found["os.release"].line().endswith("(does not change results)")
    assert verdict_line(list(found.values())).startswith(
        "verdict: these environments can give different results (")


def test_a_field_only_one_side_holds_is_no_difference() -> None:
    record = environment_record()
    summary = environment_summary()
    assert differences(record, summary) == []
    assert differences({"x.y": 1}, {"x.y": 2}) == [Difference("x.y", 1, 2, True, "1 vs 2")]


def test_the_verdict_for_harmless_and_no_differences() -> None:
    harmless = [Difference("os.release", "a", "b", False, "a vs b: another OS kernel release")]
    assert verdict_line(harmless) == ("verdict: same results expected: 1 difference(s), none of "
                                      "which changes results")
    assert verdict_line([]) == "verdict: same environment: no difference"


def test_a_record_is_found_in_a_report_a_record_file_or_alone() -> None:
    record = {"schema": SCHEMA, "schema_version": 1}
    assert record_in(record, "x") == record
    assert record_in({"environment_record": record}, "x") == record
    assert record_in({"environment": record}, "x") == record
    for data in ({"schema_version": 1}, [record], {"environment": {"a": 1}}):
        with pytest.raises(ValueError, match=r"^x holds no environment record: expected the "
                                             r"output of `repro-ctx doctor --json`"):
            record_in(data, "x")


# the state dict's summary ---------------------------------------------------------------------


def test_a_state_dict_carries_the_summary_and_round_trips_it() -> None:
    data = repro_ctx.capture().state_dict()
    assert data["environment"] == environment_summary()
    loaded = RNGState.from_state_dict(data)
    assert loaded.state_dict()["environment"] == data["environment"]


def test_an_old_state_dict_without_the_summary_loads_and_restores_silently() -> None:
    data = repro_ctx.capture().state_dict()
    del data["environment"]
    state = RNGState.from_state_dict(data)
    assert "environment" not in state.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state.restore(strict=False)
    assert not [line for line in state.diff(repro_ctx.capture())
                if line.startswith("environment summary")]


@pytest.mark.parametrize("bad", [["torch.version"], {"torch.version": [1]}, {1: "a"}])
def test_a_malformed_summary_is_a_value_error(bad: object) -> None:
    data = {**repro_ctx.capture().state_dict(), "environment": bad}
    with pytest.raises(ValueError, match="'environment' must be a dict of field names"):
        RNGState.from_state_dict(data)
    assert summary_in({}) is None


def test_the_restore_warning_lists_only_what_changes_results() -> None:
    here = environment_summary()
    assert restore_warning(here, here) is None
    assert restore_warning({**here, "os.system": "Other"}, here) is not None
    other = "AVX2" if here["torch.cpu_capability"] == "AVX512" else "AVX512"  # not this CPU's
    saved = {**here, "torch.version": "0.1", "torch.cpu_capability": other}
    warning = restore_warning(saved, here)
    assert warning is not None
    assert "differs from this one in 2 way(s) that can change results" in warning
    assert (f"  - {other} vs {here['torch.cpu_capability']}"[:10] in warning
            or f"CPU capability {other} vs" in warning)
    assert "different torch: kernels and RNG can change between releases (saved vs here)" in (
        warning)


def test_what_cannot_be_read_is_left_out_without_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: object, **kwargs: object) -> object:
        raise OSError("no such program")

    monkeypatch.setattr(module.subprocess, "run", fails)
    assert module._nvidia_smi("nvidia-smi") is None
    assert module._git() is None
    real_open = open

    def no_proc(path: object, *args: Any, **kwargs: Any) -> Any:
        if str(path).startswith("/proc/"):
            raise OSError("not Linux")
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", no_proc)
    monkeypatch.setenv("PYTHONHASHSEED", "5")
    assert module.startup_hash_seed() == "5"  # os.environ, where there is no /proc
    assert module._cpu_model() == (__import__("platform").processor()
                                   or __import__("platform").machine())


def test_the_startup_hash_seed_is_the_one_the_interpreter_hashes_by(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = module.startup_hash_seed()
    monkeypatch.setenv("PYTHONHASHSEED", "12345")  # too late for this interpreter
    if os.path.exists("/proc/self/environ"):
        assert module.startup_hash_seed() == started
