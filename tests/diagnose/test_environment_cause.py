"""Two machines that differ: env-diff names each difference, compare() names the environment.

The environments really differ: each pair is two processes of the same
script, one with another ``torch.set_num_threads``, ``ATEN_CPU_CAPABILITY=
default`` (where this machine vectorises) and a variable that changes
MKL's code paths. Each process writes ``record()``'s file, ``doctor``'s
record and its RNG state dict; the checks read them here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import repro_ctx
from repro_ctx import RNGState, compare
from repro_ctx.diagnose.records import last_bits, max_ulp_difference, ulp_distance
from repro_ctx.sources.inductor import release
from repro_ctx.tools.cli import main

ROOT = Path(__file__).resolve().parents[2]
CAPABILITY = torch.backends.cpu.get_cpu_capability()
# what torch calls the capability ATEN_CPU_CAPABILITY=default forces: "NO AVX" up to
# 2.4 at least, "DEFAULT" from 2.9 at the latest (read on 2.4.1, 2.9.1 and 2.13.0)
FORCED = "DEFAULT" if release(torch) >= (2, 9) else "NO AVX"
VECTORISED = CAPABILITY != FORCED

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    import repro_ctx
    from repro_ctx.state.environment_record import environment_record

    folder, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)

    def step():
        x = torch.randn(1 << 22)  # large enough that the sum splits across threads
        return (x * 1.5).sum()

    repro_ctx.record(step, path=f"{folder}/ops.json")
    with open(f"{folder}/doctor.json", "w") as handle:
        json.dump({"environment_record": environment_record()}, handle)
    torch.save(repro_ctx.capture().state_dict(), f"{folder}/rng.pt")
""")


