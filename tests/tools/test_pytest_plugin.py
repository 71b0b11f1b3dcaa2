"""The pytest plugin, black-box through ``pytester``: marker, fixture, --repro-seed, --repro-leaks.

Inner runs load only the plugins they name (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``),
so they behave the same whether or not repro_ctx is installed with its entry
point. Most run in-process (fast, and counted by coverage); the xdist run and
the "no option loads nothing" run use real subprocesses.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch._inductor.config  # see below

import repro_ctx.diagnose.leaks
import repro_ctx.pytest_plugin

# Imported here so that in-process inner runs, which drop the modules they
# import first, never import one a second time: a second copy of a repro_ctx
# module would split its classes in two, and torch refuses to import inductor's
# config (which torch.use_deterministic_algorithms imports) twice.
import repro_ctx.sources.accelerators
import repro_ctx.sources.environment
import repro_ctx.sources.flags
import repro_ctx.sources.numpy_global
import repro_ctx.sources.python_random
import repro_ctx.sources.registry
import repro_ctx.sources.tf32
import repro_ctx.tools.cli
from repro_ctx import deterministic
from repro_ctx.sources.default_set import default_sources
from repro_ctx.tools.pytest_plugin import node_seed
from tests.global_state import flag_state, full_state
from tests.waits import HANG_TIMEOUT

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
# The plugin module is already imported here, too late for assertion rewriting.
PLUGIN = ("-p", "repro_ctx.pytest_plugin", "-W", "ignore::pytest.PytestAssertRewriteWarning")

# An inner conftest: a fixture that writes what each test drew to <test name>.json.
RECORD = """
import json, random
import numpy as np
import pytest
import torch

@pytest.fixture
def record(request):
    def write(**extra):
        values = {
            "random": random.random(),
            "numpy": float(np.random.rand()),
            "torch": float(torch.rand(1)),
            **extra,
        }
        name = request.node.name.replace("/", "_")
        with open(f"{name}.json", "w") as f:
            json.dump(values, f)
    return write
"""


@pytest.fixture(autouse=True)
def _inner_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inner runs load only the plugins named; their global changes never reach the suite."""
    default_sources()
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        yield


def recipe(seed: int) -> dict[str, float]:
    """What a test drawing once from each RNG gets inside deterministic(seed)."""
    with deterministic(seed):
        return {
            "random": random.random(),
            "numpy": float(np.random.rand()),
            "torch": float(torch.rand(1)),
        }


def recorded(pytester: pytest.Pytester, name: str) -> dict[str, float]:
    return dict(json.loads((pytester.path / f"{name}.json").read_text()))


# --------------------------------------------------------------------------
# no option: nothing changes
# --------------------------------------------------------------------------


