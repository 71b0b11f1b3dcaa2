"""Every source and flag comes back exactly after a scope, whatever happens inside."""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable

import numpy as np
import pytest
import torch

from repro_ctx import deterministic
from repro_ctx.sources.default_set import default_sources
from repro_ctx.sources.flags import Flag, FlagsSource, build_flags_source
from repro_ctx.sources.inductor import release as _release
from tests.global_state import HAS_MKLDNN_DETERMINISTIC, full_state, scramble

# Every flag torch 2.13 exposes that changes which algorithm runs or at what
# precision. If a torch upgrade adds or drops one, this list must change, and
# with it the facts the package relies on.
EXPECTED_FLAGS = {
    "torch.use_deterministic_algorithms (mode, warn_only)",
    "torch._inductor.config.deterministic",
    "torch._inductor.config.fallback_random",
    "torch.utils.deterministic.fill_uninitialized_memory",
    "torch.backends.cudnn.enabled",
    "torch.backends.cudnn.benchmark",
    "torch.backends.cudnn.deterministic",
    "torch.backends.cudnn.benchmark_limit",
    "torch.backends.cudnn.depthwise_kernel",
    "torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction",
    "torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction",
    "torch.backends.cuda.matmul.allow_fp16_accumulation",
    "torch.backends.cuda.flash_sdp_enabled",
    "torch.backends.cuda.mem_efficient_sdp_enabled",
    "torch.backends.cuda.math_sdp_enabled",
    "torch.backends.cuda.cudnn_sdp_enabled",
    "torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed",
    "torch.backends.mkldnn.enabled",
    "torch.backends.mkldnn.deterministic",
    "torch.backends.cuda.preferred_linalg_library",
    "torch.backends.cuda.preferred_blas_library",
    "torch.get_num_threads",
    "torch.backends.opt_einsum.enabled",
    "torch.backends.opt_einsum.strategy",
    "torch.backends.mha.fastpath_enabled",
}

EXPECTED_SOURCES_CPU = [
    "environment",
    "torch flags",
    "tf32",
    "random",
    "numpy.random (global)",
    "torch (cpu)",
    "registered generators",
]


# The releases whose tables were read (torch 2.1.2, 2.4.1, 2.9.1, 2.11.0 and 2.13.0,
# CPU and CUDA builds alike), and for each flag older ones lack, the oldest of
# them that has it: each `compat` combination checks its side of every line.
TABLES_READ = [(2, 1), (2, 4), (2, 9), (2, 11), (2, 13)]
ADDED = {
    "torch.utils.deterministic.fill_uninitialized_memory": (2, 4),
    "torch.backends.cuda.cudnn_sdp_enabled": (2, 4),
    "torch.backends.cuda.preferred_blas_library": (2, 4),
    "torch.backends.mha.fastpath_enabled": (2, 4),
    "torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed": (2, 9),
    "torch.backends.cuda.matmul.allow_fp16_accumulation": (2, 9),
    "torch.backends.mkldnn.deterministic": (2, 9),
    # before 2.9 `import torch` does not import torch.backends.opt_einsum, and
    # the table reads only what torch.backends has
    "torch.backends.opt_einsum.enabled": (2, 9),
    "torch.backends.opt_einsum.strategy": (2, 9),
    "torch._inductor.config.deterministic": (2, 10),  # first in 2.10 (test_facts)
    "torch.backends.cudnn.depthwise_kernel": (2, 13),
}


def expected_flags(here: tuple[int, int]) -> tuple[set[str], set[str]]:
    """(at least, at most) the flags of release ``here``: one set on a release read."""
    older = max(release for release in TABLES_READ if release <= here)
    newer = min((release for release in TABLES_READ if release >= here), default=here)
    at_least = {name for name in EXPECTED_FLAGS if ADDED.get(name, (0, 0)) <= older}
    at_most = {name for name in EXPECTED_FLAGS if ADDED.get(name, (0, 0)) <= newer}
    return at_least, at_most


def test_flag_table_covers_every_flag_this_torch_exposes() -> None:
    from repro_ctx.sources.inductor import release

    names = {flag.name for flag in build_flags_source(torch).flags}
    at_least, at_most = expected_flags(release(torch))
    assert at_least <= names <= at_most
    assert expected_flags((2, 13)) == (EXPECTED_FLAGS, EXPECTED_FLAGS)
    assert len(expected_flags((2, 1))[0]) == 14


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only source list")
def test_sources_on_a_cpu_machine() -> None:
    assert [source.name for source in default_sources()] == EXPECTED_SOURCES_CPU


