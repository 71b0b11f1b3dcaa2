"""find_divergence, record and compare: the first op where two runs part, named.

Nondeterminism here is real: unseeded OS entropy (``os.urandom``) that no
scope can seed, or state carried from one call to the next. Expected source
lines are read from this file by their marker comments, so the tests say
exactly which line the report must name.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from repro_ctx import DivergenceReport, OpRecord, compare, find_divergence, record
from repro_ctx.diagnose.op_outputs import describe_output, leaves, to_host, value_differences
from repro_ctx.diagnose.op_recorder import _Recorder
from repro_ctx.diagnose.records import (
    OutputRecord,
    element_difference,
    norm_difference,
    sample_differences,
)
from tests.global_state import full_state
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).read_text().splitlines()


def line_of(marker: str) -> int:
    (number,) = [i for i, text in enumerate(HERE, 1) if text.rstrip().endswith(f"# {marker}")]
    return number


# models ----------------------------------------------------------------------------------


class Noisy(torch.nn.Module):
    """Adds noise from the OS: unseeded entropy that no scope can make repeatable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        data = list(os.urandom(x.numel()))
        noise = torch.tensor(data, dtype=torch.float32).reshape(x.shape)  # ENTROPY
        return x + noise * 1e-3  # NOISY


def noisy_step() -> None:
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), Noisy(), torch.nn.Dropout(0.2),
        torch.nn.Linear(16, 2),
    )
    loss = model(torch.randn(4, 8)).pow(2).mean()
    loss.backward()


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(16, 16)
        self.drop = torch.nn.Dropout(0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc(x).relu())  # BLOCK


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(8, 16)
        self.block = Block()
        self.out = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.block(self.inp(x)))  # NET


def training_step(foreach: bool = False) -> None:
    """A deterministic step: init, data, dropout, backward and an optimizer update."""
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=foreach)
    data, target = torch.randn(16, 8), torch.randint(0, 3, (16,))
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(data), target)  # LOSS
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def counting(step: Callable[[int, torch.Tensor], object]) -> Callable[[], None]:
    """A function that behaves by how often it was called: state that leaks between runs."""
    calls = itertools.count(1)

    def run() -> None:
        step(next(calls), torch.randn(4, 3))

    return run


# the three outcomes -------------------------------------------------------------------


def test_os_entropy_is_pinpointed_to_its_op_and_line() -> None:
    report = find_divergence(noisy_step)

    assert report.kind == "values"
    assert not report.matched
    op, other = report.op, report.other_op
    assert op is not None
    assert other is not None
    # x + noise * 1e-3: the multiply is the first op whose bytes depend on the noise
    assert op.name == other.name == "aten.mul.Tensor"
    assert op.file == __file__
    assert op.line == line_of("NOISY")
    assert op.module == "Sequential.2 (Noisy)"
    assert op.phase == "forward"
    assert op.shapes == ((4, 16),)
    assert op.dtypes == ("torch.float32",)
    assert report.index == op.index
    # every op before it gave the same bytes in both runs
    for a, b in zip(report.stream_a[: op.index], report.stream_b, strict=False):
        assert a.outputs == b.outputs
    # noise bytes are in [0, 255] * 1e-3, so two runs differ by at most 0.255
    assert report.max_abs_diff is not None
    assert 0 < report.max_abs_diff <= 0.255 + 1e-6
    assert report.max_rel_diff is not None
    assert 0 < report.max_rel_diff <= 1
    assert "replay" in report.values_note
    assert report.flags["torch.use_deterministic_algorithms (mode, warn_only)"] == "[True, False]"
    text = str(report)
    assert "aten.mul.Tensor" in text
    assert f"{__file__}:{line_of('NOISY')}" in text
    assert "Sequential.2 (Noisy)" in text
    assert "DIFFERENT bytes" in text
    assert "use_deterministic_algorithms" in text