def test_without_options_nothing_is_scoped_and_the_header_is_unchanged(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_fixture_is_none(repro_scope):
            assert repro_scope is None
        """
    )
    before = full_state()
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1)
    assert "repro_ctx" not in result.stdout.str()
    assert "warning" not in result.stdout.str()
    assert full_state() == before


def test_without_options_the_plugin_imports_neither_torch_nor_numpy(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_nothing_heavy_imported(repro_scope):
            assert repro_scope is None
            assert "torch" not in sys.modules
            assert "numpy" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", timeout=HANG_TIMEOUT)
    result.assert_outcomes(passed=1)


def test_no_deterministic_opts_a_test_out_of_repro_seed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        import threading
        import pytest
        from repro_ctx import deterministic

        @pytest.mark.no_deterministic
        def test_threads_open_scopes(repro_scope):
            assert repro_scope is None
            worker = threading.Thread(target=lambda: deterministic(1).__enter__().stop())
            worker.start()
            worker.join(timeout={HANG_TIMEOUT})  # guards against a hang only
            assert not worker.is_alive()

        def test_seeded(repro_scope):
            assert repro_scope is not None
        """
    )
    # a subprocess: in this process every test runs inside the _inner_runs scope
    result = pytester.runpytest_subprocess(*PLUGIN, "--repro-seed=4", "--strict-markers",
                                          timeout=HANG_TIMEOUT)
    result.assert_outcomes(passed=2)


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.deterministic(seed=1)
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest(*PLUGIN, "--strict-markers")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest(*PLUGIN, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.deterministic(seed=0, *, algorithms=True*"])


# --------------------------------------------------------------------------
# the marker and the fixture
# --------------------------------------------------------------------------


def test_a_marked_test_draws_from_its_seed_and_leaves_the_state_as_it_was(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(RECORD)
    pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.deterministic(seed=3)
        def test_marked(record, repro_scope):
            assert repro_scope.seed == 3
            assert torch.are_deterministic_algorithms_enabled()
            torch.backends.cudnn.benchmark = True
            record()

        @pytest.mark.deterministic(7, algorithms="warn")
        def test_positional_seed_and_options(record, repro_scope):
            assert repro_scope.seed == 7
            assert torch.is_deterministic_algorithms_warn_only_enabled()
            record()

        def test_unmarked(repro_scope):
            assert repro_scope is None
        """
    )
    before = full_state()
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=3)
    assert full_state() == before
    assert recorded(pytester, "test_marked") == recipe(3)
    assert recorded(pytester, "test_positional_seed_and_options") == recipe(7)


def test_the_scope_covers_function_fixtures_but_not_module_fixtures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import json, random
        import pytest

        @pytest.fixture(scope="module")
        def module_draw():
            return random.random()

        @pytest.fixture
        def function_draw():
            value = random.random()
            yield value
            random.random()  # teardown draws happen inside the scope too

        @pytest.mark.deterministic(seed=5)
        def test_draws(module_draw, function_draw):
            with open("draws.json", "w") as f:
                json.dump([module_draw, function_draw, random.random()], f)
        """
    )
    state = random.getstate()
    module_draw = random.random()
    random.setstate(state)
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1)
    drawn = json.loads((pytester.path / "draws.json").read_text())
    seeded = random.Random(5)
    assert drawn == [module_draw, seeded.random(), seeded.random()]


def test_a_project_fixture_named_repro_scope_does_not_turn_scoping_off(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(RECORD + "\n@pytest.fixture\ndef repro_scope():\n    return 'mine'\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.deterministic(seed=2)
        def test_marked(record, repro_scope):
            assert repro_scope == "mine"
            record()
        """
    )
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)
    assert recorded(pytester, "test_marked") == recipe(2)


@pytest.mark.parametrize("randomly", [(), ("-p", "randomly")])
def test_a_scope_a_fixture_holds_open_nests_inside_the_tests_scope(
    pytester: pytest.Pytester, randomly: tuple[str, ...]
) -> None:
    pytester.makeconftest(RECORD)
    pytester.makepyfile(
        """
        import pytest
        from repro_ctx import deterministic

        @pytest.fixture
        def inner_scope():
            with deterministic(seed=1):
                yield

        @pytest.mark.deterministic(seed=2)
        def test_inner(inner_scope, record):
            record()
        """
    )
    before = flag_state()
    result = pytester.runpytest(*PLUGIN, *randomly, "-W", "error::repro_ctx.ScopeOrderWarning")
    result.assert_outcomes(passed=1)
    assert flag_state() == before
    assert recorded(pytester, "test_inner") == recipe(1)


def test_class_markers_apply_to_every_method(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECORD)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.deterministic(seed=11)
        class TestGroup:
            def test_one(self, record):
                record()

            @pytest.mark.deterministic(seed=12)
            def test_closest_marker_wins(self, record):
                record()
        """
    )
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=2)
    assert recorded(pytester, "test_one") == recipe(11)
    assert recorded(pytester, "test_closest_marker_wins") == recipe(12)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("seed=-1", "ValueError: seed must be in [[]0, 2**64), got -1"),
        ("seed='x'", "TypeError: seed must be an int in [[]0, 2**64) or None, got str 'x'"),
        ("algorithms='sometimes'", "ValueError: algorithms must be True, False, 'warn' or None*"),
        ("colour=1", "TypeError: *unexpected keyword argument 'colour'"),
    ],
)
def test_bad_marker_arguments_error_the_test_with_a_clear_message(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.deterministic({marker})
        def test_bad():
            pass
        """
    )
    before = full_state()
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_bad*",
        f"@pytest.mark.deterministic on *::test_bad: {message}",
    ])
    assert full_state() == before


def test_a_failing_setup_and_a_failing_test_still_restore_everything(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import numpy as np
        import pytest
        import torch

        @pytest.fixture
        def broken():
            np.random.rand(3)
            torch.backends.cudnn.benchmark = True
            raise RuntimeError("setup failed")

        @pytest.mark.deterministic(seed=1)
        def test_setup_fails(broken):
            pass

        @pytest.mark.deterministic(seed=1)
        def test_fails():
            np.random.rand(3)
            torch.use_deterministic_algorithms(False)
            assert False

        @pytest.mark.deterministic(seed=1)
        def test_skipped_inside():
            np.random.rand(3)
            pytest.skip("inside the scope")
        """
    )
    before = full_state()
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(failed=1, errors=1, skipped=1)
    assert full_state() == before


