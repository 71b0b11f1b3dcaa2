"""find_divergence shows its progress on stderr, and only where stderr is a terminal."""

from __future__ import annotations

import io

import pytest

import repro_ctx.diagnose.progress
from repro_ctx import find_divergence
from repro_ctx.diagnose.progress import Progress
from tests.diagnose.test_divergence import noisy_step, training_step


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_each_run_and_replay_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(repro_ctx.diagnose.progress, "INTERVAL", 0.0)
    report = find_divergence(noisy_step)
    shown = terminal.getvalue()
    title = "\rfind_divergence(noisy_step): "
    for stage in ("run 1/2 ...", "run 2/2 ...", f"replay 1/2 (op #{report.index}) ...",
                  f"replay 2/2 (op #{report.index}) ..."):
        assert f"{title}{stage}\x1b[K" in shown
    assert f"{title}run 1/2, 1 ops recorded\x1b[K" in shown
    assert shown.endswith("\r\x1b[K")  # erased: what the caller prints next starts clean
    # more ops than one callback's worth: the count goes on
    terminal.truncate(0)
    find_divergence(training_step, runs=3)
    assert "run 3/3, 65 ops recorded" in terminal.getvalue()


def test_progress_is_silent_where_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    find_divergence(noisy_step)
    assert capsys.readouterr().err == ""


def test_progress_redraws_at_most_every_interval() -> None:
    terminal = Terminal()
    progress = Progress("tool", terminal, interval=3600.0)
    on_ops = progress.stage("run 1/2")
    assert on_ops is not None
    on_ops(100)  # too soon after the stage was shown
    assert terminal.getvalue() == "\rtool: run 1/2 ...\x1b[K"
    progress.close()
    progress.close()  # erases once
    assert terminal.getvalue().count("\r\x1b[K") == 1


def test_a_stream_without_a_terminal_gets_nothing() -> None:
    closed = io.StringIO()
    closed.close()  # isatty raises ValueError on a closed stream
    assert not Progress("tool", closed).enabled
    assert not Progress("tool", object()).enabled  # type: ignore[arg-type]
    plain = io.StringIO()
    progress = Progress("tool", plain)
    assert progress.stage("run 1/2") is None
    progress.close()
    assert plain.getvalue() == ""
