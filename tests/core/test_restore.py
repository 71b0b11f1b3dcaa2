"""Every source and flag comes back exactly after a scope, whatever happens inside."""

from __future__ import annotations

import dataclasses
import os
import random

import numpy as np
import pytest
import torch

from repro_ctx import deterministic
from repro_ctx.sources.default_set import default_sources
from repro_ctx.sources.flags import Flag, FlagsSource, build_flags_source
from tests.global_state import full_state, scramble

# Every flag this torch (2.13) exposes that changes which algorithm runs or at
# what precision. If a torch upgrade adds or drops one, this list must change,
# and with it the facts the package relies on.
EXPECTED_FLAGS = {
    "torch.use_deterministic_algorithms (mode, warn_only)",
    "torch._inductor.config.deterministic",
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


def test_flag_table_covers_every_flag_this_torch_exposes() -> None:
    names = {flag.name for flag in build_flags_source(torch).flags}
    assert names == EXPECTED_FLAGS


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only source list")
def test_sources_on_a_cpu_machine() -> None:
    assert [source.name for source in default_sources()] == EXPECTED_SOURCES_CPU


def _change_every_flag_inside() -> None:
    torch.use_deterministic_algorithms(False)
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.enabled = not torch.backends.cudnn.enabled
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark_limit = 3
    torch.backends.mkldnn.enabled = not torch.backends.mkldnn.enabled
    torch.backends.mkldnn.deterministic = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = (False, False)
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = (False, False)
    torch.backends.cuda.matmul.allow_fp16_accumulation = True
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_math_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True)
    if torch.cuda.is_available():  # a CPU build refuses CUDA library choices
        torch.backends.cuda.preferred_linalg_library("cusolver")
        torch.backends.cuda.preferred_blas_library("cublaslt")
    torch.set_num_threads(1)
    torch.backends.opt_einsum.enabled = not torch.backends.opt_einsum.enabled
    torch.backends.mha.set_fastpath_enabled(False)
    torch.set_float32_matmul_precision("medium")
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.mkldnn.conv.fp32_precision = "tf32"
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
        assert torch.backends.mkldnn.deterministic
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
    torch.backends.mkldnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    with scope:
        pass
    assert writes == []