def test_the_scope_also_covers_unittest_and_doctest_items(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_cases="""
        import json, random, unittest

        class Cases(unittest.TestCase):
            def test_draw(self):
                with open("unittest.json", "w") as f:
                    json.dump(random.random(), f)
        """,
        docs='''
        def draw():
            """
            >>> import json, random
            >>> with open("doctest.json", "w") as f:
            ...     json.dump(random.random(), f)
            """
        ''',
    )
    result = pytester.runpytest(*PLUGIN, "--repro-seed=9", "--doctest-modules")
    result.assert_outcomes(passed=2)
    for name, node_id in [
        ("unittest", "test_cases.py::Cases::test_draw"),
        ("doctest", "docs.py::docs.draw"),
    ]:
        drawn = json.loads((pytester.path / f"{name}.json").read_text())
        assert drawn == random.Random(node_seed(9, node_id)).random(), name


# --------------------------------------------------------------------------
# --repro-seed
# --------------------------------------------------------------------------

SEEDED_TESTS = """
import pytest

def test_a(record, repro_scope):
    record(seed=repro_scope.seed)

def test_b(record, repro_scope):
    record(seed=repro_scope.seed)

@pytest.mark.parametrize("n", [1, 2])
def test_c(record, repro_scope, n):
    record(seed=repro_scope.seed)

@pytest.mark.deterministic(seed=4)
def test_marker_seed_wins(record, repro_scope):
    record(seed=repro_scope.seed)

@pytest.mark.deterministic(algorithms="warn")
def test_marker_without_seed(record, repro_scope):
    assert repro_scope.plan.algorithms == "warn"
    record(seed=repro_scope.seed)
"""
SEEDED_NAMES = ["test_a", "test_b", "test_c[1]", "test_c[2]", "test_marker_seed_wins",
                "test_marker_without_seed"]


def test_repro_seed_seeds_each_test_from_the_seed_and_its_node_id(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(RECORD)
    pytester.makepyfile(test_seeded=SEEDED_TESTS)
    result = pytester.runpytest(*PLUGIN, "--repro-seed=2024")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["repro_ctx: --repro-seed=2024 *"])
    seeds = {name: recorded(pytester, name)["seed"] for name in SEEDED_NAMES}
    assert seeds["test_marker_seed_wins"] == 4
    for name in ["test_a", "test_b", "test_c[1]", "test_c[2]", "test_marker_without_seed"]:
        assert seeds[name] == node_seed(2024, f"test_seeded.py::{name}")
    assert len(set(seeds.values())) == len(seeds)
    for name, seed in seeds.items():
        assert recorded(pytester, name) == {**recipe(int(seed)), "seed": seed}


def test_a_tests_draws_do_not_depend_on_order_or_selection(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECORD)
    pytester.makepyfile(test_seeded=SEEDED_TESTS)

    def run(*args: str, seed: int = 5, tests: int = len(SEEDED_NAMES)) -> dict[str, object]:
        for path in pytester.path.glob("*.json"):
            path.unlink()
        result = pytester.runpytest(*PLUGIN, f"--repro-seed={seed}", *args)
        result.assert_outcomes(passed=tests)
        return {path.stem: json.loads(path.read_text()) for path in pytester.path.glob("*.json")}

    forward = run()
    shuffled = run("-p", "randomly", "--randomly-seed=3")
    shuffled_again = run("-p", "randomly", "--randomly-seed=4")
    alone = run("test_seeded.py::test_b", tests=1)
    assert forward == shuffled == shuffled_again
    assert alone == {"test_b": forward["test_b"]}
    other_seed = run(seed=6)
    assert other_seed["test_marker_seed_wins"] == forward["test_marker_seed_wins"]
    assert all(other_seed[name] != forward[name] for name in ["test_a", "test_b"])


def test_node_seed_is_stable_and_uses_all_of_its_inputs() -> None:
    seed = node_seed(0, "tests/test_x.py::test_y")
    assert seed == node_seed(0, "tests/test_x.py::test_y")
    assert 0 <= seed < 2**64
    others = {
        node_seed(1, "tests/test_x.py::test_y"),
        node_seed(0, "tests/test_x.py::test_z"),
        node_seed(2**64 - 1, "tests/test_x.py::test_y"),
        node_seed(0, "tests/test_x.py::test_y[\udcff]"),
    }
    assert seed not in others
    assert len(others) == 4


@pytest.mark.parametrize("value", ["-1", "abc", str(2**64)])
def test_a_bad_repro_seed_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest(*PLUGIN, f"--repro-seed={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --repro-seed*"])


# --------------------------------------------------------------------------
# --repro-leaks
# --------------------------------------------------------------------------

DRAWN = "state changed (drawn from or reseeded outside a scope)"

