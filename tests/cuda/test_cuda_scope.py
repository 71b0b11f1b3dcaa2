"""The scope on real CUDA devices: seeding, restoring, lazy initialisation, forks, no syncs."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from repro_ctx import deterministic
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


def _fresh(script: str) -> str:
    """Run ``script`` in a new interpreter (CUDA not yet initialised); return stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, cwd=ROOT, env=None, timeout=HANG_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_entering_and_leaving_never_initialises_cuda() -> None:
    out = _fresh("""
        import torch
        from repro_ctx import deterministic
        with deterministic(0):
            with deterministic(1, generators=[torch.Generator()]):
                pass
        print(torch.cuda.is_initialized())
    """)
    assert out == "False"


def test_cuda_first_initialised_inside_a_scope_gets_its_seed_and_nothing_stays_queued() -> None:
    out = _fresh("""
        import torch
        from repro_ctx import deterministic
        torch.cuda.manual_seed_all(11)          # pending before the scope
        with deterministic(5):
            inside = torch.rand(4, device="cuda").tolist()
        after = torch.rand(4, device="cuda").tolist()
        torch.cuda.manual_seed_all(5)
        expected_inside = torch.rand(4, device="cuda").tolist()
        torch.cuda.manual_seed_all(11)
        expected_after = torch.rand(4, device="cuda").tolist()
        print(inside == expected_inside, after == expected_after)
    """)
    assert out == "True True"


def test_seeding_queued_inside_an_uninitialised_scope_is_dropped() -> None:
    out = _fresh("""
        import torch
        from repro_ctx import deterministic
        with deterministic(5):
            torch.cuda.manual_seed_all(99)
        print(torch.cuda.is_initialized(), end=" ")
        after = torch.rand(4, device="cuda")
        torch.cuda.manual_seed_all(99)
        print(not torch.equal(after, torch.rand(4, device="cuda")))
    """)
    assert out == "False True"


def test_recipe_and_exact_restore_on_every_initialised_device() -> None:
    torch.cuda.init()
    for device in range(torch.cuda.device_count()):
        torch.rand(3, device=f"cuda:{device}")
    before = torch.cuda.get_rng_state_all()
    with deterministic(7):
        inside = [torch.rand(5, device=f"cuda:{d}") for d in range(torch.cuda.device_count())]
    after = torch.cuda.get_rng_state_all()
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    torch.manual_seed(7)
    recipe = [torch.rand(5, device=f"cuda:{d}") for d in range(torch.cuda.device_count())]
    assert all(torch.equal(a, b) for a, b in zip(inside, recipe))


def _child_enters_a_scope(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        with deterministic(3):
            value = float(torch.rand(1))
        queue.put(("ok", torch.cuda._is_in_bad_fork(), value))
    except Exception as exc:
        queue.put(("error", repr(exc), 0.0))


def test_a_forked_child_of_a_cuda_parent_never_touches_cuda() -> None:
    """Lightning #16262: isolate_rng breaks in forked DataLoader workers; a scope must not."""
    torch.cuda.init()
    torch.rand(1, device="cuda")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child_enters_a_scope, args=(queue,))
    process.start()
    status, in_bad_fork, _value = queue.get(timeout=HANG_TIMEOUT)
    process.join(timeout=HANG_TIMEOUT)
    assert (status, in_bad_fork) == ("ok", True)


def test_no_device_synchronisation_on_entry_or_exit() -> None:
    """A long kernel in flight is still running after a full enter and exit."""
    torch.cuda.init()
    a = torch.randn(8192, 8192, device="cuda")
    torch.cuda.synchronize()
    scope = deterministic(0)
    with scope:  # build the sources before timing-sensitive work
        pass
    for _ in range(40):  # several hundred milliseconds of queued matmuls
        a = a @ a
        a = a / a.norm()
    done = torch.cuda.Event()
    done.record()
    with scope:
        torch.rand(1, device="cuda")  # inside, CUDA RNG use only enqueues work
    assert not done.query(), "entering or leaving a scope waited for the device"
    torch.cuda.synchronize()


def _index_add(deterministic_algorithms: bool) -> bytes:
    torch.manual_seed(0)
    index = torch.randint(0, 100, (1_000_000,), device="cuda")
    source = torch.randn(1_000_000, 64, device="cuda")
    with deterministic(0, algorithms=deterministic_algorithms):
        out = torch.zeros(100, 64, device="cuda").index_add_(0, index, source)
    return out.cpu().numpy().tobytes()


def test_index_add_is_nondeterministic_by_default_and_deterministic_in_a_scope() -> None:
    """FACTS: duplicate-heavy index_add_ differs bitwise across runs unless deterministic."""
    assert len({_index_add(False) for _ in range(5)}) > 1
    assert len({_index_add(True) for _ in range(5)}) == 1


class GlobalMean(torch.nn.Module):
    """Mean over space: unlike adaptive_avg_pool2d's, its backward is deterministic on CUDA."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def _cnn_step_weights() -> bytes:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3),
        GlobalMean(), torch.nn.Linear(16, 10),
    ).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        x = torch.randn(64, 3, 64, 64, device="cuda")
        y = torch.randint(0, 10, (64,), device="cuda")
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())


def test_cnn_training_is_bitwise_reproducible_in_scopes_and_leaves_flags_alone() -> None:
    torch.backends.cudnn.benchmark = True
    try:
        with deterministic(0):
            first = _cnn_step_weights()
            assert not torch.backends.cudnn.benchmark
        with deterministic(0):
            second = _cnn_step_weights()
        assert first == second
        assert torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = False


def test_cublas_workspace_is_set_before_the_first_cublas_use() -> None:
    out = _fresh("""
        import os, torch
        from repro_ctx import deterministic
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        with deterministic(0):
            a = torch.randn(64, 64, device="cuda")
            (a @ a).sum().item()
            print(os.environ["CUBLAS_WORKSPACE_CONFIG"], end=" ")
        print("CUBLAS_WORKSPACE_CONFIG" in os.environ)
    """)
    assert out == ":4096:8 False"


@pytest.mark.parametrize("tf32", [True, False])
def test_tf32_option_reaches_cuda_matmul(tf32: bool) -> None:
    a = torch.randn(512, 512, device="cuda")
    with deterministic(0, tf32=tf32):
        assert torch.backends.cuda.matmul.allow_tf32 is tf32
        assert torch.backends.cudnn.allow_tf32 is tf32
        result = a @ a
    exact = (a.double() @ a.double()).float()
    if not tf32:
        torch.testing.assert_close(result, exact, rtol=1e-4, atol=1e-3)
