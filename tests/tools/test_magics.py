"""``%load_ext repro_ctx`` and ``%%deterministic``, driven through a real IPython shell."""

from __future__ import annotations

import builtins
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from repro_ctx import deterministic
from repro_ctx.core.error_notes import ALGORITHMS_NOTE
from repro_ctx.tools.magics import without_comment
from tests.global_state import draws, full_state
from tests.waits import HANG_TIMEOUT

IPython = pytest.importorskip("IPython")
from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from traitlets.config import Config  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real shell for the module; the process globals it touches are put back after."""
    saved_main = sys.modules["__main__"]
    saved_hooks = (sys.displayhook, sys.excepthook)
    saved_builtins = set(vars(builtins))
    saved_dir = os.environ.get("IPYTHONDIR")
    os.environ["IPYTHONDIR"] = str(tmp_path_factory.mktemp("ipython"))
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    try:
        shell.run_line_magic("load_ext", "repro_ctx")
        yield shell
    finally:
        InteractiveShell.clear_instance()
        sys.modules["__main__"] = saved_main
        sys.displayhook, sys.excepthook = saved_hooks
        for name in set(vars(builtins)) - saved_builtins:
            delattr(builtins, name)
        if saved_dir is None:
            os.environ.pop("IPYTHONDIR", None)
        else:
            os.environ["IPYTHONDIR"] = saved_dir


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    """The plain cells here draw from the global RNGs; the suite gets them back."""
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        yield


def run(shell: Any, cell: str) -> Any:
    result = shell.run_cell(cell)
    if result.error_before_exec is not None:
        raise result.error_before_exec
    return result


DRAW_CELL = """\
%%deterministic{options}
import random
import numpy as np
import torch
print(random.random(), float(np.random.rand()), float(torch.rand(1)))
torch.backends.cudnn.benchmark = True
np.random.randn(3)
(random.random(), float(np.random.rand()), float(torch.rand(1)))
"""


def recipe(seed: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The first two draws from each RNG after random.seed / np.random.seed / torch.manual_seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    first = draws()
    np.random.randn(3)
    return first, draws()


def test_rerunning_a_cell_gives_identical_output(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        expected_print, expected_value = recipe(3)
    cell = DRAW_CELL.format(options=" --seed 3")
    capsys.readouterr()
    first = run(shell, cell)
    first_out = capsys.readouterr().out
    second = run(shell, cell)
    second_out = capsys.readouterr().out
    assert first.success
    assert first_out == second_out
    assert first_out.splitlines()[0] == " ".join(map(str, expected_print))
    assert first.result == second.result == expected_value


def test_a_cell_after_a_magic_cell_draws_as_if_the_magic_cell_had_not_run(shell: Any) -> None:
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        expected = draws()
    before = full_state()
    run(shell, DRAW_CELL.format(options=""))
    assert full_state() == before
    result = run(shell, """\