LEAKY_TESTS = """
import os
import random
import numpy as np
import pytest
import torch

def test_clean():
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.benchmark = False

def test_benchmark_left_on():
    torch.backends.cudnn.benchmark = True

def test_deterministic_algorithms_left_on():
    torch.use_deterministic_algorithms(True, warn_only=True)  # imports inductor's config

def test_numpy_reseeded():
    np.random.seed(5)

def test_torch_drawn():
    torch.rand(3)

def test_precision_and_environment():
    torch.set_float32_matmul_precision("medium")
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"

@pytest.mark.deterministic(seed=1)
def test_scoped_changes_are_no_leak():
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("medium")
    np.random.seed(5)
    random.random()
    torch.rand(2)

@pytest.fixture
def leaky_fixture():
    torch.backends.cudnn.deterministic = True
    yield

def test_fixture_leak(leaky_fixture):
    pass

@pytest.fixture(scope="module")
def module_setting():
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = True

def test_module_fixture_is_no_leak_of_the_test(module_setting):
    assert not torch.backends.mkldnn.enabled
"""
LEAKS = {
    "test_benchmark_left_on": ["torch.backends.cudnn.benchmark: False -> True"],
    "test_deterministic_algorithms_left_on": [
        "torch.use_deterministic_algorithms (mode, warn_only): [False, False] -> [True, True]"
    ],
    "test_numpy_reseeded": [f"numpy.random (global): {DRAWN}"],
    "test_torch_drawn": [f"torch (cpu): {DRAWN}"],
    "test_precision_and_environment": [
        "torch.get_float32_matmul_precision: 'highest' -> 'medium'",
        "os.environ['CUBLAS_WORKSPACE_CONFIG']: unset -> ':16:8'",
    ],
    "test_fixture_leak": ["torch.backends.cudnn.deterministic: False -> True"],
}


def _reset_leaky_state() -> None:
    # a state np.random.seed(5) changes: an earlier test may have left the seed-5 state
    np.random.seed(0)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = False
    torch.use_deterministic_algorithms(False)
    torch.set_float32_matmul_precision("highest")