def test_only_hashed_ops_are_shown_equal() -> None:
    report = find_divergence(noisy_step)
    assert report.index is not None
    before = report.stream_a[: report.index]
    compared = [op for op in before if op.compared]
    unseen = [op for op in before if not op.compared]
    # the noise enters through lift_fresh and a view, neither of which is hashed
    assert [op.name for op in unseen[-2:]] == ["aten.lift_fresh.default", "aten.view.default"]
    assert report.detail == (
        f"op #{report.index} aten.mul.Tensor gave different bytes ({len(compared)} ops before "
        f"it matched; {len(unseen)} ops before it gave views or uninitialised memory and were "
        "not compared)"
    )
    rows = {line.lstrip("> ").split()[0]: line for line in str(report).splitlines()[-5:]}
    for op in report.stream_a[report.index - 2 : report.index + 1]:
        expected = ("DIFFERENT bytes" if op.index == report.index
                    else "equal" if op.compared else "not compared")
        assert rows[str(op.index)].endswith(expected)
    assert rows[str(report.index - 2)].endswith("not compared")  # lift_fresh: never "equal"
    # the plot draws the same three classes
    equal, unknown, differ = report.op_classes()
    assert [i for i in equal if i < report.index] == [op.index for op in compared]
    assert [i for i in unknown if i < report.index] == [op.index for op in unseen]
    assert differ[0] == report.index
    assert len(equal) + len(unknown) + len(differ) == len(report.stream_a)


@pytest.mark.parametrize(
    ("digests", "expected"),
    [((), "it is the first op"),
     (("a",), "1 op before it matched"),
     ((None,), "nothing before it was compared: 1 op before it gave views or uninitialised "
               "memory and was not compared"),
     (("a", None, None), "1 op before it matched; 2 ops before it gave views or "
                         "uninitialised memory and were not compared")],
)
def test_the_headline_says_what_was_compared(
    digests: tuple[str | None, ...], expected: str
) -> None:
    def op(index: int, digest: str | None) -> OpRecord:
        return OpRecord(index, "aten.x", "forward", "", "", 0, "",
                        (OutputRecord((1,), "f", digest, None),))

    before = [op(i, digest) for i, digest in enumerate(digests)]
    report = DivergenceReport("values", len(before), ("a", "b"),
                              (*before, op(len(before), "x")), (*before, op(len(before), "y")))
    assert report.detail.endswith(f"({expected})")


def test_deterministic_training_step_matches() -> None:
    before = full_state()
    report = find_divergence(training_step, runs=3)
    assert full_state() == before

    assert report.kind == "matched"
    assert report.matched
    assert report.index is None
    assert report.op is None
    assert report.labels == ("run 1", "run 3")
    assert report.max_abs_diff is None
    assert report.stream_index is None
    assert set(report.op_differences) == {0.0}
    ops = report.stream_a
    assert len(ops) == len(report.stream_b) > 100
    assert "matched bitwise" in str(report)
    names = {op.name for op in ops}
    assert {"aten.addmm.default", "aten.native_dropout.default", "aten.mm.default"} <= names or {
        "aten.addmm.default", "aten.bernoulli_.float", "aten.mm.default"
    } <= names
    # backward ops are recorded, with the forward module and line that created them
    backward = [op for op in ops if op.phase == "backward"]
    assert backward
    fc = [op for op in backward if op.module == "Net.block.fc (Linear)"]
    assert fc
    assert {op.grad_fn for op in fc} >= {"AddmmBackward0"}
    assert {op.line for op in fc} == {line_of("BLOCK")}
    # the optimizer's in-place updates are recorded and hashed
    updates = [op for op in ops if op.name == "aten.add_.Tensor" and op.phase == "forward"]
    assert updates
    assert all(out.digest is not None for op in updates for out in op.outputs)
    # forward ops name the module path and the line in the model's code
    forward_fc = [op for op in ops if op.phase == "forward" and op.name == "aten.addmm.default"]
    assert {op.module for op in forward_fc} == {
        "Net.inp (Linear)", "Net.block.fc (Linear)", "Net.out (Linear)"
    }
    assert {op.line for op in forward_fc if op.module == "Net.inp (Linear)"} == {line_of("NET")}
    assert {op.line for op in ops if op.name == "aten._log_softmax.default"} == {line_of("LOSS")}


