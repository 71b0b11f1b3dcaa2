"""find_divergence and compare name the likely cause of a divergence, with a one-line fix.

Each cause is produced for real: an unseeded torch.Generator, a model built
outside ``fn``, OS entropy, a kernel that gives different bytes from equal
inputs (torch's own ``index_add_`` CPU kernel replaced through
``torch.library`` for the test), memory read before anything wrote it, and
two processes that hash strings differently.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from repro_ctx import compare, find_divergence, record, register, unregister
from repro_ctx.diagnose.causes import Evidence, OpSample, classify
from repro_ctx.diagnose.records import OpRecord, OutputRecord
from repro_ctx.diagnose.report import ALGORITHMS_FLAG, FILL_FLAG
from tests.diagnose.test_divergence import noisy_step
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).read_text().splitlines()
DIVERGENCE_TESTS = (ROOT / "tests" / "diagnose" / "test_divergence.py").read_text().splitlines()


def line_of(marker: str, lines: list[str] = HERE) -> int:
    (number,) = [i for i, text in enumerate(lines, 1) if text.rstrip().endswith(f"# {marker}")]
    return number


# an RNG the scope does not cover --------------------------------------------------------------


def test_an_uncovered_generator_is_named_with_the_fix() -> None:
    g = torch.Generator().manual_seed(1)

    def step() -> torch.Tensor:
        x = torch.randn(4, 3)
        return x + torch.randn(4, 3, generator=g)  # UNCOVERED

    report = find_divergence(step)
    assert report.kind == "values"
    assert report.op is not None
    assert report.op.name == "aten.randn.generator"
    assert report.op.uncovered_rng == "g"
    assert report.cause is not None
    assert report.cause.kind == "uncovered_rng"
    assert f"draws from `g` at test_divergence_causes.py:{line_of('UNCOVERED')}" in (
        report.cause.reason
    )
    assert "generators=[g]" in report.cause.fix
    assert "register(g)" in report.cause.fix
    text = str(report).splitlines()
    assert text[1].startswith("  result ")
    assert text[2].startswith("  cause ")
    assert text[3] == f"  fix           {report.cause.fix}"
    # and the fix works, both ways
    assert find_divergence(step, generators=[g]).matched
    register(g)
    try:
        assert find_divergence(step).matched
    finally:
        unregister(g)


def test_a_generator_on_self_is_named_by_its_attribute_and_a_nameless_one_as_g() -> None:
    class Augment(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rng = torch.Generator().manual_seed(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.rand(x.shape, generator=self.rng)

    augment = Augment()
    report = find_divergence(lambda: augment(torch.ones(3)))
    assert report.cause is not None
    assert "generators=[self.rng]" in report.cause.fix
    assert "register(self.rng)" in report.cause.fix

    hidden = [torch.Generator().manual_seed(4)]
    report = find_divergence(lambda: torch.randn(2, generator=hidden[0]))
    assert report.cause is not None
    assert report.cause.kind == "uncovered_rng"
    assert "draws from a torch.Generator" in report.cause.reason
    assert "generators=[g]" in report.cause.fix


def test_passed_and_default_generators_are_not_flagged() -> None:
    g = torch.Generator().manual_seed(5)

    def step() -> None:
        torch.randn(3, generator=g)
        torch.randn(3, generator=torch.default_generator)
        torch.randn(3)

    report = find_divergence(step, generators=[g])
    assert report.matched
    assert all(op.uncovered_rng is None for op in report.stream_a)


# state built outside fn -------------------------------------------------------------------------


def test_a_model_built_outside_fn_is_state_outside_fn() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step() -> None:
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()

    report = find_divergence(step)
    assert report.kind == "values"
    assert report.op is not None
    assert report.op.name == "aten.addmm.default"
    assert report.cause is not None
    assert report.cause.kind == "state_outside_fn"
    assert "outlives fn" in report.cause.reason
    assert report.cause.fix.startswith("fn must build its model, optimizer and data")


def test_a_replay_with_run_1s_inputs_that_matches_is_state_outside_fn() -> None:
    calls = itertools.count(1)

    def step() -> torch.Tensor:
        return torch.randn(3) + (next(calls) % 2) * 0.5  # odd calls: run 1 and replay 1

    report = find_divergence(step)
    assert report.cause is not None
    assert report.cause.kind == "state_outside_fn"
    assert "a replay with run 1's inputs" in report.cause.reason
    assert "gave run 1's bytes" in report.cause.reason
    assert report.cause.fix.startswith("fn must build its model, optimizer and data")


def test_state_changed_once_by_run_1_is_state_outside_fn() -> None:
    calls = itertools.count(1)

    def step() -> torch.Tensor:
        return torch.randn(3) + (next(calls) == 1)

    report = find_divergence(step)
    assert report.cause is not None
    assert report.cause.kind == "state_outside_fn"
    assert "run 1 changed something that later runs read" in report.cause.reason


def test_another_path_through_the_code_is_control_flow() -> None:
    calls = itertools.count(1)

    def step() -> torch.Tensor:
        x = torch.randn(3)
        return x.relu() if next(calls) % 2 else x.sigmoid()  # BRANCH

    report = find_divergence(step)
    assert report.kind == "stream"
    assert report.cause is not None
    assert report.cause.kind == "control_flow"
    assert f"test_divergence_causes.py:{line_of('BRANCH')}" in report.cause.reason
    assert "fn must build its model, optimizer and data" in report.cause.fix


# OS entropy -----------------------------------------------------------------------------------


def test_os_entropy_names_where_the_data_came_into_torch() -> None:
    report = find_divergence(noisy_step)
    assert report.cause is not None
    assert report.cause.kind == "os_entropy"
    entropy_line = line_of("ENTROPY", DIVERGENCE_TESTS)
    assert (
        f"made from Python or NumPy data by op #13 aten.lift_fresh.default at "
        f"test_divergence.py:{entropy_line}"
    ) in report.cause.reason
    assert "changed on every run and no replay reproduced it" in report.cause.reason
    assert report.cause.fix.startswith("draw it from a seeded RNG")


# nondeterministic kernels ---------------------------------------------------------------------


@pytest.fixture
def noisy_index_add() -> Iterator[None]:
    """torch's CPU ``index_add_`` replaced by one that adds OS noise: atomics, simulated."""

    def index_add_(self: torch.Tensor, dim: int, index: torch.Tensor, source: torch.Tensor,
                   *, alpha: float = 1) -> torch.Tensor:
        assert dim == 0
        self.index_put_((index,), source * alpha, accumulate=True)
        noise = torch.tensor(list(os.urandom(self.numel())), dtype=self.dtype)
        return self.add_(noise.reshape(self.shape) * 1e-3)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "overriding a registered kernel"
        library = torch.library.Library("aten", "IMPL")
        library.impl("index_add_", index_add_, "CPU")
    try:
        yield
    finally:
        del library  # its finalizer removes the kernel: torch's own is back