def test_leaks_fail_each_leaking_test_at_teardown(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    _reset_leaky_state()
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest(*PLUGIN, "--repro-leaks=fail")
    result.assert_outcomes(passed=9, errors=len(LEAKS))
    result.stdout.fnmatch_lines(["repro_ctx: --repro-leaks=fail"])
    output = result.stdout.str()
    for name, lines in LEAKS.items():
        result.stdout.fnmatch_lines([
            f"*ERROR at teardown of {name}*",
            f"test_leaky.py::{name} left global RNG-affecting state changed:",
        ])
        report = output.split(f"ERROR at teardown of {name} ")[1].split("Restore it")[0]
        for line in lines:
            assert f"  {line}" in report.splitlines(), (name, line, report)
    for name in ["test_clean", "test_scoped_changes_are_no_leak",
                 "test_module_fixture_is_no_leak_of_the_test"]:
        assert f"at teardown of {name} " not in output
    assert "mkldnn.enabled" not in output


def test_leaks_warn_names_the_test_and_the_values_once_at_the_end(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    _reset_leaky_state()
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest(*PLUGIN, "--repro-leaks=warn")
    result.assert_outcomes(passed=9)
    output = result.stdout.str()
    assert "warnings summary" not in output
    result.stdout.fnmatch_lines([
        "*repro_ctx: global state left changed (--repro-leaks=warn)*",
        f"{len(LEAKS)} tests left global RNG-affecting state changed:",
    ])
    summary = output.split("--repro-leaks=warn) ")[1]
    for name, lines in LEAKS.items():
        for line in lines:
            assert f"{line}  (1 test)\n    test_leaky.py::{name}\n" in summary, (name, line)
    assert "@pytest.mark.allow_leaks" in summary


MANY_DRAWS = """
import pytest
import torch

@pytest.mark.parametrize("n", range(7))
def test_draws(n):
    torch.rand(2)

@pytest.mark.allow_leaks("torch (cpu)")
def test_allowed_draw():
    torch.rand(2)

@pytest.mark.allow_leaks()
def test_allowed_anything():
    torch.rand(2)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.benchmark = False

@pytest.mark.filterwarnings("ignore::repro_ctx.pytest_plugin.StateLeakWarning")
def test_filtered_draw():
    torch.rand(2)

@pytest.mark.allow_leaks("torch (cpu)")
def test_allowed_draw_but_a_flag():
    torch.rand(2)
    torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
"""


def test_leaks_warn_groups_the_tests_of_one_leak_and_can_be_silenced(
    pytester: pytest.Pytester,
) -> None:
    torch.backends.cudnn.benchmark = False
    pytester.makepyfile(test_many=MANY_DRAWS)
    result = pytester.runpytest(*PLUGIN, "--repro-leaks=warn", "-p", "no:randomly")
    result.assert_outcomes(passed=11)
    result.stdout.fnmatch_lines([
        "*repro_ctx: global state left changed (--repro-leaks=warn)*",
        "8 tests left global RNG-affecting state changed:",
        f"torch (cpu): {DRAWN}  (7 tests)",
        "    test_many.py::test_draws[[]0]",
        "    test_many.py::test_draws[[]1]",
        "    test_many.py::test_draws[[]2]",
        "    ... and 4 more",
        "torch.backends.cudnn.benchmark: False -> True  (1 test)",
        "    test_many.py::test_allowed_draw_but_a_flag",
    ])
    output = result.stdout.str()
    for name in ["test_allowed_draw ", "test_allowed_anything", "test_filtered_draw"]:
        assert name not in output
    # per source, for every test: the ini value and the option
    pytester.makeini("[pytest]\nrepro_leaks_allow =\n    torch (cpu)\n")
    torch.backends.cudnn.benchmark = False
    result = pytester.runpytest(*PLUGIN, "--repro-leaks=fail", "-p", "no:randomly")
    result.assert_outcomes(passed=11, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_allowed_draw_but_a_flag*"])
    pytester.makeini("[pytest]\n")
    torch.backends.cudnn.benchmark = False
    result = pytester.runpytest(
        *PLUGIN, "--repro-leaks=fail", "-p", "no:randomly", "--repro-leaks-allow=torch (cpu)",
        "--repro-leaks-allow=torch.backends.cudnn.benchmark",
    )
    result.assert_outcomes(passed=11)
    torch.backends.cudnn.benchmark = False


NONDETERMINISTIC_OP = """
import torch

def test_put():
    torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
"""


def test_under_repro_seed_torchs_nondeterministic_op_error_carries_the_scopes_note(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_op=NONDETERMINISTIC_OP)
    result = pytester.runpytest(*PLUGIN, "--repro-seed=1234")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*RuntimeError: put_ does not have a deterministic implementation*",
        "*repro_ctx: this scope turned torch's deterministic algorithms on*",
        '*repro_ctx (pytest): *@pytest.mark.deterministic(algorithms="warn")*',
    ])
    # the advice works: with warn only, the op runs
    marked = '@pytest.mark.deterministic(algorithms="warn")\ndef test_put'
    pytester.makepyfile(
        test_op="import pytest\n" + NONDETERMINISTIC_OP.replace("def test_put", marked)
    )
    pytester.runpytest(*PLUGIN, "--repro-seed=1234").assert_outcomes(passed=1)


def test_repro_seed_last_reuses_the_previous_runs_seed(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECORD)
    pytester.makepyfile(test_seeded=SEEDED_TESTS)
    result = pytester.runpytest(*PLUGIN, "--repro-seed=last")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--repro-seed=last: no earlier run with --repro-seed=N*"])
    pytester.runpytest(*PLUGIN, "--repro-seed=31").assert_outcomes(passed=6)
    first = {name: recorded(pytester, name) for name in SEEDED_NAMES}
    for path in pytester.path.glob("*.json"):
        path.unlink()
    result = pytester.runpytest(*PLUGIN, "--repro-seed=last")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["repro_ctx: --repro-seed=31 *"])
    assert {name: recorded(pytester, name) for name in SEEDED_NAMES} == first
    pytester.runpytest(*PLUGIN, "--repro-seed=32").assert_outcomes(passed=6)
    pytester.runpytest(*PLUGIN, "--repro-seed=last").stdout.fnmatch_lines(
        ["repro_ctx: --repro-seed=32 *"]
    )
    result = pytester.runpytest(*PLUGIN, "--repro-seed=last", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--repro-seed=last reads the previous run's seed*"])


def test_leak_warnings_can_be_turned_into_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import numpy as np

        def test_reseeds():
            np.random.seed(1)
        """
    )
    result = pytester.runpytest(
        *PLUGIN, "--repro-leaks=warn",
        "-W", "error::repro_ctx.pytest_plugin.StateLeakWarning",
    )
    result.assert_outcomes(errors=1, passed=1)


def test_leaks_of_registered_generators_are_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import numpy as np
        import repro_ctx

        generator = np.random.default_rng(0)

        def test_registers():
            repro_ctx.register(generator)

        def test_draws_from_a_registered_generator():
            generator.random()

        def test_unregisters():
            repro_ctx.unregister(generator)
        """
    )
    result = pytester.runpytest(*PLUGIN, "--repro-leaks=fail", "-p", "no:randomly")
    result.assert_outcomes(passed=3, errors=3)
    result.stdout.fnmatch_lines([
        "*registered generators (Generator at 0x*): not registered -> registered",
        f"*registered Generator at 0x*: {DRAWN}",
        "*registered generators (Generator at 0x*): registered -> unregistered",
    ])