def test_uninitialised_memory_is_not_a_divergence() -> None:
    # Without deterministic algorithms, empty_like (dropout's mask) holds stale bytes.
    report = find_divergence(training_step, algorithms=False)
    assert report.matched
    assert report.flags["torch.use_deterministic_algorithms (mode, warn_only)"] == "[False, False]"
    empties = [op for op in report.stream_a if op.name.startswith("aten.empty")]
    assert empties
    assert all(out.digest is None for op in empties for out in op.outputs)


def test_foreach_updates_hash_the_tensors_they_write() -> None:
    report = find_divergence(functools.partial(training_step, foreach=True))
    assert report.matched
    foreach = [op for op in report.stream_a if op.name.startswith("aten._foreach_")]
    assert foreach
    for op in foreach:
        assert op.outputs
        assert all(out.digest is not None for out in op.outputs)


def test_different_branch_is_a_stream_mismatch() -> None:
    def step(call: int, x: torch.Tensor) -> object:
        y = x * 2
        return y.relu() if call % 2 else y.sigmoid()  # BRANCH

    report = find_divergence(counting(step))
    assert report.kind == "stream"
    op, other = report.op, report.other_op
    assert op is not None
    assert other is not None
    assert (op.name, other.name) == ("aten.relu.default", "aten.sigmoid.default")
    assert op.line == other.line == line_of("BRANCH")
    assert report.stream_index == report.index
    assert report.max_abs_diff is None
    assert "aten.relu.default (run 1) vs aten.sigmoid.default (run 2)" in report.detail
    assert "DIFFERENT op" in str(report)
    assert "aten.relu.default / aten.sigmoid.default" in str(report)


def test_different_shape_is_a_stream_mismatch() -> None:
    def step(call: int, x: torch.Tensor) -> object:
        return x[:call].exp()

    report = find_divergence(counting(step))
    assert report.kind == "stream"
    assert report.op is not None
    assert report.op.name == "aten.slice.Tensor"
    assert "shapes (1, 3) (run 1) vs (2, 3) (run 2)" in report.detail


def test_different_dtype_is_a_stream_mismatch() -> None:
    def step(call: int, x: torch.Tensor) -> object:
        return x.sum(dtype=torch.float64 if call == 1 else torch.float32)

    report = find_divergence(counting(step))
    assert report.kind == "stream"
    assert "dtypes torch.float64 (run 1) vs torch.float32 (run 2)" in report.detail


def test_a_run_that_stops_early_is_a_stream_mismatch() -> None:
    def step(call: int, x: torch.Tensor) -> object:
        return x.exp() if call == 1 else None

    report = find_divergence(counting(step))
    assert report.kind == "stream"
    assert report.other_op is None
    assert report.op is not None
    assert report.op.name == "aten.exp.default"
    assert report.detail == (
        "the op streams differ: run 2 stopped after 1 ops, the other went on with aten.exp.default"
    )
    assert "missing" in str(report)
    # and the other way round
    report = find_divergence(counting(lambda call, x: x.exp() if call == 2 else None))
    assert report.op is None
    assert "run 1 stopped after 1 ops" in report.detail


# how large the difference is -----------------------------------------------------------


def test_replay_that_reproduces_run_1_gives_exact_values() -> None:
    # odd calls add 0.5, even calls add 0: run 1 and the first replay (call 3) agree
    report = find_divergence(counting(lambda call, x: x + (call % 2) * 0.5))
    assert report.kind == "values"
    assert report.op is not None
    assert report.op.name == "aten.add.Tensor"
    assert report.max_abs_diff == pytest.approx(0.5, rel=1e-6)
    assert report.values_note == "run 1 (reproduced by a replay) vs run 2"
    assert "max abs diff  0.5" in str(report)


def test_values_not_measured_when_replays_repeat_the_other_run() -> None:
    report = find_divergence(counting(lambda call, x: x + (call == 1)))
    assert report.kind == "values"
    assert report.max_abs_diff is None
    assert report.max_rel_diff is None
    assert report.values_note.startswith("not measured")
    assert "max abs diff  n/a" in str(report)


