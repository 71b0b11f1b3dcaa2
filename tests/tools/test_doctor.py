"""``repro-ctx`` and ``repro-ctx doctor``: what the process has now next to what a scope sets.

The doctor's text for a CPU machine is pinned by a snapshot
(``tests/snapshots/doctor_cpu.txt``), with the machine-dependent values
(versions, CPU name, digests) normalised. When a change to what a scope
covers is intended (a new flag, a new source), rewrite it with::

    REPRO_CTX_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_doctor.py

and review the diff. The layout itself is built from the sources: a test
below adds a source and sees its rows appear.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import repro_ctx
import repro_ctx.scopes.deterministic
import repro_ctx.sources.default_set
import repro_ctx.tools.selfcheck
from repro_ctx.core.seed import ENV_SEED_VARIABLE, hash_seed
from repro_ctx.core.source import Plan
from repro_ctx.sources.default_set import describe_sources
from repro_ctx.sources.environment import SCOPED_NAMES
from repro_ctx.state.environment_record import hash_seed_fixed
from repro_ctx.tools.cli import main
from repro_ctx.tools.doctor import (
    SCHEMA,
    SCHEMA_VERSION,
    covered,
    covered_lines,
    devices,
    doctor_lines,
    doctor_report,
    verdict,
)
from tests.global_state import INDUCTOR_FLAG
from tests.waits import HANG_TIMEOUT

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = REPO / "tests" / "snapshots" / "doctor_cpu.txt"
UPDATE = os.environ.get("REPRO_CTX_UPDATE_SNAPSHOTS") == "1"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Children find repro_ctx; the self-check's run outside a scope moves no RNG of the suite."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv(ENV_SEED_VARIABLE, raising=False)
    with repro_ctx.deterministic(None, algorithms=None, benchmark=None, tf32=None):
        yield


def nondeterministic_step(device: str = "cpu", steps: int = 3) -> bytes:
    return os.urandom(16)


def noisy_torch_step(device: str = "cpu", steps: int = 3) -> bytes:
    noise = torch.tensor(list(os.urandom(8)), dtype=torch.float32)
    return (noise * 2).numpy().tobytes()


def normalised(text: str) -> str:
    """The doctor's text with what depends on the machine, not on repro_ctx, replaced."""
    text = re.sub(r"(python|torch|CUDA|cuDNN|NumPy) [^,\s]+", r"\1 <version>",
                  text.split("\n", 1)[0]) + "\n" + text.split("\n", 1)[1]
    text = re.sub(r"(devices: cpu \(name )[^,]*(, threads 1\))", r"\1<cpu>\2", text)
    return re.sub(r"\b[0-9a-f]{16}\b", "<digest>", text)


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    for name in (*SCOPED_NAMES, ENV_SEED_VARIABLE):
        if name not in extra:
            env.pop(name, None)
    return env


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "repro_ctx", *args], capture_output=True,
                          text=True, check=False, env=child_env(**env), timeout=HANG_TIMEOUT)


# the snapshot --------------------------------------------------------------------------------


SNAPSHOT_TORCH = (2, 13)
"""The snapshot is of torch 2.13's CPU build: its flag table, and build-dependent values
(cuDNN's ``benchmark_limit`` reads 10 in a CUDA build, even without a GPU)."""