REIMPORTING_RUNS = '''
import sys

import numpy  # neither can be imported twice in one process: imported here, once
import torch

import repro_ctx  # as a conftest would; the leak checker's modules come with the first run

pytest_plugins = ["pytester"]

INNER = """
import random
import numpy as np
import torch

def test_draws():
    random.random()
    np.random.rand()
    torch.rand(1)

def test_benchmark_left_on():
    torch.backends.cudnn.benchmark = True

def test_clean():
    pass
"""


def test_runs(pytester):
    pytester.makepyfile(test_inner=INNER)
    for run in range(3):
        torch.backends.cudnn.benchmark = False
        result = pytester.runpytest_inprocess("-p", "repro_ctx.pytest_plugin", "--repro-leaks=fail")
        # pytester drops the modules a run imported: the next run imports them again
        assert "repro_ctx.diagnose.leaks" not in sys.modules, run
        # the sources came with ``import repro_ctx`` and stay: checked against a new leaks
        assert "repro_ctx.sources.flags" in sys.modules, run
        result.assert_outcomes(passed=3, errors=2)
        result.stdout.fnmatch_lines([
            "*ERROR at teardown of test_draws*",
            "test_inner.py::test_draws left global RNG-affecting state changed:",
            "  random: state changed*",
            "  numpy.random (global): state changed*",
            "  torch (cpu): state changed*",
            "Restore it*",
            "*ERROR at teardown of test_benchmark_left_on*",
            "test_inner.py::test_benchmark_left_on left global RNG-affecting state changed:",
            "  torch.backends.cudnn.benchmark: False -> True",
            "Restore it*",
        ])
        assert "at teardown of test_clean" not in result.stdout.str()
        # pytest-randomly reseeds random and NumPy before every test: not leaks
        torch.backends.cudnn.benchmark = False
        result = pytester.runpytest_inprocess(
            "-p", "repro_ctx.pytest_plugin", "-p", "randomly", "--repro-leaks=fail"
        )
        result.assert_outcomes(passed=3, errors=2)
        assert "random: state changed" not in result.stdout.str()
        assert "numpy.random (global): state changed" not in result.stdout.str()
        result.stdout.fnmatch_lines(["  torch (cpu): state changed*"])
'''


def test_leak_checks_keep_working_when_pytester_reimports_the_plugins_modules(
    pytester: pytest.Pytester,
) -> None:
    """The second run once crashed in ``same()``, and with pytest-randomly reported
    random and NumPy: sources built from the first run's classes were checked
    against the classes of a second import."""
    pytester.makepyfile(test_reimports=REIMPORTING_RUNS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=HANG_TIMEOUT)
    result.assert_outcomes(passed=1)


# --------------------------------------------------------------------------
# pytest-randomly and pytest-xdist
# --------------------------------------------------------------------------

RANDOMLY_TESTS = """
import json, random
import numpy as np
import pytest
import torch

def test_draws_without_a_scope():
    random.random()
    np.random.rand(3)

def test_reseeds_numpy():
    np.random.seed(5)

def test_leaves_benchmark_on():
    torch.backends.cudnn.benchmark = True

@pytest.fixture
def fixture_draw():
    return float(np.random.rand())

@pytest.mark.deterministic(seed=8)
def test_scoped(fixture_draw, record):
    record(fixture=fixture_draw)
"""


@pytest.mark.parametrize("randomly_seed", ["1", "2"])
def test_with_pytest_randomly_scopes_keep_their_seed_and_only_real_leaks_count(
    pytester: pytest.Pytester, randomly_seed: str
) -> None:
    pytester.makeconftest(RECORD)
    pytester.makepyfile(test_randomly=RANDOMLY_TESTS)
    result = pytester.runpytest(
        *PLUGIN, "-p", "randomly", f"--randomly-seed={randomly_seed}", "--repro-leaks=fail"
    )
    # pytest-randomly resets random and NumPy before every test: what a test
    # does to them reaches no other test, so only the flag counts as a leak.
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines([
        "*--repro-leaks=fail (random and numpy.random are left to pytest-randomly*",
        "*ERROR at teardown of test_leaves_benchmark_on*",
        "  torch.backends.cudnn.benchmark: False -> True",
    ])
    with deterministic(8):
        fixture = float(np.random.rand())
        expected = {"random": random.random(), "numpy": float(np.random.rand()),
                    "torch": float(torch.rand(1)), "fixture": fixture}
    assert recorded(pytester, "test_scoped") == expected