def test_replays_that_stop_before_the_op_measure_nothing() -> None:
    def step(call: int, x: torch.Tensor) -> object:
        return x.exp() * call if call <= 2 else None

    report = find_divergence(counting(step))
    assert report.kind == "values"
    assert report.op is not None
    assert report.op.name == "aten.mul.Tensor"
    assert report.max_abs_diff is None


def test_replays_with_another_shape_measure_nothing() -> None:
    # runs 1 and 2 differ in value at op 1; the replays (calls 3, 4) give another shape there
    def step(call: int, x: torch.Tensor) -> object:
        return x[:3 if call <= 2 else 2] + call

    report = find_divergence(counting(step))
    assert report.kind == "values"
    assert report.op is not None
    assert report.op.name == "aten.add.Tensor"
    assert report.max_abs_diff is None


def test_values_divergence_notes_where_streams_part_later() -> None:
    def step(call: int, x: torch.Tensor) -> object:
        y = x + call
        return y.exp() if call == 1 else y.sin()

    report = find_divergence(counting(step))
    assert report.kind == "values"
    assert report.index is not None
    assert report.stream_index == report.index + 1
    assert f"the op streams also part at op #{report.index + 1}" in str(report)
    assert len(report.op_differences) == report.index + 1


def test_more_runs_report_the_earliest_divergence() -> None:
    # run 2 differs late (op 2), run 3 early (op 0)
    def step(call: int, x: torch.Tensor) -> object:
        a = x + int(call == 3)
        b = a * 2
        return b - int(call == 2)

    report = find_divergence(counting(step), runs=3)
    assert report.labels == ("run 1", "run 3")
    assert report.index == 1  # op 0 is randn, equal in every run
    assert report.op is not None
    assert report.op.name == "aten.add.Tensor"
    # only run 2 differs: the report keeps it, not the matching run 3
    report = find_divergence(counting(lambda call, x: x + int(call == 2)), runs=3)
    assert report.labels == ("run 1", "run 2")
    assert report.kind == "values"


# what a record holds ---------------------------------------------------------------------