def scatter_step() -> torch.Tensor:
    source = torch.randn(8)
    out = torch.zeros(4)
    out.index_add_(0, torch.tensor([0, 1, 1, 3, 0, 2, 2, 3]), source)
    return out * 2


@pytest.mark.usefixtures("noisy_index_add")
def test_a_nondeterministic_kernel_points_to_deterministic_algorithms() -> None:
    report = find_divergence(scatter_step, algorithms=False)
    assert report.op is not None
    assert report.op.name == "aten.index_add_.default"
    assert report.cause is not None
    assert report.cause.kind == "nondeterministic_kernel"
    assert "from identical inputs, with deterministic algorithms off" in report.cause.reason
    assert "torch documents it as nondeterministic" in report.cause.reason
    assert report.cause.fix.startswith("pass algorithms=True")
    # with deterministic algorithms on, torch would use its deterministic kernel; this
    # replaced one has none, and the report says no option fixes it
    report = find_divergence(scatter_step)
    assert report.cause is not None
    assert report.cause.kind == "nondeterministic_kernel"
    assert "even with deterministic algorithms on" in report.cause.reason
    assert "algorithms=True" not in report.cause.fix


def test_the_replaced_kernel_is_gone_after_the_fixture() -> None:
    assert find_divergence(scatter_step, algorithms=False).matched


