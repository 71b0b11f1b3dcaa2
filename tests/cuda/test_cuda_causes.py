"""find_divergence names the cause on CUDA: atomics in ``index_add_`` are a nondeterministic kernel.

The replays hash ``index_add_``'s inputs before it runs: equal in both (the
index and the values come from the seeded CUDA generator), while its output
differs, so the kernel is to blame and the fix is ``algorithms=True``.
"""

from __future__ import annotations

import pytest
import torch

from repro_ctx import find_divergence

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def scatter() -> None:
    index = torch.randint(0, 100, (1_000_000,), device="cuda")
    source = torch.randn(1_000_000, device="cuda")
    torch.zeros(100, device="cuda").index_add_(0, index, source)


def test_atomics_are_a_nondeterministic_kernel_with_the_algorithms_fix() -> None:
    report = find_divergence(scatter, algorithms=False)
    assert report.cause is not None, str(report)
    assert report.cause.kind == "nondeterministic_kernel", str(report)
    assert "from identical inputs" in report.cause.reason
    assert report.cause.fix.startswith("pass algorithms=True")
    assert find_divergence(scatter, algorithms=True).matched


def test_an_uncovered_cuda_generator_is_named() -> None:
    g = torch.Generator(device="cuda").manual_seed(1)

    def step() -> None:
        torch.randn(8, device="cuda", generator=g).sum()

    report = find_divergence(step)
    assert report.cause is not None, str(report)
    assert report.cause.kind == "uncovered_rng"
    assert "generators=[g]" in report.cause.fix
    assert find_divergence(step, generators=[g]).matched