def test_module_path_falls_back_to_class_names_and_ignores_other_threads() -> None:
    class Outer(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # a module made on the fly is not among the root's named modules
            inner = torch.nn.Softplus()
            worker = threading.Thread(target=torch.nn.Tanh(), args=(x,))
            worker.start()
            worker.join()
            return inner(x)

    report = find_divergence(lambda: Outer()(torch.randn(3)))
    modules = {op.module for op in report.stream_a}
    assert "Outer.Softplus (Softplus)" in modules
    assert not any("Tanh" in module for module in modules)


def test_function_of_torch_alone_has_a_source_from_the_caller() -> None:
    report = find_divergence(torch.randn, 3)  # CALLER
    (op,) = report.stream_a
    assert op.name == "aten.randn.default"
    assert op.line == line_of("CALLER")
    assert op.module == ""


def test_source_is_empty_without_a_user_frame() -> None:
    recorder = _Recorder(None, None, 0)
    # a suspended generator's frame has no caller: here only a "torch" frame is left
    code = compile("def frames():\n    yield\n",
                   os.path.join(os.path.dirname(torch.__file__), "fake_module.py"), "exec")
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    generator = namespace["frames"]()
    assert recorder._source(generator.gi_frame) == ("", 0)


def test_module_stack_pops_to_the_module_that_ends() -> None:
    recorder = _Recorder(None, None, 0)
    outer, stranger = torch.nn.Sequential(torch.nn.ReLU()), torch.nn.Tanh()
    inner = outer[0]
    recorder.push(outer, ())
    recorder.push(inner, ())
    assert [label for _, _, label in recorder.modules] == ["Sequential", "Sequential.0 (ReLU)"]
    recorder.pop(stranger, (), None)  # never pushed: nothing changes
    assert len(recorder.modules) == 2
    recorder.pop(outer, (), None)  # its children end with it
    assert recorder.modules == []


def test_without_autograd_introspection_ops_are_still_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # older torch builds may lack these private helpers
    monkeypatch.delattr(torch._C, "_current_autograd_node")
    monkeypatch.delattr(torch._C._autograd, "_get_sequence_nr")

    def step() -> None:
        torch.nn.Linear(3, 2)(torch.randn(3)).sum().backward()

    report = find_divergence(step)
    assert report.matched
    assert {op.phase for op in report.stream_a} == {"forward"}
    assert "aten.mm.default" in {op.name for op in report.stream_a} or "aten.mv.default" in {
        op.name for op in report.stream_a}


def test_leaves_flatten_nested_outputs_and_drop_none() -> None:
    assert list(leaves((1, None, [2, (3,)]))) == [1, 2, 3]


@pytest.mark.filterwarnings("ignore::UserWarning")  # beta, prototype and deprecated layouts
def test_outputs_of_every_kind_are_described() -> None:
    def describe(value: object, hashed: bool = True, samples: int = 0) -> OutputRecord:
        return describe_output(torch, value, hashed, samples)[0]

    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    # layout does not matter, values do
    assert describe(x.t()).digest == describe(x.t().contiguous()).digest
    assert describe(x).digest != describe(x.t().contiguous()).digest
    assert describe(x).digest != describe(x + 1).digest
    assert describe(x).norm == pytest.approx(float(x.norm()))
    for value in (
        x > 3,
        x.to(torch.bfloat16),
        x.to(torch.float16),
        x.to(torch.int64),
        torch.complex(x, -x).conj(),
        torch.zeros(0),
        torch.tensor(2.5),
    ):
        out = describe(value)
        assert out.digest is not None
        assert out.dtype == str(value.dtype)
        assert out.shape == tuple(value.shape)
    assert describe(x.to(torch.bfloat16)).digest != describe(x.to(torch.float16)).digest
    # norms are for floating outputs only
    assert describe(x.to(torch.bfloat16)).norm == pytest.approx(float(x.norm()), rel=1e-2)
    assert describe(x.to(torch.complex32)).norm == pytest.approx(float(x.norm()), rel=1e-3)
    assert describe(x.to(torch.int64)).norm is None
    conj = torch.complex(x, -x).conj()
    assert describe(conj).digest == describe(conj.resolve_conj()).digest
    assert describe(-x).digest == describe(torch._neg_view(x)).digest
    # sparse layouts hash their index and value tensors
    dense = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    for sparse in (dense.to_sparse(), dense.to_sparse_csr(), dense.to_sparse_csc(),
                   dense.to_sparse_bsr((1, 1)), dense.to_sparse_bsc((1, 1))):
        out = describe(sparse)
        assert out.digest is not None
        assert out.norm == pytest.approx(math.sqrt(5))
    assert describe(dense.to_sparse()).digest != describe((dense * 2).to_sparse()).digest
    assert describe(torch.quantize_per_tensor(x, 0.5, 0, torch.qint8)).digest is not None
    # unreadable or unhashed: recorded, no hash
    assert describe(torch.empty(2, 3, device="meta")) == OutputRecord((2, 3), "torch.float32",
                                                                      None, None)
    nested = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])
    assert describe(nested).digest is None
    assert describe(torch.ones(2).to_mkldnn()).digest is None
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = torch.randn(3)
    assert describe(fake) == OutputRecord((3,), "torch.float32", None, None)
    assert describe(x, hashed=False) == OutputRecord((3, 4), "torch.float32", None, None)
    # Python scalars (``.item()``) and other leaves
    assert describe(3).digest == describe(3).digest != describe(4).digest
    assert describe(True).dtype == "bool"
    assert describe(-2.5, samples=4) == OutputRecord((), "float", describe(-2.5).digest, 2.5,
                                                     (2.5,))
    assert describe(1j).norm == 1.0
    assert describe(torch.float32) == OutputRecord((), "dtype", None, None)
    # samples: evenly spaced, first and last included
    assert describe(torch.arange(10.0), samples=3).sample == (0.0, 4.0, 9.0)
    assert describe(torch.arange(2.0), samples=8).sample == (0.0, 1.0)