def test_with_xdist_results_and_leak_reports_match_a_serial_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(RECORD)
    pytester.makepyfile(test_seeded=SEEDED_TESTS)
    pytester.makepyfile(
        test_leak="""
        import numpy as np
        import pytest
        import repro_ctx

        generator = np.random.default_rng(0)

        @pytest.fixture(scope="module", autouse=True)
        def _unregister():
            yield
            repro_ctx.unregister(generator)

        def test_registers_a_generator():
            # A scope restores generator states, not what is registered.
            repro_ctx.register(generator)
        """
    )
    serial = pytester.runpytest(*PLUGIN, "--repro-seed=77", "--repro-leaks=fail")
    serial.assert_outcomes(passed=7, errors=1)
    expected = {path.stem: path.read_text() for path in pytester.path.glob("*.json")}
    for path in pytester.path.glob("*.json"):
        path.unlink()
    result = pytester.runpytest_subprocess(
        *PLUGIN, "-p", "xdist", "-p", "randomly", "-n", "2", "--repro-seed=77",
        "--repro-leaks=fail", "-p", "no:cacheprovider", timeout=HANG_TIMEOUT,
    )
    result.assert_outcomes(passed=7, errors=1)
    result.stdout.fnmatch_lines([
        "repro_ctx: --repro-seed=77 *",
        "*ERROR at teardown of test_registers_a_generator*",
        "  registered generators (Generator at 0x*): not registered -> registered",
    ])
    assert {path.stem: path.read_text() for path in pytester.path.glob("*.json")} == expected
    assert sys.modules["repro_ctx.pytest_plugin"] is repro_ctx.pytest_plugin


# --------------------------------------------------------------------------
# naming the differences (repro_ctx.diagnose.leaks)
# --------------------------------------------------------------------------


def test_accelerator_generators_first_initialised_by_a_test_are_no_leak() -> None:
    from repro_ctx.diagnose.leaks import changes
    from repro_ctx.sources.accelerators import Initialised, LazyDeviceSource, Pending

    module = SimpleNamespace(_lazy_seed_tracker=object())
    source = LazyDeviceSource(torch, module, "torch (cuda)")
    tracker = object()
    state = torch.get_rng_state()
    drawn = state.clone()
    drawn[-1] ^= 1
    cases = [
        (Pending(tracker, 0), Initialised((state,)), []),
        (Pending(tracker, 0), Pending(tracker, 0), []),
        (Pending(tracker, 0), Pending(tracker, 1),
         ["torch (cuda): no pending seed calls -> seed calls queued for initialisation"]),
        (Pending(tracker, 0), Pending(object(), 0),
         ["torch (cuda): no pending seed calls -> seed calls queued for initialisation"]),
        (Initialised((state, state)), Initialised((state.clone(), state.clone())), []),
        (Initialised((state, state)), Initialised((state, drawn)),
         [f"torch (cuda) device 1: {DRAWN}"]),
    ]
    for before, after, expected in cases:
        assert [str(change) for change in changes([source], [before], [after])] == expected


def test_tf32_changes_name_each_api() -> None:
    from repro_ctx.diagnose.leaks import changes
    from repro_ctx.sources.tf32 import TF32Snapshot, TF32Source

    source = TF32Source(torch)
    base = source.capture()
    other_nodes = tuple("tf32" if value != "tf32" else "ieee" for value in base.nodes)
    after = TF32Snapshot("medium", not base.cudnn_allow_tf32, other_nodes)
    found = [str(change) for change in changes([source], [base], [after])]
    assert found[:2] == [
        f"torch.get_float32_matmul_precision: {base.matmul_precision!r} -> 'medium'",
        f"torch.backends.cudnn.allow_tf32: {base.cudnn_allow_tf32!r} -> "
        f"{not base.cudnn_allow_tf32!r}",
    ]
    assert len(found) == 2 + len(base.nodes)
    assert all(line.startswith("fp32_precision[") for line in found[2:])
    assert changes([source], [base], [source.capture()]) == []


def test_registered_generators_are_compared_by_identity_and_state() -> None:
    from repro_ctx.diagnose.leaks import changes
    from repro_ctx.sources.registry import RegistrySource

    source = RegistrySource()
    kept = np.random.default_rng(1)
    entry = object()
    state = kept.bit_generator.state
    moved = {**state, "state": {**state["state"], "state": state["state"]["state"] + 1}}
    same = ((kept, entry, state),)
    assert changes([source], [same], [((kept, entry, dict(state)),)]) == []
    found = changes([source], [same], [((kept, entry, moved),)])
    assert [str(change) for change in found] == [
        f"registered Generator at {id(kept):#x}: {DRAWN}"
    ]