# uninitialised memory -------------------------------------------------------------------------


def reads_uninitialised_memory() -> torch.Tensor:
    """Free a block of OS noise, then read a new ``empty`` tensor, which reuses it.

    Bytes, summed exactly: a float sum would lose the noise next to the
    allocator's own words left in the block.
    """
    total = torch.zeros((), dtype=torch.int64)
    for _ in range(8):
        noise = torch.tensor(list(os.urandom(4096)), dtype=torch.uint8)
        del noise
        total = total + torch.empty(4096, dtype=torch.uint8).sum()  # EMPTY
    return total


def test_uninitialised_memory_points_to_fill_uninitialized_memory() -> None:
    report = find_divergence(reads_uninitialised_memory, algorithms=False)
    assert report.kind == "values"
    assert report.op is not None
    assert report.op.name == "aten.sum.default"
    assert report.cause is not None
    assert report.cause.kind == "uninitialized_memory"
    assert (
        f"aten.empty.memory_format at test_divergence_causes.py:{line_of('EMPTY')} that no op "
        "wrote"
    ) in report.cause.reason
    assert "fill_uninitialized_memory=True" in report.cause.fix
    assert "algorithms=True" in report.cause.fix
    # the fix works: torch fills new memory under deterministic algorithms
    assert find_divergence(reads_uninitialised_memory, fill_uninitialized_memory=True).matched


# across processes: string hashing, flags, generators -------------------------------------------

HASHING_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from repro_ctx import record

    def ordered():
        x = torch.ones(1)
        for name in {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"}:
            x = x * len(name) + 1

    g = torch.Generator()
    g.seed()  # from OS entropy: differs in every process

    record(ordered, path=sys.argv[1] + "-ordered.json")
    record(lambda: torch.randn(3, generator=g) * 2, path=sys.argv[1] + "-generator.json")
""")


@pytest.fixture(scope="module")
def two_hash_seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same script in two processes whose PYTHONHASHSEED differs."""
    folder = tmp_path_factory.mktemp("hashing")
    script = folder / "script.py"
    script.write_text(HASHING_SCRIPT)
    for name, hash_seed in (("a", "1"), ("b", "2")):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, str(script), str(folder / name)], check=True, env=env,
                       cwd=folder, timeout=HANG_TIMEOUT)
    return folder


def test_processes_that_hash_differently_point_to_repro_ctx_run(two_hash_seeds: Path) -> None:
    report = compare(two_hash_seeds / "a-ordered.json", two_hash_seeds / "b-ordered.json")
    assert not report.matched
    assert report.cause is not None
    assert report.cause.kind == "hash_order"
    assert "PYTHONHASHSEED 1 in a-ordered.json, 2 in b-ordered.json" in report.cause.reason
    assert "repro-ctx run" in report.cause.fix
    header = json.loads((two_hash_seeds / "a-ordered.json").read_text())
    assert header["PYTHONHASHSEED"] == "1"
    assert isinstance(header["hash_probe"], int)
    assert header["version"] == 2


def test_an_uncovered_generator_is_named_across_processes(two_hash_seeds: Path) -> None:
    report = compare(two_hash_seeds / "a-generator.json", two_hash_seeds / "b-generator.json")
    assert report.cause is not None
    assert report.cause.kind == "uncovered_rng"
    assert "generators=[g]" in report.cause.fix


def test_different_flags_across_processes_are_named(tmp_path: Path) -> None:
    def stream(digest: str, benchmark: str) -> dict[str, object]:
        return {"format": "repro_ctx op stream", "version": 1,
                "flags": {"torch.backends.cudnn.benchmark": benchmark, "devices": "1"},
                "ops": [["aten.add.Tensor", "forward", "", "f.py", 3, "",
                         [[[2], "torch.float32", digest, 1.0, []]]]]}

    (tmp_path / "a.json").write_text(json.dumps(stream("aa", "False")))
    (tmp_path / "b.json").write_text(json.dumps(stream("bb", "True")))
    report = compare(tmp_path / "a.json", tmp_path / "b.json")
    assert report.cause is not None
    assert report.cause.kind == "flags_differ"
    assert report.cause.reason == (
        "the runs used different settings: torch.backends.cudnn.benchmark = False (a.json) vs "
        "True (b.json)"
    )
    assert "same deterministic() options" in report.cause.fix
    # a version 1 file (no generator column) still reads
    assert all(op.uncovered_rng is None for op in report.stream_a)