def without_flag_tables(text: str) -> str:
    """The text without what depends on torch's release and build: the torch flags and
    tf32 rows, the notes about them, the footnote numbers, and the column widths (the
    longest row name is a flag's)."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line in ("  torch flags", "notes"):
            skipping = True
        elif skipping and (line.startswith("  random ") or not line):
            skipping = False
        if not skipping:
            kept.append(re.sub(r" {2,}", "  ", re.sub(r" \[\d+\]", "", line)))
    return "\n".join(kept)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the snapshot is of a CPU machine")
def test_doctor_text_on_a_cpu_machine_matches_the_snapshot() -> None:
    """Exactly the snapshot on torch 2.13's CPU build; on another torch release or build
    (a CUDA build without a GPU), the same text outside the flag tables, which differ by
    release and build (their rows are the sources' own: the test after this one)."""
    from repro_ctx.sources.inductor import release

    result = run_cli("doctor")
    assert result.returncode == 0, result.stderr
    text = normalised(result.stdout)
    if UPDATE:
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    expected = SNAPSHOT.read_text()
    if release(torch) != SNAPSHOT_TORCH or torch.version.cuda is not None:
        assert without_flag_tables(text) == without_flag_tables(expected)
        return
    assert text == expected, (
        "doctor's text changed; if that is intended, rewrite the snapshot with "
        "REPRO_CTX_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_doctor.py and review the diff"
    )


def test_the_main_job_and_doctor_share_the_table_and_the_verdict() -> None:
    doctor = run_cli("doctor", PYTHONHASHSEED="0")
    main_job = run_cli(PYTHONHASHSEED="0")
    assert doctor.returncode == main_job.returncode == 0, doctor.stderr + main_job.stderr
    doctor_lines_, main_lines = doctor.stdout.splitlines(), main_job.stdout.splitlines()
    assert doctor_lines_[-1] == main_lines[-1]
    assert main_lines[-1] == ("verdict: reproducible here (a seeded training step repeated bit "
                              "for bit on cpu); first thing to fix: nothing")
    table = main_lines[: main_lines.index("")]
    start = doctor_lines_.index(table[0])
    assert doctor_lines_[start : start + len(table)] == table
    assert "  cpu: outside run " in main_job.stdout  # the main job also runs outside a scope
    assert "this process" not in main_job.stdout


# what the table shows, from the sources themselves ---------------------------------------------


def test_every_setting_a_source_describes_is_a_row_with_both_values() -> None:
    lines = covered_lines(covered(0), 0)
    text = "\n".join(lines)
    for name, detail in describe_sources().items():
        assert f"\n  {name}" in text
        if isinstance(detail, dict):
            for key in detail:
                assert re.search(rf"\n  [ *] {re.escape(key)}( \[\d+\])? ", text), key
    row = next(line for line in lines if "torch.use_deterministic_algorithms" in line)
    assert row.split()[0] == "*"  # the scope changes it
    assert row.endswith("[False, False]  [True, False]")
    assert re.search(r"\n  \* CUBLAS_WORKSPACE_CONFIG +unset +:4096:8\n", text)
    assert re.search(rf"\n  \* PYTHONHASHSEED +unset +{hash_seed(0)}\n", text)
    assert re.search(r"\n  random +its own state +seeded from 0\n", text)
    # no heading without rows, and the environment only once
    assert text.count("environment") == 1
    assert "\n\n" not in text


class PluginFlags:
    """A third-party source: one setting, which the scope sets to 'exact'."""

    name = "plugin flags"

    def __init__(self) -> None:
        self.mode = "fast"

    def capture(self) -> object:
        return self.mode

    def seed(self, snapshot: object, plan: Plan) -> None:
        self.mode = "exact"

    def restore(self, snapshot: object) -> None:
        self.mode = str(snapshot)

    def swap(self, snapshot: object) -> object:
        before = self.mode
        self.restore(snapshot)
        return before

    def describe(self) -> dict[str, object]:
        return {"plugin.mode": self.mode, "plugin.empty": None}


class PluginState:
    name = "plugin rng"

    def capture(self) -> object:
        return None

    def seed(self, snapshot: object, plan: Plan) -> None:
        pass

    def restore(self, snapshot: object) -> None:
        pass

    def swap(self, snapshot: object) -> object:
        return None


class NoSettings(PluginState):
    name = "plugin with nothing to show"

    def describe(self) -> dict[str, object]:
        return {}


def test_a_new_source_appears_without_an_edit_to_the_doctor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = repro_ctx.sources.default_set.default_sources
    extra = (PluginFlags(), PluginState(), NoSettings())
    monkeypatch.setattr(
        repro_ctx.sources.default_set, "default_sources", lambda: defaults() + extra
    )
    lines = covered_lines(covered(5), 5)
    text = "\n".join(lines)
    assert "\n  plugin flags\n" in text
    assert re.search(r"\n  \* plugin\.mode +fast +exact\n", text)
    assert re.search(r"\n    plugin\.empty +None +None", text)
    assert re.search(r"\n  plugin rng +its own state +seeded from 5", text)
    assert "plugin with nothing to show" not in text  # no empty heading
    assert covered(None)[-2].seeded == "kept, restored on exit"


def test_values_that_look_like_bugs_are_explained_once_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = doctor_report()
    report["scope"]["sources"]["torch flags"]["settings"][
        "torch._inductor.config.deterministic"] = {"now": None, "in_scope": None}
    text = "\n".join(doctor_lines(report))
    number = re.search(r"torch\._inductor\.config\.deterministic \[(\d+)\]", text)
    assert number is not None
    assert (f"\n  [{number.group(1)}] None: torch._inductor is not imported yet (torch.compile "
            "imports it); a scope sets it once it is") in text
    notes = [line for line in text.splitlines() if re.match(r"  \[\d+\] ", line)]
    assert len(notes) == len(set(notes))
    assert report["notes"]["torch.backends.cudnn.allow_tf32"].startswith("True is torch's default")
    # imported, the value is False and needs no note
    report["scope"]["sources"]["torch flags"]["settings"][
        "torch._inductor.config.deterministic"] = {"now": False, "in_scope": True}
    text = "\n".join(doctor_lines(report))
    assert re.search(r"\n  \* torch\._inductor\.config\.deterministic +False +True\n", text)


# doctor's other sections, and the verdict --------------------------------------------------------


def test_doctor_reports_versions_devices_and_this_processes_hashing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "123")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    assert main(["doctor", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    import numpy as np

    assert out.startswith(f"versions: python {sys.version.split()[0]}, torch {torch.__version__}")
    assert f"NumPy {np.__version__}" in out
    assert f"devices: cpu (name {devices(torch)[0]['name']}, threads " in out
    assert "inside deterministic(seed=2)" in out
    assert re.search(r"\n    CUBLAS_WORKSPACE_CONFIG +:16:8 +:16:8\n", out)  # the user's is kept
    assert re.search(rf"\n  \* PYTHONHASHSEED +123 +{hash_seed(2)}\n", out)
    expected = "fixed" if hash_seed_fixed() else "randomised"  # as this interpreter started
    assert f"\nthis process\n  str hashing: {expected}" in out
    assert "  cpu: " in out
    assert out.splitlines()[-1].startswith("verdict: reproducible here")


def test_doctor_text_says_when_hash_randomisation_is_off() -> None:
    report = doctor_report()
    report["environment"]["hash_randomization"] = False
    report["environment"]["hash_seed_fixed"] = True
    report["environment_record"]["hash_seed"]["PYTHONHASHSEED"] = None
    text = "\n".join(doctor_lines(report))
    assert "str hashing: fixed (PYTHONHASHSEED was set when it started)" in text
    del report["environment"]["hash_seed_fixed"]  # a version 1 report
    assert "str hashing: fixed (PYTHONHASHSEED was set" in "\n".join(doctor_lines(report))


def test_a_non_zero_hash_seed_is_fixed_and_repro_ctx_run_clears_the_fix() -> None:
    # sys.flags.hash_randomization is 1 for PYTHONHASHSEED=1, yet hashes repeat
    result = run_cli("run", "--", sys.executable, "-m", "repro_ctx", "doctor")
    assert result.returncode == 0, result.stderr
    assert f"str hashing: fixed (PYTHONHASHSEED={hash_seed(0)} when it started)" in (
        result.stdout)
    assert result.stdout.splitlines()[-1].endswith("first thing to fix: nothing")
    unset = run_cli("doctor", "--json")
    report = json.loads(unset.stdout)
    assert report["environment"]["hash_seed_fixed"] is False
    assert report["verdict"]["first_fix"].startswith("start programs with `repro-ctx run")


def test_nondeterminism_fails_both_with_the_same_verdict(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repro_ctx.tools.selfcheck, "training_step", nondeterministic_step)
    assert main(["doctor"]) == 1
    doctor_out = capsys.readouterr().out
    assert main([]) == 1
    main_out = capsys.readouterr().out
    assert "DIFFERENT" in main_out
    assert doctor_out.splitlines()[-1] == main_out.splitlines()[-1] == (
        "verdict: NOT reproducible here: a seeded training step gave different weights in two "
        "runs on cpu; first thing to fix: find the op with repro_ctx.find_divergence(step) on "
        "your own training step"
    )
    assert main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["deterministic"] is False
    assert report["self_check"][0]["deterministic"] is False
    assert report["verdict"]["reproducible"] is False


def test_a_failing_self_check_is_diagnosed_by_find_divergence(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repro_ctx.tools.selfcheck, "training_step", noisy_torch_step)
    assert main(["--seed", "3"]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("verdict: NOT reproducible here: a seeded training step gave "
                           "different weights in two runs on cpu; first thing to fix: draw it "
                           "from a seeded RNG")
    assert "(op #1 aten.mul.Tensor gave different bytes" in last


def test_the_verdict_names_the_first_thing_to_fix() -> None:
    passed = [{"device": "cpu", "deterministic": True}, {"device": "cuda", "deterministic": True}]
    assert verdict(passed, False, False) == {
        "reproducible": True, "first_fix": None,
        "line": "verdict: reproducible here (a seeded training step repeated bit for bit on "
                "cpu, cuda); first thing to fix: nothing",
    }
    assert "CUBLAS_WORKSPACE_CONFIG=:4096:8 before the program starts" in (
        verdict(passed, True, True)["first_fix"])
    assert "`repro-ctx run -- CMD`" in verdict(passed, True, False)["first_fix"]
    failed = [{"device": "cpu", "deterministic": True}, {"device": "cuda", "deterministic": False}]
    result = verdict(failed, True, True, {"cuda": "pass algorithms=True"})
    assert result["reproducible"] is False
    assert result["line"].endswith("different weights in two runs on cuda; first thing to fix: "
                                   "pass algorithms=True")


def test_doctor_json_has_a_versioned_schema() -> None:
    result = run_cli("doctor", "--json", PYTHONHASHSEED="0")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["schema"], report["schema_version"]) == (SCHEMA, SCHEMA_VERSION) == (
        "repro-ctx doctor", 2)
    documented = re.findall(r"``(\w+)``", doctor_report.__doc__ or "")
    assert set(report) <= set(documented)
    assert set(report) == {"schema", "schema_version", "versions", "devices", "flags", "scope",
                           "notes", "environment", "environment_record", "self_check",
                           "deterministic", "verdict", "plugins"}
    assert report["versions"]["torch"] == torch.__version__
    assert report["versions"]["python"] == sys.version.split()[0]
    assert set(report["versions"]) == {"python", "torch", "cuda", "cudnn", "numpy"}
    assert report["devices"][0]["type"] == "cpu"
    assert report["environment"] == {
        "hash_randomization": False, "PYTHONHASHSEED": "0", "hash_seed_fixed": True,
        "CUBLAS_WORKSPACE_CONFIG": None,
    }
    record = report["environment_record"]
    assert record["schema"] == "repro-ctx environment"
    assert record["torch"]["version"] == torch.__version__
    assert record["torch"]["threads"] == 1  # the child's OMP_NUM_THREADS
    assert record["variables"]["OMP_NUM_THREADS"] == "1"
    assert record["hash_seed"] == {"PYTHONHASHSEED": "0", "fixed": True}
    flags = report["flags"]["torch flags"]
    assert flags["torch.backends.cudnn.benchmark"] is False
    assert flags["torch.use_deterministic_algorithms (mode, warn_only)"] == [False, False]
    scope = report["scope"]
    assert scope["seed"] == 0
    assert scope["sources"]["environment"] == {
        "kind": "variables",
        "settings": {"CUBLAS_WORKSPACE_CONFIG": {"now": None, "in_scope": ":4096:8"},
                     "PYTHONHASHSEED": {"now": "0", "in_scope": hash_seed(0)},
                     **{name: {"now": None, "in_scope": None} for name in SCOPED_NAMES[2:]}},
    }
    assert scope["sources"]["torch flags"]["kind"] == "settings"
    assert scope["sources"]["torch flags"]["settings"][
        "torch.use_deterministic_algorithms (mode, warn_only)"] == {
        "now": [False, False], "in_scope": [True, False]}
    assert scope["sources"]["random"] == {"kind": "state", "in_scope": "seeded from 0"}
    assert report["notes"][INDUCTOR_FLAG].startswith("None: ")
    assert [check["device"] for check in report["self_check"]] == (
        ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    assert all(check["first"] == check["second"] for check in report["self_check"])
    assert report["deterministic"] is True
    assert report["verdict"]["reproducible"] is True
    assert report["verdict"]["first_fix"] is None
    assert report["verdict"]["line"].endswith("first thing to fix: nothing")


def test_devices_lists_cuda_and_mps_where_present() -> None:
    fake: Any = SimpleNamespace(
        get_num_threads=lambda: 4,
        cuda=SimpleNamespace(
            is_available=lambda: True,
            device_count=lambda: 2,
            get_device_capability=lambda index: (9, index),
            get_device_name=lambda index: f"GPU {index}",
        ),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: True)),
    )
    found = devices(fake)
    assert found[0]["type"] == "cpu"
    assert found[0]["threads"] == 4
    assert found[1:] == [
        {"type": "cuda", "index": 0, "name": "GPU 0", "capability": "9.0"},
        {"type": "cuda", "index": 1, "name": "GPU 1", "capability": "9.1"},
        {"type": "mps", "name": "Apple MPS"},
    ]


class CountingSource:
    """A minimal source plugin: a module-level counter."""

    name = "doctor test counter"

    def __init__(self) -> None:
        self.value = 0

    def capture(self) -> int:
        return self.value

    def seed(self, seed: int) -> None:
        self.value = seed % 1000

    def restore(self, snapshot: int) -> None:
        self.value = snapshot


def test_doctor_lists_source_plugins() -> None:
    from repro_ctx import register_source, unregister_source

    report = doctor_report()
    assert report["plugins"] == {}
    assert "\nsource plugins: none found" in "\n".join(doctor_lines(report))
    source = CountingSource()
    register_source(source)
    try:
        report = doctor_report()
    finally:
        unregister_source(source)
    entry = report["plugins"]["doctor test counter"]
    assert entry["status"] == "active"
    assert entry["state_dict"] == "no (no to_plain)"
    text = "\n".join(doctor_lines(report))
    assert re.search(r"\nsource plugins\n  doctor test counter: active \(from .+, saved in "
                     r"state_dict: no \(no to_plain\)\)", text)
