"""Developer sessions: ``python -m nox`` runs tests and lint; CI adds docs, numpy 2.0 and compat.

Environments are built by uv (``venv_backend="uv"``), which links every
installed file from one cache: the sessions' environments share torch's files
instead of each copying 750 MB of them. Every install goes through
constraints.txt, which pins the tested versions (torch 2.13.0).

uv does not read pip's configuration. Where pip is configured to find packages
somewhere besides PyPI (a wheel folder holding torch's CPU build, extra
indexes, a constraint file), those settings are handed to uv, so that uv picks
the same CPU wheel pip would instead of the multi-GB CUDA build PyPI serves for
``torch==2.13.0``. See CONTRIBUTING.md.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"  # what reuse_existing_virtualenvs=True spells
nox.options.sessions = ["tests", "lint"]

ROOT = Path(__file__).parent
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

# The NumPy releases the core suite runs against (`nox -s numpy`), on Python 3.11.
NUMPY_VERSIONS = ["1.26.4", "2.0.2", "2.2.6", "2.4.6"]
# The (Python, torch) pairs the core suite runs on (`nox -s compat`): the lowest
# declared Python with the lowest declared torch; torch 2.9, the last release
# before inductor's `deterministic` entry; the newest Python with the newest torch.
COMPAT = [("3.10", "2.4.1"), ("3.12", "2.9.1"), ("3.13", "2.13.0")]
# Their pins where constraints.txt's need Python 3.11 or a newer torch.
COMPAT_CONSTRAINTS = ROOT / "constraints-compat.txt"
# Test files that exercise the command line, the pytest plugin, the IPython magic,
# find_divergence, the decorator's static types and the docs: not NumPy-specific,
# and they need tools (matplotlib, IPython, mypy, lightning, transformers) the numpy
# sessions skip.
NOT_CORE = [
    "tests/cuda",
    "tests/tools/test_cli.py",
    "tests/diagnose/test_divergence.py",
    "tests/tools/test_pytest_plugin.py",
    "tests/tools/test_magics.py",
    "tests/scopes/test_function_typing.py",
    "tests/test_docs_examples.py",
    "tests/test_docs_reference.py",
    "tests/test_examples.py",
    "tests/integrations/test_lightning.py",
    "tests/integrations/test_transformers.py",
    "tests/integrations/test_accelerate.py",
    "tests/integrations/test_dcp.py",
]

# pip option -> (uv variable, separator uv expects). pip's constraint files are
# passed as -c arguments instead: uv's -c on the command line overrides UV_CONSTRAINT.
_PIP_TO_UV = {
    "index-url": ("UV_DEFAULT_INDEX", " "),
    "extra-index-url": ("UV_INDEX", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "cert": ("SSL_CERT_FILE", " "),
}


def pip_settings_for_uv() -> tuple[dict[str, str], list[str]]:
    """pip's package sources on this machine (``pip config list``): uv's variables, -c files.

    A variable the user already set wins. With extra indexes, uv is told to
    choose among all of them as pip does (``unsafe-best-match``); its own default
    takes every version of a package from the first index that has any.
    """
    try:
        listing = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}, []
    values: dict[str, list[str]] = {}
    for line in listing.splitlines():  # "global.find-links='/opt/wheels'", ":env:.cert='...'"
        key, sep, raw = line.partition("=")
        section, _, option = key.rpartition(".")
        if not sep or section not in {"global", "install", ":env:"}:
            continue
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            continue
        values[option] = str(value).split()  # later lines (the environment) win
    env: dict[str, str] = {}
    for option, (variable, separator) in _PIP_TO_UV.items():
        if values.get(option) and variable not in os.environ:
            env[variable] = separator.join(values[option])
    if "UV_INDEX" in env and "UV_INDEX_STRATEGY" not in os.environ:
        env["UV_INDEX_STRATEGY"] = "unsafe-best-match"
    return env, values.get("constraint", [])


UV_ENV, PIP_CONSTRAINTS = pip_settings_for_uv()


def find_pyenv_interpreters() -> None:
    """Let nox find every pyenv-installed Python by its version ("3.10"), active or not.

    Each version's ``bin`` folder goes at the end of ``PATH``, so whatever was
    found before still is; pyenv's shim for a version that is not active
    (``python3.10``) hands over to the next ``python3.10`` on ``PATH``.
    """
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    folders = [str(path / "bin") for path in sorted(versions.glob("3.*"))
               if (path / "bin").is_dir()]
    os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *folders])


find_pyenv_interpreters()


def install(session: nox.Session, *args: str, constraints: Path = CONSTRAINTS) -> None:
    pip_constraints = [arg for path in PIP_CONSTRAINTS for arg in ("-c", path)]
    session.install("-c", str(constraints), *pip_constraints, *args, env=UV_ENV)


@nox.session
def tests(session: nox.Session) -> None:
    """The CPU suite on all cores, with branch coverage of every process; fails under 95%.

    ``coverage run`` starts before pytest loads the repro_ctx plugin through its
    entry point, and ``patch = subprocess`` (pyproject.toml) starts it in every
    Python child before anything else: the xdist workers, which load the plugin
    again, and the processes the tests start themselves.

    The slow test (50,000 scope cycles, about ten seconds on one core) is collected
    first, so one worker runs it, untraced (tests/conftest.py), while the other
    works through the rest; ``worksteal`` rebalances when one runs dry, and
    ``--durations`` names the slowest tests at the end.

    When tests fail, the coverage figure is still reported (without the bar:
    the failure is the tests'), ``combine`` still merges and removes the
    ``.coverage.*`` files the processes wrote, and then the failure is raised.
    """
    install(session, "-e", ".[test]")
    session.env["COVERAGE_FILE"] = str(ROOT / ".coverage")  # children in other folders
    session.run("coverage", "erase")
    try:
        session.run("coverage", "run", "-m", "pytest", "-n", "auto", "--dist", "worksteal",
                    "--durations=5", *session.posargs)
    except nox.command.CommandFailed:
        # "no data" (exit status 1) is no second failure when pytest did not get far
        session.run("coverage", "combine", "--quiet", success_codes=[0, 1])
        session.run("coverage", "report", success_codes=[0, 1])
        raise
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report", "--fail-under=95")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict."""
    install(session, "-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("mypy", "--strict", "repro_ctx")


@nox.session(default=False)
def docs(session: nox.Session) -> None:
    """The documentation site; warnings (a broken link, a missing docstring target) fail.

    mkdocstrings reads the sources without importing them: no torch here.
    """
    install(session, *nox.project.dependency_groups(PYPROJECT, "docs"))
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's banner about its successor
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(python="3.11", default=False)
@nox.parametrize("numpy", NUMPY_VERSIONS)
def numpy(session: nox.Session, numpy: str) -> None:
    """The core suite (sources, scopes, snapshots, registry, workers) against one NumPy.

    constraints.txt pins NumPy 2.4; each session swaps that pin for its own
    release. Only the tools the core suite needs are installed, so nothing that
    needs a newer NumPy (matplotlib 3.11 needs >= 1.25) limits the matrix.
    """
    pins = [
        line for line in CONSTRAINTS.read_text().splitlines()
        if not line.replace(" ", "").lower().startswith("numpy==")
    ]
    constraints = Path(session.create_tmp()) / "constraints-numpy.txt"
    constraints.write_text("\n".join([*pins, f"numpy=={numpy}", ""]))
    install(session, "-e", ".", "pytest", "hypothesis", "pytest-xdist", constraints=constraints)
    versions = "import numpy, torch; print('numpy', numpy.__version__, 'torch', torch.__version__)"
    session.run("python", "-c", versions)
    ignored = [f"--ignore={path}" for path in NOT_CORE]
    session.run("pytest", "-n", "auto", "-m", "not slow", *ignored, *session.posargs)


@nox.session(default=False)
@nox.parametrize(("python", "torch"), COMPAT)
def compat(session: nox.Session, torch: str) -> None:
    """The core suite (the ``numpy`` session's selection) on one (Python, torch) pair.

    Each takes constraints.txt with torch swapped for its own, and the lines of
    constraints-compat.txt in place of the same packages' there (environment
    markers choose by Python). torch other than 2.13 for Python 3.11 comes from
    PyPI as its CUDA build (several GB), which runs without a GPU; the session
    checks that the torch installed is the one asked for.
    """
    compat_pins = [line for line in COMPAT_CONSTRAINTS.read_text().splitlines()
                   if _pinned_name(line)]
    replaced = {"torch", *(_pinned_name(line) for line in compat_pins)}
    pins = [line for line in CONSTRAINTS.read_text().splitlines()
            if _pinned_name(line) not in replaced]
    constraints = Path(session.create_tmp()) / "constraints-compat.txt"
    constraints.write_text("\n".join([*pins, *compat_pins, f"torch=={torch}", ""]))
    install(session, "-e", ".", "pytest", "hypothesis", "pytest-xdist", constraints=constraints)
    check = (
        "import sys, numpy, torch; "
        "print('python', sys.version.split()[0], 'torch', torch.__version__, "
        "'cuda', torch.version.cuda, 'numpy', numpy.__version__); "
        f"assert torch.__version__.split('+')[0] == {torch!r}, 'not the torch asked for'"
    )
    session.run("python", "-c", check)
    ignored = [f"--ignore={path}" for path in NOT_CORE]
    session.run("pytest", "-n", "auto", "-m", "not slow", *ignored, *session.posargs)


def _pinned_name(line: str) -> str | None:
    """The package a constraints line pins ("numpy==1.26.4; ..." -> "numpy"), or None."""
    requirement = line.split("#", 1)[0].strip()
    if not requirement:
        return None
    return requirement.split("==", 1)[0].split(";", 1)[0].strip().lower()


@nox.session(default=False)
def cuda(session: nox.Session) -> None:
    """The CUDA tests (tests/cuda/), on a machine with a GPU and a CUDA build of torch.

    No constraints file here: it pins the CPU build where pip has it at hand.
    """
    session.install("-e", ".[test]")
    session.run("pytest", "tests/cuda", "-m", "cuda", *session.posargs)
