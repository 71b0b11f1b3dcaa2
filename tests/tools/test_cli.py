"""``repro-ctx`` / ``python -m repro_ctx``: the default report, doctor, run and check.

Most cases call ``main([...])`` in-process (counted by coverage) and start real
child programs; a few run the real command line in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import repro_ctx
from repro_ctx.core.seed import ENV_SEED_VARIABLE, hash_seed
from repro_ctx.tools.cli import child_environment, main
from repro_ctx.tools.outputs import Output, first_difference, set_aside
from tests.waits import HANG_TIMEOUT

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


@pytest.fixture(autouse=True)
def _children_import_repro_ctx(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Children find repro_ctx; the self-check's run outside a scope moves no RNG of the suite."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv(ENV_SEED_VARIABLE, raising=False)
    with repro_ctx.deterministic(None, algorithms=None, benchmark=None, tf32=None):
        yield


def cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The real command line, in a new interpreter."""
    return subprocess.run([PY, "-m", "repro_ctx", *args], capture_output=True, text=True,
                          check=False, timeout=HANG_TIMEOUT, **kwargs)


# --------------------------------------------------------------------------
# the default job and doctor
# --------------------------------------------------------------------------


# The default job and doctor are tested in test_doctor.py.


# --------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------

SHOW_ENV = (
    "import os, repro_ctx; "
    "print(repro_ctx.env_seed(), os.environ['PYTHONHASHSEED'], "
    "os.environ['CUBLAS_WORKSPACE_CONFIG'], hash('repro'))"
)


def test_run_hands_the_seed_hash_seed_and_cublas_config_to_the_program(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    assert main(["run", "--seed", "5", "--", PY, "-c", SHOW_ENV]) == 0
    first = capfd.readouterr().out.split()
    assert first[:3] == ["5", hash_seed(5), ":4096:8"]
    assert main(["run", "--seed", "5", PY, "-c", SHOW_ENV]) == 0  # `--` is optional
    assert capfd.readouterr().out.split() == first  # same hash(): PYTHONHASHSEED is fixed
    assert main(["run", "--", PY, "-c", SHOW_ENV]) == 0
    assert capfd.readouterr().out.split()[:2] == ["0", hash_seed(0)]
    assert ENV_SEED_VARIABLE not in os.environ


def test_run_keeps_a_cublas_config_already_set(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    assert main(["run", "--seed", str(2**64 - 1), "--", PY, "-c", SHOW_ENV]) == 0
    assert capfd.readouterr().out.split()[:3] == [str(2**64 - 1), hash_seed(2**64 - 1), ":16:8"]


def test_child_environment_does_not_touch_the_base() -> None:
    base = {"PATH": "/bin", "PYTHONHASHSEED": "7"}
    env = child_environment(9, base)
    assert base == {"PATH": "/bin", "PYTHONHASHSEED": "7"}
    assert env == {"PATH": "/bin", "PYTHONHASHSEED": hash_seed(9),
                   "CUBLAS_WORKSPACE_CONFIG": ":4096:8", ENV_SEED_VARIABLE: "9"}


def test_the_seed_drives_a_deterministic_scope_in_the_program(
    capfd: pytest.CaptureFixture[str],
) -> None:
    program = ("import random, repro_ctx\n"
               "with repro_ctx.deterministic(seed=repro_ctx.env_seed()):\n"
               "    print(random.random())")
    assert main(["run", "--seed", "12", "--", PY, "-c", program]) == 0
    assert float(capfd.readouterr().out) == random.Random(12).random()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("abc", "ValueError: REPRO_CTX_SEED must be an int in [0, 2**64), got 'abc'"),
        ("-1", "ValueError: REPRO_CTX_SEED must be in [0, 2**64), got -1"),
        (str(2**64), f"ValueError: REPRO_CTX_SEED must be in [0, 2**64), got {2**64}"),
    ],
)
def test_a_bad_seed_in_the_environment_gets_the_bad_seed_error(value: str, error: str) -> None:
    env = {**os.environ, ENV_SEED_VARIABLE: value}
    result = subprocess.run([PY, "-c", "import repro_ctx; repro_ctx.env_seed()"], env=env,
                            capture_output=True, text=True, check=False, timeout=HANG_TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == error
    with pytest.raises(ValueError, match=re.escape("seed must be in [0, 2**64), got -1")):
        repro_ctx.deterministic(seed=-1)


def test_run_passes_the_exit_status_on() -> None:
    assert main(["run", "--", PY, "-c", "raise SystemExit(7)"]) == 7


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_a_program_killed_by_a_signal_exits_like_a_shell_reports_it() -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    assert main(["run", "--", PY, "-c", code]) == 128 + signal.SIGTERM


def test_run_from_the_real_command_line() -> None:
    result = cli("run", "--seed", "3", "--", PY, "-c", SHOW_ENV + "; raise SystemExit(4)")
    assert result.returncode == 4
    assert result.stdout.split()[:3] == ["3", hash_seed(3), ":4096:8"]


# --------------------------------------------------------------------------
# usage errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["run"], ["run", "--"], ["run", "--seed", "1"], ["check", "--compare", "out.txt"],
     ["check", "-n", "3", "--"]],
)
def test_a_missing_command_is_a_one_line_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "error: no command given" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--seed", "x", "--", "true"], "a seed must be an int in [0, 2**64), got 'x'"),
        (["run", "--seed", "-3", "--", "true"], "seed must be in [0, 2**64), got -3"),
        (["check", "-n", "1", "--", "true"], "must be at least 2"),
        (["check", "-n", "two", "--", "true"], "must be an integer >= 2, got 'two'"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["doctor", "--colour"], "unrecognized arguments: --colour"),
        (["--seed", "1", "doctor"], "--seed goes after the command: repro-ctx doctor --seed N"),
        (["doctor", "--", "true"], "`-- CMD` goes with `repro-ctx run` or `repro-ctx check`"),
        (["run", "true", "--", "false"], "give the command once, after --"),
    ],
)
def test_bad_usage_is_an_argparse_error_with_exit_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: repro-ctx")
    assert message in err