def test_same_compares_snapshots_exactly() -> None:
    from repro_ctx.diagnose.leaks import same

    @dataclasses.dataclass(eq=False)
    class Snapshot:
        values: tuple[object, ...]

    array = np.arange(3)
    assert same((1, b"x", None), (1, b"x", None))
    assert not same((1, 2), (1, 2, 3))
    assert not same((1,), [1])
    assert same([array, np.float64(0.5)], [array.copy(), np.float64(0.5)])
    assert not same(array, array[::-1].copy())
    assert same(Snapshot((torch.zeros(2),)), Snapshot((torch.zeros(2),)))
    assert not same(Snapshot((torch.zeros(2),)), Snapshot((torch.ones(2),)))
    assert not same(torch.zeros(2), torch.zeros(3))


def _defined_twice(make: Any) -> tuple[Any, Any]:
    """One class as two imports of its module would define it: same name, another identity."""
    first, second = make(), make()
    assert first is not second
    assert (first.__module__, first.__qualname__) == (second.__module__, second.__qualname__)
    return first, second


def test_same_compares_by_structure_not_by_class_identity() -> None:
    import enum
    import struct
    from typing import NamedTuple

    from repro_ctx.diagnose.leaks import same

    def make_enum() -> Any:
        class Backend(enum.Enum):
            DEFAULT = 0
            OTHER = 1

        return Backend

    def make_tuple() -> Any:
        class State(NamedTuple):
            key: Any
            pos: int

        return State

    def make_dataclass() -> Any:
        @dataclasses.dataclass(frozen=True, eq=True)
        class Part:
            state: Any

        return Part

    def make_plain() -> Any:
        class Holder:
            def __init__(self, value: object) -> None:
                self.value = value

        return Holder

    first_enum, second_enum = _defined_twice(make_enum)
    assert same(first_enum.DEFAULT, second_enum.DEFAULT)
    assert not same(first_enum.DEFAULT, second_enum.OTHER)
    linalg = torch._C._get_linalg_preferred_backend()  # a pybind enum, the one that crashed
    assert same((linalg,), (torch._C._get_linalg_preferred_backend(),))

    key = np.random.RandomState(3).get_state(legacy=False)["state"]["key"]
    numpy_state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 624},
                   "has_gauss": 1, "gauss": -0.25}
    as_list = {**numpy_state, "state": {"key": key.tolist(), "pos": 624}}
    moved = key.copy()
    moved[5] += 1
    assert same(numpy_state, {**numpy_state, "state": {"key": key.copy(), "pos": 624}})
    assert same(as_list, {**numpy_state, "state": {"key": key.tolist(), "pos": 624}})
    assert not same(numpy_state, {**numpy_state, "state": {"key": moved, "pos": 624}})
    assert not same(numpy_state, {**numpy_state, "gauss": 0.25})
    assert not same(numpy_state, {**numpy_state, "extra": 1})
    assert not same(key, key.astype(np.int64))  # same values, another dtype

    generator = random.Random(4)
    assert same(generator.getstate(), random.Random(4).getstate())
    generator.random()
    assert not same(generator.getstate(), random.Random(4).getstate())

    tensor = torch.get_rng_state()
    flipped = tensor.clone()
    flipped[-1] ^= 1
    assert same(tensor, tensor.clone())
    assert not same(tensor, flipped)
    assert same(torch.ones(2, dtype=torch.bfloat16), torch.ones(2, dtype=torch.bfloat16))
    assert not same(torch.ones(2), torch.ones(2, dtype=torch.float64))

    first_tuple, second_tuple = _defined_twice(make_tuple)
    assert same(first_tuple(key, 1), second_tuple(key.copy(), 1))
    assert not same(first_tuple(key, 1), second_tuple(key, 2))
    first_data, second_data = _defined_twice(make_dataclass)
    assert same(first_data((tensor,)), second_data((tensor.clone(),)))
    assert not same(first_data((tensor,)), second_data((flipped,)))
    first_plain, second_plain = _defined_twice(make_plain)
    assert same(first_plain([1.5]), second_plain([1.5]))
    assert not same(first_plain([1.5]), second_plain([2.5]))
    assert not same(first_plain(1), make_tuple()(1, 2))  # another class altogether
    assert not same(first_plain(1), first_plain(1))  # one class, no __eq__: by identity

    nan = float("nan")
    other_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]
    assert same((nan,), (float("nan"),))  # bit for bit, where == says no
    assert not same(nan, other_nan)
    assert not same(0.0, -0.0)
    assert same(np.float64(nan), np.float64(nan))
    assert not same(1, True)