def test_host_copies_at_most_once() -> None:
    x = torch.arange(6.0).reshape(2, 3)
    host, copied = to_host(x)
    assert host.data_ptr() == x.data_ptr()
    assert not copied
    host, copied = to_host(x.t())
    assert copied
    assert host.is_contiguous()

    class DeviceTensor:
        """Stands in for a CUDA tensor: counts the copies to the host."""

        device = SimpleNamespace(type="cuda")

        def __init__(self) -> None:
            self.copies = 0

        def detach(self) -> DeviceTensor:
            return self

        def is_conj(self) -> bool:
            return False

        def is_neg(self) -> bool:
            return False

        def contiguous(self) -> DeviceTensor:
            return self

        def cpu(self) -> torch.Tensor:
            self.copies += 1
            return x

    fake = DeviceTensor()
    assert to_host(fake) == (x, True)  # type: ignore[arg-type]
    assert fake.copies == 1


def test_value_differences() -> None:
    nan, inf = math.nan, math.inf
    a = torch.tensor([1.0, nan, inf, 0.0, 2.0])
    assert value_differences([a], [a.clone()]) == (0.0, 0.0)
    assert value_differences([a], [torch.tensor([1.0, nan, inf, 0.0, 3.0])]) == (1.0, 1 / 3)
    assert value_differences([a], [torch.tensor([1.0, 5.0, inf, 0.0, 2.0])]) == (inf, inf)
    assert value_differences([a], [torch.tensor([1.0, nan, 7.0, 0.0, 2.0])]) == (inf, inf)
    complex_pair = [torch.tensor([1 + 1j])], [torch.tensor([1 - 1j])]
    assert value_differences(*complex_pair) == (2.0, 2 / 2**0.5)
    assert value_differences([torch.tensor([True])], [torch.tensor([False])]) == (1.0, 1.0)
    # mismatched or empty outputs are skipped
    assert value_differences([torch.zeros(2), torch.zeros(0)], [torch.ones(3), torch.zeros(0)]) == (
        0.0, 0.0)


def test_pure_differences() -> None:
    assert element_difference(1.0, 1.0) == (0.0, 0.0)
    assert element_difference(math.nan, math.nan) == (0.0, 0.0)
    assert element_difference(math.nan, 1.0) == (math.inf, math.inf)
    assert element_difference(math.inf, 1.0) == (math.inf, math.inf)
    assert element_difference(-2.0, 2.0) == (4.0, 2.0)

    def op(*outputs: OutputRecord) -> OpRecord:
        return OpRecord(0, "aten.x", "forward", "", "", 0, "", outputs)

    a = op(OutputRecord((2,), "f", "a", 3.0, (1.0, 2.0)), OutputRecord((), "f", "s", 1.0))
    b = op(OutputRecord((2,), "f", "b", 4.0, (1.0, 4.0)), OutputRecord((), "f", "s", 1.0))
    assert sample_differences(a, b) == (2.0, 0.5)
    assert norm_difference(a, b) == 0.25
    assert sample_differences(a, a) is None
    same_samples = op(OutputRecord((2,), "f", "c", 3.0, (1.0, 2.0)), b.outputs[1])
    assert sample_differences(a, same_samples) is None
    assert norm_difference(a, same_samples) == 0.0
    unhashed = op(OutputRecord((2,), "f", "d", None), b.outputs[1])
    assert norm_difference(a, unhashed) == 0.0
    inf_norm = op(OutputRecord((2,), "f", "e", math.inf), b.outputs[1])
    assert norm_difference(a, inf_norm) == math.inf


# validation ----------------------------------------------------------------------------