import random, numpy as np, torch
(random.random(), float(np.random.rand()), float(torch.rand(1)))
""")
    assert result.result == expected


def test_the_default_seed_is_0_and_every_plan_option_applies(shell: Any) -> None:
    query = "(torch.are_deterministic_algorithms_enabled(), " \
            "torch.is_deterministic_algorithms_warn_only_enabled(), random.random())"
    prefix = "import random, torch\n"
    zero = random.Random(0).random()
    assert run(shell, f"%%deterministic\n{prefix}{query}").result == (True, False, zero)
    assert run(shell, f"%%deterministic --warn\n{prefix}{query}").result == (True, True, zero)
    assert run(shell, f"%%deterministic --no-algorithms --seed 4\n{prefix}{query}").result == (
        False, False, random.Random(4).random()
    )
    top = 2**64 - 1
    assert run(shell, f"%%deterministic --seed {top}\n{prefix}random.random()").result == (
        random.Random(top).random()
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--seed abc", "a seed must be an int in [0, 2**64), got 'abc'"),
        ("--seed -1", "seed must be in [0, 2**64), got -1"),
        (f"--seed {2**64}", f"seed must be in [0, 2**64), got {2**64}"),
        ("--warn --no-algorithms", "--warn and --no-algorithms exclude each other"),
        ("--colour red", "unrecognized arguments: --colour red"),
        ("7", "unrecognized arguments: 7"),
    ],
)
def test_bad_arguments_are_a_usage_error_and_change_nothing(
    shell: Any, line: str, message: str
) -> None:
    before = full_state()
    result = shell.run_cell(f"%%deterministic {line}\nimport random\nleaked = random.random()")
    assert isinstance(result.error_in_exec, UsageError)
    assert message in str(result.error_in_exec)
    assert "leaked" not in shell.user_ns
    assert full_state() == before


def test_an_error_in_the_cell_propagates_and_everything_is_restored(shell: Any) -> None:
    before = full_state()
    result = shell.run_cell(
        "%%deterministic\nimport numpy as np, torch\nnp.random.rand(5)\n"
        "torch.backends.cudnn.benchmark = True\n1 / 0"
    )
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert not result.success
    assert full_state() == before


def test_a_magic_line_may_end_in_a_comment(shell: Any) -> None:
    cell = "%%deterministic --seed 3   # comment, as in the README\nimport random\nrandom.random()"
    assert run(shell, cell).result == random.Random(3).random()
    only_comment = "%%deterministic # only a comment\nimport random\nrandom.random()"
    assert run(shell, only_comment).result == random.Random(0).random()
    assert run(shell, "%%deterministic --warn#tight\nimport torch\n"
                      "torch.is_deterministic_algorithms_warn_only_enabled()").result is True
    # a '#' inside quotes is not a comment; an unclosed quote is a usage error
    assert without_comment("--seed '3#4'") == "--seed '3#4'"
    result = shell.run_cell("%%deterministic --seed '3\n1")
    assert isinstance(result.error_in_exec, UsageError)
    assert "No closing quotation in \"--seed '3\"" in str(result.error_in_exec)


def test_an_op_without_a_deterministic_implementation_gets_the_note(shell: Any) -> None:
    put = "import torch\ntorch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))"
    result = shell.run_cell(f"%%deterministic\n{put}")
    assert isinstance(result.error_in_exec, RuntimeError)
    assert result.error_in_exec.__notes__ == [ALGORITHMS_NOTE]
    assert "%%deterministic --warn" in ALGORITHMS_NOTE
    with pytest.warns(UserWarning, match="put_"):
        assert run(shell, f"%%deterministic --warn\n{put}").success


def test_cell_values_and_ipython_syntax(shell: Any) -> None:
    assert run(shell, "%%deterministic\nassigned = 41").result is None
    assert shell.user_ns["assigned"] == 41
    assert run(shell, "%%deterministic\n").result is None
    assert run(shell, "%%deterministic\nvalue = assigned + 1\nvalue").result == 42
    assert run(shell, "%%deterministic\nx = %precision 3\nx").result == "%.3f"
    run(shell, "%precision")


def test_the_magic_documents_its_options(shell: Any) -> None:
    magic = shell.find_cell_magic("deterministic")
    assert "%%deterministic [--seed N] [--warn] [--no-algorithms]" in magic.__doc__


def test_unload_and_reload(shell: Any) -> None:
    shell.run_line_magic("unload_ext", "repro_ctx")
    assert shell.find_cell_magic("deterministic") is None
    result = shell.run_cell("%%deterministic\n1")
    assert result.error_in_exec is not None
    shell.run_line_magic("load_ext", "repro_ctx")
    assert run(shell, "%%deterministic\n1").result == 1


def test_importing_repro_ctx_does_not_import_ipython() -> None:
    code = "import sys, repro_ctx; print([m for m in sys.modules if m.startswith('IPython')])"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=HANG_TIMEOUT).stdout
    assert out.strip() == "[]"
