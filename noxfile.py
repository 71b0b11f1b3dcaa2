"""Test and lint sessions. ``nox`` runs both; CI runs exactly that.

Every install goes through constraints.txt, which pins the tested torch (a
CPU build) so that a fresh machine never pulls a multi-GB CUDA build.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

CONSTRAINTS = ("-c", "constraints.txt")


@nox.session
def tests(session: nox.Session) -> None:
    """The CPU test suite with branch coverage; fails under 95%.

    ``coverage run`` (not pytest-cov) so that coverage starts before pytest
    imports the repro_ctx plugin through its entry point.
    """
    session.install(*CONSTRAINTS, "-e", ".[test]")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", "-m", "not slow", *session.posargs)
    session.run("coverage", "report", "--fail-under=95")
    # Long-running checks (a million scope cycles) run without coverage's tracer,
    # which would slow them fivefold and measure nothing new.
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict."""
    session.install(*CONSTRAINTS, "-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("mypy", "--strict", "repro_ctx")


@nox.session
def cuda(session: nox.Session) -> None:
    """The CUDA tests (tests/cuda/), on a machine with a GPU and its torch."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/cuda", "-m", "cuda", *session.posargs)