def test_bad_arguments_raise_before_anything_runs() -> None:
    calls: list[int] = []

    def fn() -> None:
        calls.append(1)

    before = full_state()
    with pytest.raises(TypeError, match=r"'device'.*algorithms, benchmark, tf32, "
                       r"fill_uninitialized_memory, generators.*functools\.partial"):
        find_divergence(fn, device="cpu")
    with pytest.raises(TypeError, match="runs must be an int >= 2"):
        find_divergence(fn, runs=True)
    with pytest.raises(TypeError, match="runs must be an int >= 2"):
        find_divergence(fn, runs=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="runs must be an int >= 2, got 1"):
        find_divergence(fn, runs=1)
    with pytest.raises(TypeError, match="callable fn, got int"):
        find_divergence(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="algorithms must be"):
        find_divergence(fn, algorithms="always")
    with pytest.raises((TypeError, ValueError), match="seed"):
        find_divergence(fn, seed=-1)
    with pytest.raises(TypeError, match=r"record\(\).*'runs'"):
        record(fn, path="x.json", runs=2)
    with pytest.raises(ValueError, match="samples must be an int >= 0"):
        record(fn, path="x.json", samples=-1)
    with pytest.raises(ValueError, match="samples must be an int >= 0"):
        record(fn, path="x.json", samples=True)
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike, got int"):
        record(fn, path=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="record\\(\\) needs a callable"):
        record(None, path="x.json")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"path_b must be a str or os\.PathLike"):
        compare("a.json", None)  # type: ignore[arg-type]
    assert calls == []
    assert full_state() == before
    assert not Path("x.json").exists()


def test_errors_in_fn_propagate_and_leave_nothing_behind() -> None:
    from torch.nn.modules import module as nn_module

    hooks = (len(nn_module._global_forward_pre_hooks), len(nn_module._global_forward_hooks))
    before = full_state()

    def broken() -> None:
        torch.nn.Linear(2, 2)(torch.randn(2))
        raise KeyError("inside fn")

    with pytest.raises(KeyError, match="inside fn"):
        find_divergence(broken)
    assert full_state() == before
    assert (len(nn_module._global_forward_pre_hooks), len(nn_module._global_forward_hooks)) == hooks
    assert torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.PROXY) is None
    assert not torch.utils._python_dispatch._get_current_dispatch_mode_stack()


# record and compare, across processes ---------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    from repro_ctx import record

    def steady():
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        model(torch.randn(5, 4)).sum().backward()

    def noisy():
        x = torch.randn(64)
        noise = torch.tensor(list(os.urandom(64)), dtype=torch.float32)
        return x * noise  # NOISE

    record(steady, path=sys.argv[1] + "-steady.json")
    record(noisy, path=sys.argv[1] + "-noisy.json", samples=64)
""")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real processes, each recording the same two functions."""
    folder = tmp_path_factory.mktemp("streams")
    script = folder / "script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("a", "b"):
        subprocess.run([sys.executable, str(script), str(folder / name)], check=True, env=env,
                       cwd=folder, timeout=HANG_TIMEOUT)
    return folder


def test_compare_processes_that_match(recorded: Path) -> None:
    report = compare(recorded / "a-steady.json", recorded / "b-steady.json")
    assert report.matched
    assert report.labels == ("a-steady.json", "b-steady.json")
    assert any(op.phase == "backward" for op in report.stream_a)
    assert report.flags["torch.backends.cudnn.deterministic"] == "True"
    assert "compare(a-steady.json, b-steady.json): steady" in str(report)


def test_compare_processes_that_differ(recorded: Path) -> None:
    report = compare(str(recorded / "a-noisy.json"), str(recorded / "b-noisy.json"))
    assert report.kind == "values"
    op = report.op
    assert op is not None
    assert op.name == "aten.mul.Tensor"
    assert op.file == str(recorded / "script.py")
    assert op.line == SCRIPT.splitlines().index("    return x * noise  # NOISE") + 1
    assert len(op.outputs[0].sample) == 64
    assert report.max_abs_diff is not None
    assert report.max_abs_diff > 0
    assert report.values_note == "over the recorded samples only: a lower bound"
    data = json.loads((recorded / "a-noisy.json").read_text())
    assert data["format"] == "repro_ctx op stream"
    assert data["torch"] == torch.__version__
    assert data["samples"] == 64