def test_a_matched_report_has_no_cause(tmp_path: Path) -> None:
    path = record(lambda: torch.ones(2) * 3, path=tmp_path / "a.json")
    report = compare(path, path)
    assert report.matched
    assert report.cause is None
    assert "\n  cause " not in str(report)


# the classifier's remaining branches, from constructed evidence --------------------------------


def op(index: int, name: str, digest: str | None = "d", file: str = "/x/model.py") -> OpRecord:
    return OpRecord(index, name, "forward", "", file, 7, "",
                    (OutputRecord((2,), "torch.float32", digest, 1.0),))


OFF = {ALGORITHMS_FLAG: "[False, False]"}
ON = {ALGORITHMS_FLAG: "[True, False]", FILL_FLAG: "True"}
LABELS = ("run 1", "run 2")


def classify_values(
    stream_a: list[OpRecord], stream_b: list[OpRecord], flags: dict[str, str],
    samples: tuple[OpSample, ...] = (), **kwargs: object,
) -> tuple[str, str, str]:
    cause = classify("values", len(stream_a) - 1, stream_a, stream_b, flags, flags, LABELS,
                     evidence=Evidence(samples) if samples else None, **kwargs)  # type: ignore[arg-type]
    assert cause is not None
    return cause.kind, cause.reason, cause.fix


def sample(inputs: tuple[str | None, ...], outputs: str, origins: tuple[int | None, ...] = (),
           outlives: tuple[bool, ...] = ()) -> OpSample:
    return OpSample(inputs, origins or (None,) * len(inputs), outlives or (False,) * len(inputs),
                    (outputs,))


def test_without_replays_the_op_name_and_position_decide() -> None:
    compared = op(0, "aten.randn.default")
    a = [compared, op(1, "aten.scatter_add_.default", "a")]
    b = [compared, op(1, "aten.scatter_add_.default", "b")]
    kind, reason, fix = classify_values(a, b, OFF)
    assert kind == "nondeterministic_kernel"
    assert "in some runs only" in reason
    assert fix.startswith("pass algorithms=True")
    # the first compared op: the state differed before fn started
    a = [op(0, "aten.t.default", None), op(1, "aten.mm.default", "a")]
    b = [a[0], op(1, "aten.mm.default", "b")]
    assert classify_values(a, b, ON)[0] == "state_outside_fn"
    # otherwise nothing is known
    a = [compared, op(1, "aten.mm.default", "a")]
    b = [compared, op(1, "aten.mm.default", "b")]
    kind, _reason, fix = classify_values(a, b, ON)
    assert kind == "unknown"
    assert "runs=3" in fix
    kind, reason, fix = classify_values(a, b, ON, processes=({}, {}))
    assert kind == "unknown"
    assert "in the two processes" in reason
    assert "find_divergence(fn) in one process" in fix


def test_replays_that_repeat_run_1_blame_a_listed_kernel_or_nothing() -> None:
    compared = op(0, "aten.randn.default")
    for name, expected in (("aten.index_put_.default", "nondeterministic_kernel"),
                           ("aten.mm.default", "unknown")):
        a = [compared, op(1, name, "a")]
        b = [compared, op(1, name, "b")]
        repeat = (sample(("x",), "a"), sample(("x",), "a"))
        kind, reason, _fix = classify_values(a, b, OFF, repeat)
        assert kind == expected
        if kind == "unknown":
            assert "in run 2 only" in reason


def test_inputs_that_repeat_across_some_runs_are_state() -> None:
    compared = op(0, "aten.randn.default")
    a = [compared, op(1, "aten.add.Tensor", "a")]
    b = [compared, op(1, "aten.add.Tensor", "b")]
    # replays see different inputs, one of them gives run 2's bytes again
    samples = (sample(("1",), "b"), sample(("2",), "c"))
    kind, reason, _fix = classify_values(a, b, ON, samples)
    assert kind == "state_outside_fn"
    assert "repeats across some of them" in reason