def test_bad_usage_from_the_real_command_line() -> None:
    result = cli("check", "-n", "0", "--", "true")
    assert result.returncode == 2
    assert "argument -n/--runs: must be at least 2" in result.stderr
    result = cli("run")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_command_that_cannot_start_is_a_one_line_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error is stderr's last line and its only error (``check`` announces its runs first)."""
    missing = tmp_path / "no-such-program"
    assert main([command, "--", str(missing)]) == 127
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"repro-ctx {command}: error: command not found: {missing}"
    assert err.count("error:") == 1
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    if os.access(script, os.X_OK):  # pragma: no cover - running as a user that ignores modes
        pytest.skip("the file is executable for this user")
    assert main([command, "--", str(script)]) == 126
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"repro-ctx {command}: error: command not executable")
    assert err.count("error:") == 1


def test_an_interrupt_exits_with_status_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "run", interrupted)
    assert main(["run", "--", "true"]) == 130


# --------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------

WRITER = """\
import os, random, sys
import repro_ctx
out = sys.argv[1]
values = [random.Random(repro_ctx.env_seed()).random() for _ in range(3)]
print("header")
print(sorted({"alpha", "beta", "gamma", "delta"}, key=hash))  # order depends on PYTHONHASHSEED
print(values)
noise = sys.argv[2] if len(sys.argv) > 2 else ""
with open(out, "w") as f:
    f.write("line one\\nline two\\n")
    f.write(os.urandom(4).hex() if noise == "file" else "stable")
if noise == "stdout":
    print("tail", os.urandom(4).hex())
"""


@pytest.fixture
def writer(tmp_path: Path) -> Path:
    path = tmp_path / "writer.py"
    path.write_text(WRITER)
    return path