_FLAG_CHANGES: list[Callable[[], object]] = [
    lambda: torch.use_deterministic_algorithms(False),
    lambda: setattr(torch.utils.deterministic, "fill_uninitialized_memory", False),
    lambda: setattr(torch.backends.cudnn, "enabled", not torch.backends.cudnn.enabled),
    lambda: setattr(torch.backends.cudnn, "benchmark", True),
    lambda: setattr(torch.backends.cudnn, "deterministic", False),
    lambda: setattr(torch.backends.cudnn, "benchmark_limit", 3),
    lambda: setattr(torch.backends.mkldnn, "enabled", not torch.backends.mkldnn.enabled),
    lambda: setattr(torch.backends.mkldnn, "deterministic", False)
    if HAS_MKLDNN_DETERMINISTIC else None,
    # a (allowed, split_k allowed) pair from 2.9; before it, one bool
    lambda: setattr(torch.backends.cuda.matmul, "allow_fp16_reduced_precision_reduction",
                    _reduction_value(False)),
    lambda: setattr(torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction",
                    _reduction_value(False)),
    lambda: setattr(torch.backends.cuda.matmul, "allow_fp16_accumulation", True),
    lambda: torch.backends.cuda.enable_flash_sdp(False),
    lambda: torch.backends.cuda.enable_math_sdp(False),
    lambda: torch.backends.cuda.enable_mem_efficient_sdp(False),
    lambda: torch.backends.cuda.enable_cudnn_sdp(False),
    lambda: torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True),
    lambda: (torch.backends.cuda.preferred_linalg_library("cusolver"),
             torch.backends.cuda.preferred_blas_library("cublaslt"))
    if torch.cuda.is_available() else None,  # a CPU build refuses CUDA library choices
    lambda: torch.set_num_threads(1),
    lambda: setattr(torch.backends.opt_einsum, "enabled", not torch.backends.opt_einsum.enabled),
    lambda: torch.backends.mha.set_fastpath_enabled(False),
    lambda: torch.set_float32_matmul_precision("medium"),
    lambda: setattr(torch.backends.cudnn, "allow_tf32", True),
    lambda: setattr(torch.backends.mkldnn.conv, "fp32_precision", "tf32"),
]


def _reduction_value(allowed: bool) -> object:
    """A reduced-precision reduction setting in the form this torch reads it."""
    now = torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction
    return (allowed, allowed) if isinstance(now, tuple) else allowed


def _change_every_flag_inside() -> None:
    """Each flag this torch has, changed; before 2.13 a call whose API that torch lacks
    (AttributeError, or a TypeError from the older API) is passed over."""
    for change in _FLAG_CHANGES:
        try:
            change()
        except (AttributeError, TypeError):
            if _release(torch) >= (2, 13):
                raise
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    os.environ["PYTHONHASHSEED"] = "77"
    random.seed(99)
    np.random.seed(99)
    np.random.randn(3)
    torch.manual_seed(99)


@pytest.mark.parametrize("seed", [0, 7, None, 2**64 - 1])
def test_everything_comes_back_after_a_scope_that_changes_everything(seed: int | None) -> None:
    scramble(random.Random(1))
    before = full_state()
    with deterministic(seed, fill_uninitialized_memory=True):
        _change_every_flag_inside()
        assert full_state() != before
    assert full_state() == before


def test_everything_comes_back_when_the_block_raises() -> None:
    scramble(random.Random(2))
    before = full_state()

    class Boom(Exception):
        pass

    def block() -> None:
        with deterministic(3):
            _change_every_flag_inside()
            raise Boom("inside")

    with pytest.raises(Boom) as info:
        block()
    assert str(info.value) == "inside"
    assert full_state() == before


def test_keyboard_interrupt_restores_and_propagates_unchanged() -> None:
    before = full_state()
    interrupt = KeyboardInterrupt()
    def block() -> None:
        with deterministic(3):
            np.random.rand(5)
            raise interrupt

    with pytest.raises(KeyboardInterrupt) as info:
        block()
    assert info.value is interrupt
    assert full_state() == before


def test_unset_environment_variables_come_back_unset() -> None:
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    os.environ.pop("PYTHONHASHSEED", None)
    with deterministic(5):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert os.environ["PYTHONHASHSEED"] == "6"
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert "PYTHONHASHSEED" not in os.environ


def test_a_user_cublas_setting_is_kept() -> None:
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    with deterministic(5):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_no_determinism_no_cublas_variable() -> None:
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    with deterministic(5, algorithms=False):
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_scope_configures_the_flags_it_promises() -> None:
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    with deterministic(0):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        assert not HAS_MKLDNN_DETERMINISTIC or torch.backends.mkldnn.deterministic
        assert torch.get_float32_matmul_precision() == "highest"
        assert not torch.backends.cudnn.allow_tf32
    with deterministic(0, algorithms="warn", benchmark=True, tf32=True):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.benchmark
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.backends.cudnn.allow_tf32
    with deterministic(0, algorithms=False, fill_uninitialized_memory=False):
        assert not torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.deterministic
        assert not torch.utils.deterministic.fill_uninitialized_memory


def test_none_leaves_every_flag_alone() -> None:
    torch.backends.cudnn.benchmark = True
    torch.use_deterministic_algorithms(False)
    torch.set_float32_matmul_precision("medium")
    before = full_state()
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        assert full_state() == before


def test_restoring_unchanged_flags_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    scope = deterministic(0)
    with scope:
        pass  # builds the sources
    writes: list[str] = []

    def spy(flag: Flag) -> Flag:
        def set_(value: object) -> None:
            writes.append(flag.name)
            flag.set(value)

        return dataclasses.replace(flag, set=set_)

    for source in scope.sources():
        if isinstance(source, FlagsSource):
            monkeypatch.setattr(source, "flags", tuple(spy(flag) for flag in source.flags))
    # every flag already equals what the scope wants: neither entry nor exit writes
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    if HAS_MKLDNN_DETERMINISTIC:
        torch.backends.mkldnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    with scope:
        pass
    assert writes == []
