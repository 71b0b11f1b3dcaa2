"""find_divergence on CUDA: ``index_add_`` with many duplicate indices is live nondeterminism.

With 1,000,000 values added into 100 slots, the atomic adds land in a
different order on every run, so the sums differ in their last bits unless
deterministic algorithms are on (FACTS.md: different bits across 5 runs in
default mode, identical bits in deterministic mode, H100).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from repro_ctx import find_divergence
from repro_ctx.diagnose.op_recorder import record_run

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

VALUES = 1_000_000
SLOTS = 100  # 10,000 adds per slot on average
LINES = Path(__file__).read_text().splitlines()
INDEX_ADD_LINE = next(i for i, text in enumerate(LINES, 1) if text.endswith("# INDEX_ADD"))


def scatter() -> None:
    index = torch.randint(0, SLOTS, (VALUES,), device="cuda")
    source = torch.randn(VALUES, device="cuda")
    torch.zeros(SLOTS, device="cuda").index_add_(0, index, source)  # INDEX_ADD


def test_index_add_is_pinpointed_without_deterministic_algorithms() -> None:
    report = find_divergence(scatter, algorithms=False, runs=3)

    assert report.kind == "values", str(report)
    op = report.op
    assert op is not None
    assert op.name == "aten.index_add_.default"
    assert op.file == __file__
    assert op.line == INDEX_ADD_LINE
    assert op.shapes == ((SLOTS,),)
    assert op.dtypes == ("torch.float32",)
    # the index and the values before it were drawn from the seeded generator: equal
    assert [o.name for o in report.stream_a[: op.index]] == [
        o.name for o in report.stream_b[: op.index]
    ]
    assert report.max_abs_diff is not None
    assert report.max_abs_diff > 0
    assert report.flags["torch.use_deterministic_algorithms (mode, warn_only)"] == "[False, False]"


def test_index_add_matches_with_deterministic_algorithms() -> None:
    report = find_divergence(scatter, algorithms=True, runs=3)

    assert report.matched, str(report)
    assert "aten.index_add_.default" in {op.name for op in report.stream_a}
    assert report.flags["torch.use_deterministic_algorithms (mode, warn_only)"] == "[True, False]"


def test_each_cuda_output_is_copied_to_the_host_once(monkeypatch: pytest.MonkeyPatch) -> None:
    copies: list[torch.device] = []
    cpu = torch.Tensor.cpu

    def counting_cpu(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        copies.append(self.device)
        return cpu(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    from repro_ctx import deterministic

    run = record_run(scatter, (), deterministic(0, algorithms=False))
    hashed = [out for op in run.ops for out in op.outputs if out.digest is not None]
    assert len(hashed) == 4  # randint, randn, zeros, index_add_
    assert len(copies) == len(hashed)
    assert {device.type for device in copies} == {"cuda"}