@pytest.mark.parametrize(
    ("origin", "expected"),
    [(None, "made where torch records no op"),
     (0, "last written by op #0 aten.randn.default at model.py:7")],
)
def test_entropy_says_where_the_input_came_from(origin: int | None, expected: str) -> None:
    compared = op(0, "aten.randn.default")
    a = [compared, op(1, "aten.add.Tensor", "a")]
    b = [compared, op(1, "aten.add.Tensor", "b")]
    samples = (sample(("1",), "c", (origin,)), sample(("2",), "d", (origin,)))
    kind, reason, _fix = classify_values(a, b, ON, samples)
    assert kind == "os_entropy"
    assert expected in reason


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(OFF, "pass algorithms=True with fill_uninitialized_memory=True"),
     ({ALGORITHMS_FLAG: "[True, False]", FILL_FLAG: "False"},
      "pass fill_uninitialized_memory=True"),
     (ON, "write every element before reading it")],
)
def test_the_uninitialised_memory_fix_follows_the_flags(
    flags: dict[str, str], expected: str
) -> None:
    empty = op(0, "aten.empty.memory_format", None)
    a = [empty, op(1, "aten.sum.default", "a")]
    b = [empty, op(1, "aten.sum.default", "b")]
    samples = (sample(("1",), "c", (0,)), sample(("2",), "d", (0,)))
    kind, _reason, fix = classify_values(a, b, flags, samples)
    assert kind == "uninitialized_memory"
    assert fix.startswith(expected)


@pytest.mark.parametrize("replays", ["c", "a"], ids=["new bytes", "run 1's bytes"])
def test_unwritten_memory_is_blamed_even_when_the_replays_read_equal_bytes(replays: str) -> None:
    """The allocator may hand both replays the same block: the op still reads unwritten memory.

    Seen in CI (1 run in ~40 on NumPy 1.26's environment): both replays' ``empty``
    got a block with equal bytes, so their inputs agreed and the report blamed
    state outside fn.
    """
    ones, empty = op(0, "aten.ones.default"), op(1, "aten.empty.memory_format", None)
    a = [ones, empty, op(2, "aten.sum.default", "a")]
    b = [ones, empty, op(2, "aten.sum.default", "b")]
    samples = (sample(("x", "1"), replays, (0, 1)), sample(("x", "1"), replays, (0, 1)))
    kind, reason, fix = classify_values(a, b, OFF, samples)
    assert kind == "uninitialized_memory"
    assert reason.startswith("input 2 of op #2 aten.sum.default is memory from op #1 "
                             "aten.empty.memory_format")
    assert reason.endswith("(the replays happened to read equal bytes)")
    assert fix.startswith("pass algorithms=True with fill_uninitialized_memory=True")


def test_a_stream_that_stops_is_control_flow_at_the_op_that_ran() -> None:
    a = [op(0, "aten.randn.default")]
    cause = classify("stream", 1, a, [*a, op(1, "aten.exp.default")], ON, ON, LABELS)
    assert cause is not None
    assert cause.kind == "control_flow"
    assert "at model.py:7" in cause.reason
    assert classify("matched", None, a, a, ON, ON, LABELS) is None


def test_a_storage_address_reused_by_another_tensor_is_not_blamed_on_its_old_writer() -> None:
    """Freed memory reused at the same address must not inherit the op that wrote it before."""
    import weakref

    import torch

    from repro_ctx.diagnose.op_recorder import writer_of

    live = torch.ones(4)
    gone = torch.ones(4)
    writers = {live.untyped_storage().data_ptr(): (3, weakref.ref(live))}
    assert writer_of(writers, live) == 3
    address = gone.untyped_storage().data_ptr()
    writers[address] = (5, weakref.ref(gone))
    del gone  # its memory may now hold any other tensor
    newcomer = torch.zeros(4)
    writers[newcomer.untyped_storage().data_ptr()] = writers.get(address, (5, weakref.ref(live)))
    assert writer_of(writers, newcomer) is None
    assert writer_of(writers, live.view(2, 2)) == 3  # a view shares its base's writer
    assert writer_of({}, live) is None