def test_compare_same_name_in_two_folders_and_agreeing_samples(tmp_path: Path) -> None:
    rows = [["aten.add.Tensor", "forward", "", "f.py", 3, "", [[[2], "torch.float32", "aa", 1.0,
                                                                   [1.0]]]]]
    benchmark = "torch.backends.cudnn.benchmark"
    header = {"format": "repro_ctx op stream", "version": 1, "flags": {benchmark: "False"},
              "ops": rows}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "run.json").write_text(json.dumps(header))
    rows[0][6][0][2] = "bb"  # type: ignore[index]
    header["flags"] = {benchmark: "True"}
    (tmp_path / "b" / "run.json").write_text(json.dumps(header))
    report = compare(tmp_path / "a" / "run.json", tmp_path / "b" / "run.json")
    assert report.labels == (str(tmp_path / "a" / "run.json"), str(tmp_path / "b" / "run.json"))
    assert report.kind == "values"
    assert report.max_abs_diff is None
    assert report.values_note == "the recorded samples agree; the bytes differ elsewhere"
    a, b = report.labels
    assert f"{benchmark} = False ({a}) vs True ({b})" in str(report)
    assert "use_deterministic_algorithms" not in str(report)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "Expecting value"),
        ("[1, 2]", "no repro_ctx op stream header"),
        ('{"format": "repro_ctx op stream", "version": 3, "flags": {}, "ops": []}',
         "format version 3, this repro_ctx reads 1 and 2"),
        ('{"format": "repro_ctx op stream", "version": 1, "ops": []}', "no flags"),
        ('{"format": "repro_ctx op stream", "version": 1, "flags": {}}', "ops"),
        ('{"format": "repro_ctx op stream", "version": 1, "flags": {}, "ops": {}}',
         "ops must be a list"),
        ('{"format": "repro_ctx op stream", "version": 1, "flags": {}, "ops": [[1, 2]]}',
         "not enough values"),
        ('{"format": "repro_ctx op stream", "version": 2, "flags": {}, '
         '"ops": [["a", "forward", "", "", 0, "", []]]}', "not enough values"),
        ('{"format": "repro_ctx op stream", "version": 1, "flags": {}, '
         '"ops": [["a", "sideways", "", "", 0, "", []]]}', "phase 'sideways'"),
    ],
)
def test_compare_rejects_other_files(tmp_path: Path, content: str, message: str) -> None:
    good = tmp_path / "good.json"
    record(lambda: torch.ones(1) + 1, path=good)
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    expected = f"not an op stream written by repro_ctx.record.*{message}"
    with pytest.raises(ValueError, match=expected):
        compare(good, bad)


def test_record_writes_nothing_when_fn_fails(tmp_path: Path) -> None:
    def broken() -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        record(broken, path=tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []
    # nor when the file cannot be written
    with pytest.raises(FileNotFoundError, match="missing"):
        record(lambda: None, path=tmp_path / "missing" / "out.json")
    assert list(tmp_path.iterdir()) == []


def test_record_options_reach_the_scope(tmp_path: Path) -> None:
    path = record(lambda: torch.ones(2).sum(), path=str(tmp_path / "r.json"), seed=7,
                  algorithms=False, benchmark=None)
    data = json.loads(path.read_text())
    assert data["seed"] == 7
    assert data["options"] == {"algorithms": "False", "benchmark": "None"}
    assert data["flags"]["torch.use_deterministic_algorithms (mode, warn_only)"] == "[False, False]"
    assert data["function"] == "test_record_options_reach_the_scope.<locals>.<lambda>"


# the plot -------------------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    return struct.unpack(">II", data[16:24])


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = find_divergence(noisy_step)
    out = report.plot(tmp_path / "values.png")
    assert out == tmp_path / "values.png"
    assert _png_size(out) == (1000, 400)
    stream = find_divergence(counting(lambda call, x: x.exp() if call == 1 else x.sin().cos()))
    assert _png_size(stream.plot(str(tmp_path / "stream.png"))) == (1000, 400)
    matched = find_divergence(counting(lambda call, x: x.exp()))
    assert _png_size(matched.plot(tmp_path / "matched.png")) == (1000, 400)
    infinite = find_divergence(counting(lambda call, x: x / (call - 1)))
    assert infinite.op_differences[-1] == math.inf
    assert _png_size(infinite.plot(tmp_path / "inf.png")) == (1000, 400)


def test_plot_without_matplotlib_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = DivergenceReport("matched", None, ("a", "b"), (), ())
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install repro-ctx\[plot\]"):
        report.plot(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