def test_check_passes_when_every_run_matches(
    writer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.txt"
    out.write_text("from an earlier run")
    status = main(["check", "-n", "3", "--seed", "4", "--compare", str(out), "--",
                   PY, str(writer), str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured
    assert captured.out.startswith(
        "repro-ctx check: all 3 runs matched, every output identical to run 1's: stdout (")
    assert f"{out} (" in captured.out
    for run in (1, 2, 3):
        assert f"repro-ctx check: run {run}/3 " in captured.err
    assert "run 3/3 matched run 1" in captured.err
    assert out.read_text() == "line one\nline two\nstable"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.txt", "writer.py"]


def test_check_reports_the_first_difference_in_stdout(
    writer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.txt"
    assert main(["check", "--", PY, str(writer), str(out), "stdout"]) == 1
    captured = capsys.readouterr().out
    lines = captured.splitlines()
    assert lines[0] == "repro-ctx check: run 2 differs from run 1 in stdout"
    header = "header\n"
    second = len(header) + len(str(sorted({"alpha", "beta", "gamma", "delta"}))) + 1
    assert lines[1].startswith("  stdout: first difference at line 4, column ")
    offset = int(lines[1].rsplit("byte offset ", 1)[1].rstrip(")"))
    assert offset > second
    assert lines[2].startswith("    run 1: b'tail ")
    assert lines[3].startswith("    run 2: b'tail ")


def test_check_reports_the_first_difference_in_a_compared_file(
    writer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.txt"
    assert main(["check", "--compare", str(out), "--", PY, str(writer), str(out), "file"]) == 1
    lines = capsys.readouterr().out.splitlines()
    first_byte = len("line one\nline two\n")
    assert lines[1].startswith(f"  {out}: first difference at line 3, column ")
    column = int(lines[1].split("column ")[1].split()[0])
    assert lines[1].endswith(f"(byte offset {first_byte + column - 1})")


def test_check_fails_when_a_run_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--", PY, "-c", "raise SystemExit(3)"]) == 1
    assert "repro-ctx check: run 1 failed with exit status 3" in capsys.readouterr().err


def test_check_fails_when_a_compared_file_is_not_written_and_keeps_the_old_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "kept.txt"
    kept.write_text("precious")
    missing = tmp_path / "missing.txt"
    status = main(["check", "--compare", str(kept), str(missing), "--", PY, "-c", "print(1)"])
    assert status == 1
    err = capsys.readouterr().err
    assert f"run 1 did not write {kept}, {missing} (--compare names files" in err
    assert kept.read_text() == "precious"
    assert not missing.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kept.txt"]


def test_check_rejects_a_directory_to_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--compare", str(tmp_path), "--", "true"]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_check_from_the_real_command_line(writer: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    result = cli("check", "--compare", str(out), "--", PY, str(writer), str(out))
    assert result.returncode == 0, result.stderr
    assert "all 2 runs matched" in result.stdout
    assert "run 2/2" in result.stderr


# --------------------------------------------------------------------------
# locating the first difference
# --------------------------------------------------------------------------


def brute_force(a: bytes, b: bytes) -> tuple[int, int, int] | None:
    if a == b:
        return None
    offset = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    line_start = a.rfind(b"\n", 0, offset) + 1
    return offset, a.count(b"\n", 0, offset) + 1, offset - line_start + 1


@given(
    st.binary(max_size=40).map(lambda data: data.replace(b"\x00", b"\n")),
    st.binary(max_size=40).map(lambda data: data.replace(b"\x00", b"\n")),
    st.integers(1, 8),
)
def test_first_difference_finds_offset_line_and_column_across_chunks(
    a: bytes, b: bytes, chunk: int
) -> None:
    for x, y in [(a, b), (a, a + b), (a + b, a)]:
        found = first_difference(Output.from_bytes("x", x), Output.from_bytes("y", y), chunk)
        expected = brute_force(x, y)
        if expected is None:
            assert found is None
        else:
            assert found is not None
            assert (found.offset, found.line, found.column) == expected


def test_a_difference_is_shown_with_its_line(tmp_path: Path) -> None:
    reference = tmp_path / "a"
    reference.write_bytes(b"one\ntwo three\nfour")
    other = Output.from_bytes("b", b"one\ntwo THREE\nfour")
    difference = first_difference(Output.from_file("a", str(reference)), other)
    assert difference is not None
    assert difference.describe("out", "run 2") == (
        "  out: first difference at line 2, column 5 (byte offset 8)\n"
        "    run 1: b'two three'\n"
        "    run 2: b'two THREE'"
    )
    shorter = first_difference(Output.from_bytes("a", b"abc"), Output.from_bytes("b", b"ab"))
    assert shorter is not None
    assert shorter.describe("stdout", "run 3").splitlines()[1:] == [
        "    run 1: b'abc'", "    run 3: b'ab'"
    ]
    empty = first_difference(Output.from_bytes("a", b""), Output.from_bytes("b", b"x"))
    assert empty is not None
    assert "run 1: <end of output>" in empty.describe("stdout", "run 2")


def test_set_aside_restores_unwritten_files_and_keeps_written_ones(tmp_path: Path) -> None:
    old = tmp_path / "old.txt"
    old.write_text("old")
    rewritten = tmp_path / "rewritten.txt"
    rewritten.write_text("before")
    with set_aside([str(old), str(rewritten), str(tmp_path / "new.txt")]):
        assert not old.exists()
        assert not rewritten.exists()
        rewritten.write_text("after")
    assert old.read_text() == "old"
    assert rewritten.read_text() == "after"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["old.txt", "rewritten.txt"]


# --------------------------------------------------------------------------
# check: outputs compared as tensors, failed runs, a forgotten `--`
# --------------------------------------------------------------------------

CHECKPOINT_WRITER = """\
import os, sys
import numpy as np
import torch
out = sys.argv[1]
noise = int.from_bytes(os.urandom(4), "little") / 2**32 + 1.0  # a new value in every run
weights = {"a.weight": torch.zeros(2, 2), "b.weight": torch.ones(3, 4), "b.bias": torch.zeros(4)}
weights["b.weight"][1, 2] += noise
if out.endswith(".pt"):
    torch.save(weights, out)
elif out.endswith(".npz"):
    np.savez(out, w=np.ones(3), v=weights["b.weight"].numpy())
else:
    np.save(out, weights["b.weight"].numpy())
"""


@pytest.fixture
def checkpoint_writer(tmp_path: Path) -> Path:
    path = tmp_path / "save.py"
    path.write_text(CHECKPOINT_WRITER)
    return path


@pytest.mark.parametrize(
    ("name", "key", "dtype"),
    [("model.pt", "state_dict['b.weight']", "torch.float32"),
     ("arrays.npz", "arrays['v']", "float32"), ("array.npy", "array", "float32")],
)
def test_check_names_the_tensor_that_differs(
    checkpoint_writer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
    key: str, dtype: str,
) -> None:
    out = tmp_path / name
    assert main(["check", "--compare", str(out), "--", PY, str(checkpoint_writer), str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"repro-ctx check: run 2 differs from run 1 in {out}; matched: stdout"
    assert lines[1] == f"  {out}: {key} differs: shape (3, 4), {dtype}"
    assert re.fullmatch(
        rf"    1 of 12 elements differ; the first at {re.escape(key)}\[1, 2\]: "
        r"run 1 2\.\d+, run 2 2\.\d+", lines[2]
    ), lines[2]
    assert re.fullmatch(r"    max abs diff \S+, max rel diff \S+  \(\|a-b\| / max\(\|a\|,\|b\|\)\)",
                        lines[3]), lines[3]
    assert "byte offset" not in "\n".join(lines)


def test_a_tensor_file_that_cannot_be_read_falls_back_to_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "broken.pt"
    # not a pickle, and different in every run (the process id), never a newline first
    code = f"import os; open({str(out)!r}, 'wb').write(b'broken %d' % os.getpid())"
    assert main(["check", "--compare", str(out), "--", PY, "-c", code]) == 1
    text = capsys.readouterr().out
    assert f"  {out}: first difference at line 1" in text
    assert re.search(r"\n    \(not compared as tensors: \w+Error: .+\)\n", text)  # and why


def test_check_shows_how_a_failed_run_ended(capsys: pytest.CaptureFixture[str]) -> None:
    code = ("import sys\n"
            "for i in range(30): print('out', i)\n"
            "print('Traceback: something broke', file=sys.stderr)\n"
            "raise SystemExit(3)")
    assert main(["check", "--", PY, "-c", code]) == 1
    err = capsys.readouterr().err
    assert "repro-ctx check: run 1 failed with exit status 3" in err
    after = err.split("failed with exit status 3\n", 1)[1].splitlines()
    assert after[0] == "  its stdout (last 20 lines):"
    assert after[1:21] == [f"    | out {i}" for i in range(10, 30)]
    assert after[21:] == ["  its stderr (end):", "    | Traceback: something broke"]
    # stderr also reached the terminal while the run went on, before the summary
    assert err.index("Traceback: something broke") < err.index("failed with exit status 3")


def test_check_passes_stderr_on_where_ours_takes_only_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text_only = io.StringIO()  # no .buffer, as some IDE consoles and wrappers
    monkeypatch.setattr(sys, "stderr", text_only)
    code = "import sys; sys.stderr.write('caf\\xe9 warning\\n'); raise SystemExit(2)"
    assert main(["check", "--", PY, "-c", code]) == 1
    assert "café warning\n" in text_only.getvalue()
    assert "    | café warning" in text_only.getvalue()


def test_a_failed_run_with_no_output_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--", PY, "-c", "raise SystemExit(4)"]) == 1
    err = capsys.readouterr().err
    assert "  its stdout was empty\n  its stderr was empty\n" in err


def test_a_forgotten_separator_names_the_words_taken_as_files(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "-n", "3", "--compare", "out.pt", PY, "train.py"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err == (
        f"repro-ctx check: error: no command given: `{PY}` and `train.py` were taken as "
        f"--compare files; put the command after `--`: repro-ctx check -n 3 --compare out.pt "
        f"-- {PY} train.py\n"
    )
    assert main(["check", "--compare", "out.pt", "train.py"]) == 2
    assert "`train.py` was taken as --compare files; put the command after `--`: " \
        "repro-ctx check --compare out.pt -- train.py" in capsys.readouterr().err
    many = ["check", "--compare", "a.pt", PY, "train.py", "x", "y"]
    assert main(many) == 2
    assert f"`{PY}`, `train.py`, `x` and the rest were taken" in capsys.readouterr().err
    # the file is also an argument of the command: only the command's words move
    assert main(["check", "--compare", "out.pt", PY, "save.py", "out.pt"]) == 2
    assert capsys.readouterr().err.endswith(
        f"`{PY}`, `save.py` and `out.pt` were taken as --compare files; put the command after "
        f"`--`: repro-ctx check --compare out.pt -- {PY} save.py out.pt\n")


def test_a_commands_own_options_without_separator_say_where_they_go(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--compare", "out.pt", PY, "train.py", "--epochs", "3"])
    assert exit_info.value.code == 2
    assert ("unrecognized arguments: --epochs (the command's own options go after `--`: "
            "repro-ctx check [options] -- CMD...)") in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::UserWarning")  # deprecated quantized, experimental complex32
def test_loaded_outputs_are_compared_key_by_key() -> None:
    import numpy as np

    from repro_ctx.tools.tensor_outputs import first_difference as tensor_first_difference

    def differ(a: object, b: object) -> str | None:
        found = tensor_first_difference(a, b, "root")
        return None if found is None else found.describe("f", "run 2")

    ones = torch.ones(2)
    assert differ({"a": ones, "b": [1, 2.5, "x", float("nan")]},
                  {"a": ones.clone(), "b": [1, 2.5, "x", float("nan")]}) is None
    assert differ({"a": 1, "b": 2}, {"a": 1}) == "  f: root['b'] is only in run 1"
    assert differ({"a": 1}, {"a": 1, "c": 2}) == "  f: root['c'] is only in run 2"
    assert differ({"a": 1, "b": 2}, {"b": 2, "a": 1}) == (
        "  f: root has the same keys in another order in run 2")
    assert differ([1, 2], [1, 2, 3]) == "  f: root has 2 items in run 1, 3 in run 2"
    assert differ({"epoch": 3}, {"epoch": 4}) == "  f: root['epoch'] is 3 in run 1, 4 in run 2"
    assert differ((1,), [1]) == "  f: root is a tuple in run 1, a list in run 2"
    assert differ(ones, 1.0) == "  f: root is a Tensor in run 1, a float in run 2"
    assert differ(ones, torch.ones(3)) == (
        "  f: root has shape (2,) in run 1, (3,) in run 2")
    assert differ(ones, ones.double()) == (
        "  f: root has dtype torch.float32 in run 1, torch.float64 in run 2")
    assert differ("x" * 100, "y") == f"  f: root is '{'x' * 56}... in run 1, 'y' in run 2"
    # bitwise: -0.0 and 0.0 differ like their bytes do, with no size to the difference
    zero = differ(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert zero is not None
    assert "1 of 1 elements differ; the first at root[0]: run 1 0.0, run 2 -0.0" in zero
    assert "max abs diff 0, max rel diff 0" in zero
    # NaN against a number: an infinite difference; bfloat16, complex, bool and 0-d tensors
    nan = differ(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))
    assert nan is not None
    assert "max abs diff inf, max rel diff inf" in nan
    bf16 = differ(torch.tensor([1.0, 2.0]).bfloat16(), torch.tensor([1.0, 3.0]).bfloat16())
    assert bf16 is not None
    assert "differs: shape (2,), torch.bfloat16" in bf16
    assert "max abs diff 1, max rel diff 0.333" in bf16
    complex_pair = differ(torch.tensor([1 + 1j]), torch.tensor([1 - 1j]))
    assert complex_pair is not None
    assert "max abs diff 2" in complex_pair
    assert differ(torch.tensor(True), torch.tensor(False)) == (
        "  f: root differs: shape (), torch.bool\n"
        "    1 of 1 elements differ; the first at root[]: run 1 True, run 2 False\n"
        "    max abs diff 1, max rel diff 1  (|a-b| / max(|a|,|b|))")
    assert differ(torch.zeros(0), torch.zeros(0)) is None
    sparse = differ(torch.tensor([[0.0, 1.0]]).to_sparse(), torch.tensor([[0.0, 2.0]]).to_sparse())
    assert sparse is not None
    assert "root[0, 1]: run 1 1.0, run 2 2.0" in sparse
    assert differ({"opt": [{"lr": 0.1}, {"lr": 0.2}]}, {"opt": [{"lr": 0.1}, {"lr": 0.3}]}) == (
        "  f: root['opt'][1]['lr'] is 0.2 in run 1, 0.3 in run 2")
    quantized = differ(torch.quantize_per_tensor(torch.tensor([1.0, 2.0]), 0.5, 0, torch.qint8),
                       torch.quantize_per_tensor(torch.tensor([1.0, 3.0]), 0.5, 0, torch.qint8))
    assert quantized is not None
    assert "the first at root[1]: run 1 4, run 2 6" in quantized  # the stored integers
    half_complex = differ(torch.tensor([1 + 1j]).to(torch.complex32),
                          torch.tensor([1 + 2j]).to(torch.complex32))
    assert half_complex is not None
    assert "torch.complex32" in half_complex
    strings = differ(np.array(["ab", "cd"]), np.array(["ab", "ce"]))
    assert strings is not None
    assert "the first at root[1]: run 1 cd, run 2 ce" in strings
    assert "max abs diff" not in strings


def test_equal_tensors_in_different_bytes_are_reported_as_bytes(tmp_path: Path) -> None:
    import numpy as np

    from repro_ctx.tools.check_report import describe_difference as _describe_difference

    values = np.arange(6.0).reshape(2, 3)
    np.save(tmp_path / "c.npy", values)
    np.save(tmp_path / "f.npy", np.asfortranarray(values))  # same values, other layout on disk
    text = _describe_difference(Output.from_file("out.npy", str(tmp_path / "c.npy")),
                                Output.from_file("out.npy", str(tmp_path / "f.npy")), "run 2")
    assert text.startswith("  out.npy: first difference at line 1")
    assert text.endswith("(read as tensors the contents are equal: the bytes differ outside "
                         "the tensor data)")


def test_safetensors_are_read_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from repro_ctx.tools.tensor_outputs import NotTensors, tensor_difference

    files = {"a": {"w": torch.ones(2)}, "b": {"w": torch.tensor([1.0, 5.0])}}
    monkeypatch.setitem(sys.modules, "safetensors.torch",
                        SimpleNamespace(load_file=lambda path, device: files[path]))
    found = tensor_difference("a", "b", "model.safetensors")
    assert found is not None
    assert found.path == "tensors['w']"
    assert found.index == (1,)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(NotTensors, match=r"install safetensors to compare \.safetensors files"):
        tensor_difference("a", "b", "model.safetensors")


# check: what to compare, what matched, what next --------------------------------------------------


def test_check_ignores_stdout_when_asked_and_says_so(
    writer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.txt"
    assert main(["check", "--ignore-stdout", "--compare", str(out), "--",
                 PY, str(writer), str(out), "stdout"]) == 0
    captured = capsys.readouterr()
    assert captured.out == (f"repro-ctx check: all 2 runs matched, every output identical to "
                            f"run 1's: {out} ({out.stat().st_size} bytes); stdout not compared "
                            "(--ignore-stdout)\n")
    assert "comparing stdout not compared (--ignore-stdout), " in captured.err
    assert main(["check", "--", PY, str(writer), str(out), "stdout"]) == 1  # without it, fails
    capsys.readouterr()


def test_check_masks_what_a_pattern_matches_in_stdout(
    writer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.txt"
    assert main(["check", "--mask-stdout", "tail [0-9a-f]+", "--",
                 PY, str(writer), str(out), "stdout"]) == 0
    captured = capsys.readouterr()
    assert "comparing stdout (masking 'tail [0-9a-f]+')" in captured.err
    assert captured.out.startswith("repro-ctx check: all 2 runs matched")


@pytest.mark.parametrize(("arguments", "message"), [
    (["--mask-stdout", "("], "argument --mask-stdout: not a regular expression: '('"),
])
def test_a_bad_mask_is_a_usage_error(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", *arguments, "--", PY, "-c", "pass"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_ignoring_stdout_with_nothing_else_to_compare_is_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "--ignore-stdout", "--", PY, "-c", "pass"]) == 2
    assert capsys.readouterr().err == (
        "repro-ctx check: error: --ignore-stdout leaves nothing to compare: name the output "
        "files with --compare PATH\n")


def test_a_failed_check_names_what_matched_the_environment_and_the_next_step(
    writer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.txt"
    assert main(["check", "--seed", "3", "--compare", str(out), "--",
                 PY, str(writer), str(out), "file"]) == 1
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == f"repro-ctx check: run 2 differs from run 1 in {out}; matched: stdout"
    environment = next(line for line in lines if line.startswith("environment: "))
    assert f"torch {torch.__version__}, CPU capability " in environment
    assert f"{torch.get_num_threads()} threads" in environment
    assert "the difference comes from the program, not the machine" in environment
    assert "`repro-ctx env-diff`" in environment
    step = lines[-1]
    assert step.startswith("next: find the first op where the runs part. Call "
                           "`repro_ctx.find_divergence(step, seed=3)`")
    assert f"`repro-ctx run --seed 3 -- {PY} {writer} {out} file run1.json`" in step
    assert "repro_ctx.compare('run1.json', 'run2.json')" in step


def test_check_help_says_how_files_are_compared(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "byte for byte" not in text
    assert "read as tensors to name the tensor and element that differ" in text
    assert "--ignore-stdout" in text
    assert "--mask-stdout REGEX" in text


# env-diff's errors --------------------------------------------------------------------------------


def test_env_diff_rejects_files_without_a_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "old.json").write_text(json.dumps({"schema": "repro-ctx doctor",
                                                   "schema_version": 1}))
    (tmp_path / "text.json").write_text("not json")
    missing = tmp_path / "missing.json"
    assert main(["env-diff", str(tmp_path / "old.json"), str(tmp_path / "old.json")]) == 2
    assert capsys.readouterr().err.startswith(
        f"repro-ctx env-diff: error: {tmp_path / 'old.json'} holds no environment record: "
        "expected the output of `repro-ctx doctor --json` (schema 2 or later)")
    assert main(["env-diff", str(tmp_path / "text.json"), str(tmp_path / "old.json")]) == 2
    assert capsys.readouterr().err.startswith(
        f"repro-ctx env-diff: error: {tmp_path / 'text.json'} is not JSON: ")
    assert main(["env-diff", str(missing), str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"repro-ctx env-diff: error: cannot read {missing}: No such file or directory\n")


def test_env_diff_lists_what_does_not_change_results_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from repro_ctx.state.environment_record import environment_record

    record = environment_record()
    other = json.loads(json.dumps(record))
    other["os"]["release"] = "another-release"
    (tmp_path / "a.json").write_text(json.dumps({"environment_record": record}))
    (tmp_path / "b.json").write_text(json.dumps(other))
    assert main(["env-diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "does not change results",
        f"  os.release: {record['os']['release']} vs another-release: another OS kernel release",
        "verdict: same results expected: 1 difference(s), none of which changes results",
    ]