def run_script(folder: Path, threads: int, **variables: str) -> Path:
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0", **variables}
    for name in ("ATEN_CPU_CAPABILITY", "MKL_CBWR"):
        if name not in variables:
            env.pop(name, None)
    subprocess.run([sys.executable, "-c", SCRIPT, str(folder), str(threads)], check=True,
                   env=env, cwd=folder, timeout=600)
    return folder


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``here``: as this process; ``threads``: another thread count; ``other``: three changes."""
    root = tmp_path_factory.mktemp("machines")
    threads = torch.get_num_threads()
    return {
        "here": run_script(root / "here", threads),
        "threads": run_script(root / "threads", threads + 1),
        "other": run_script(root / "other", threads + 1, ATEN_CPU_CAPABILITY="default",
                            MKL_CBWR="COMPATIBLE"),
    }


def test_env_diff_names_each_difference_and_how_it_changes_results(
    machines: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    here, other = machines["here"] / "doctor.json", machines["other"] / "doctor.json"
    assert main(["env-diff", str(here), str(other)]) == 1
    out = capsys.readouterr().out
    threads = torch.get_num_threads()
    lines = out.splitlines()
    assert lines[0] == f"repro-ctx env-diff: {here} vs {other}"
    assert lines[1] == "can change results"
    assert (f"  torch.threads: threads {threads} vs {threads + 1}: parallel reductions split "
            "differently") in lines
    assert ("  variables.MKL_CBWR: MKL_CBWR unset vs COMPATIBLE: MKL's conditional numerical "
            "reproducibility picks other code paths") in lines
    assert ("  variables.ATEN_CPU_CAPABILITY: ATEN_CPU_CAPABILITY unset vs default: torch's "
            "CPU kernels use another vector width") in lines
    if VECTORISED:
        assert (f"  torch.cpu_capability: CPU capability {CAPABILITY} vs {FORCED}: vectorised "
                "reductions sum in another order") in lines
    assert lines[-1].startswith("verdict: these environments can give different results (")
    assert "torch.threads" in lines[-1]


def test_env_diff_reads_record_files_too_and_passes_on_one_environment(
    machines: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ops, doctor = machines["here"] / "ops.json", machines["here"] / "doctor.json"
    assert main(["env-diff", str(ops), str(ops)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "verdict: same environment: no difference"
    # record() leaves the flags to its header: the two records differ only there
    assert main(["env-diff", str(doctor), str(ops)]) == 0
    assert "verdict: same" in capsys.readouterr().out


def test_compare_names_the_environment_with_the_fields_and_the_fix(
    machines: dict[str, Path],
) -> None:
    report = compare(machines["here"] / "ops.json", machines["other"] / "ops.json")
    assert not report.matched
    assert report.cause is not None
    assert report.cause.kind == "environment"
    assert "torch.threads" in report.cause.reason
    assert "variables.MKL_CBWR" in report.cause.reason
    assert "threads" in report.cause.reason
    assert "split differently" in report.cause.reason
    assert report.cause.fix.startswith("run both on the same build and settings")
    assert "repro-ctx env-diff" in report.cause.fix
    assert f"cause         {report.cause.reason}" in str(report)


def test_a_sum_split_across_other_threads_differs_in_the_last_bits(
    machines: dict[str, Path],
) -> None:
    report = compare(machines["here"] / "ops.json", machines["threads"] / "ops.json")
    assert report.kind == "values"
    assert report.op is not None
    assert report.op.name == "aten.sum.default"
    assert report.cause is not None
    assert report.cause.kind == "environment"
    assert "(torch.threads)" in report.cause.reason
    assert "ulp (float32) over the recorded samples: only in the last bits" in (
        report.cause.reason
    )
    assert "accept the difference and compare results with a tolerance (rtol about" in (
        report.cause.fix
    )
    assert report.other_op is not None
    found = max_ulp_difference(report.op, report.other_op)
    assert found is not None
    assert found[1] == "torch.float32"
    assert f"by at most {found[0]} ulp" in report.cause.reason


def test_restoring_a_state_saved_elsewhere_warns_once_with_the_differences(
    machines: dict[str, Path],
) -> None:
    saved = torch.load(machines["other"] / "rng.pt", weights_only=True)
    assert saved["environment"]["torch.threads"] == torch.get_num_threads() + 1
    state = RNGState.from_state_dict(saved)
    before = repro_ctx.capture()
    with pytest.warns(UserWarning, match="saved in an environment") as caught:
        state.restore(strict=False)
    before.restore()
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "saved in an environment that differs from this one" in message
    threads = torch.get_num_threads()
    assert (f"threads {threads + 1} vs {threads}: parallel reductions split differently "
            "(saved vs here)") in message
    if VECTORISED:
        assert f"CPU capability {FORCED} vs {CAPABILITY}" in message
    assert f"environment summary: threads {threads + 1} vs {threads}: parallel reductions split " \
           "differently" in state.diff(repro_ctx.capture())
    assert state == RNGState.from_state_dict(saved)  # equality is of the streams only


def test_a_state_saved_here_restores_without_a_warning(machines: dict[str, Path]) -> None:
    saved = torch.load(machines["here"] / "rng.pt", weights_only=True)
    state = RNGState.from_state_dict(saved)
    before = repro_ctx.capture()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state.restore()
        before.restore()
    assert not [line for line in state.diff(repro_ctx.capture())
                if line.startswith("environment summary")]


def test_the_doctor_records_of_the_pair_are_json_with_the_variables(
    machines: dict[str, Path],
) -> None:
    record = json.loads((machines["other"] / "doctor.json").read_text())["environment_record"]
    assert record["variables"]["MKL_CBWR"] == "COMPATIBLE"
    assert record["torch"]["cpu_capability"] == FORCED
    assert record["hash_seed"] == {"PYTHONHASHSEED": "0", "fixed": True}


# units ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("p", "q", "dtype", "expected"), [
    (1.0, 1.0 + 2.0 ** -23, "torch.float32", 1),
    (1.0, 1.0 + 2.0 ** -52, "torch.float64", 1),
    (1.0, 1.0 + 2.0 ** -10, "torch.float16", 1),
    (1.0, 1.0 + 2.0 ** -7, "torch.bfloat16", 1),
    (0.0, -0.0, "torch.float32", 0),
    (-(2.0 ** -149), 2.0 ** -149, "torch.float32", 2),  # across zero
    (1.0, 2.0, "torch.float32", 1 << 23),
    (1.0, float("inf"), "torch.float32", None),
    (1.0, float("nan"), "torch.float32", None),
    (1.0, 2.0, "torch.int64", None),
    (1e300, 1.0, "torch.float32", None),  # not a float32: no ulps
])
def test_ulp_distance(p: float, q: float, dtype: str, expected: int | None) -> None:
    assert ulp_distance(p, q, dtype) == expected
    assert ulp_distance(q, p, dtype) == expected


def test_last_bits_is_a_third_of_the_mantissa() -> None:
    assert last_bits(127, "torch.float32")
    assert not last_bits(128, "torch.float32")
    assert last_bits(7, "torch.float16")
    assert not last_bits(8, "torch.float16")
