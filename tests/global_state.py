"""Public-API views of every piece of global state a scope covers, for exact comparisons.

Tests compare these, never repro_ctx's own snapshots, so a bug in a fast path
cannot hide itself.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from repro_ctx.sources.flags import build_flags_source
from repro_ctx.sources.inductor import release
from repro_ctx.sources.tf32 import TF32Source

HAS_MKLDNN_DETERMINISTIC = hasattr(torch._C, "_get_mkldnn_deterministic")
"""torch >= 2.9. Where it is missing, assigning the attribute would only add a plain
module attribute (which the flag table would then pick up), so tests leave it alone."""


HAS_FP32_PRECISION = hasattr(torch.backends, "fp32_precision")
"""The TF32 node API (torch >= 2.9); before it the TF32 state has no nodes."""
INDUCTOR_FLAG = "torch._inductor.config." + (
    "deterministic" if release(torch) >= (2, 10) else "fallback_random")
"""The lazily read inductor entry this torch has: ``deterministic`` from 2.10
(test_facts); before it ``fallback_random``, which every supported torch has."""
INDUCTOR_ENTRY = INDUCTOR_FLAG.rpartition(".")[2]
"""That entry's name in the config (``deterministic`` or ``fallback_random``)."""


def rng_state() -> dict[str, Any]:
    legacy = np.random.get_state(legacy=False)
    return {
        "random": random.getstate(),
        "numpy": (
            legacy["state"]["key"].tobytes(),
            legacy["state"]["pos"],
            legacy["has_gauss"],
            legacy["gauss"],
        ),
        "torch": torch.get_rng_state().numpy().tobytes(),
    }


def flag_state() -> dict[str, Any]:
    flags = build_flags_source(torch)
    out: dict[str, Any] = {flag.name: flag.get() for flag in flags.flags}
    tf32 = TF32Source(torch).capture()
    out["tf32"] = (tf32.matmul_precision, tf32.cudnn_allow_tf32, tf32.nodes)
    return out


ENVIRONMENT = (
    "CUBLAS_WORKSPACE_CONFIG",
    "PYTHONHASHSEED",
    "PL_GLOBAL_SEED",
    "PL_SEED_WORKERS",
    "CUDA_LAUNCH_BLOCKING",
    "FLASH_ATTENTION_DETERMINISTIC",
    "ASCEND_LAUNCH_BLOCKING",
    "HCCL_DETERMINISTIC",
    "NCCL_ALGO",
    "NCCL_PROTO",
)
"""Every variable a scope covers, named here, not taken from repro_ctx."""


def env_state() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in ENVIRONMENT}


def full_state() -> dict[str, Any]:
    return {**rng_state(), **flag_state(), **env_state()}


def draws() -> tuple[float, float, float]:
    """One draw from each global RNG (advances them)."""
    return (random.random(), float(np.random.rand()), float(torch.rand(1)))


def scramble(rng: random.Random) -> None:
    """Move every RNG and flip every flag a scope covers to a value it would not pick."""
    for _ in range(rng.randrange(1, 4)):
        random.random()
    np.random.randn(rng.choice([1, 3]))  # odd: leaves a cached Gaussian
    torch.rand(rng.randrange(1, 5))
    torch.use_deterministic_algorithms(rng.random() < 0.5, warn_only=rng.random() < 0.5)
    torch.utils.deterministic.fill_uninitialized_memory = rng.random() < 0.5
    torch.backends.cudnn.benchmark = rng.random() < 0.5
    torch.backends.cudnn.deterministic = rng.random() < 0.5
    torch.backends.cudnn.enabled = rng.random() < 0.5
    mkldnn_deterministic = rng.random() < 0.5
    if HAS_MKLDNN_DETERMINISTIC:
        torch.backends.mkldnn.deterministic = mkldnn_deterministic
    torch.backends.mkldnn.enabled = rng.random() < 0.5
    torch.backends.cuda.enable_flash_sdp(rng.random() < 0.5)
    torch.backends.cuda.enable_math_sdp(rng.random() < 0.5)
    torch.backends.cuda.enable_mem_efficient_sdp(rng.random() < 0.5)
    torch.backends.cuda.enable_cudnn_sdp(rng.random() < 0.5)
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = rng.random() < 0.5
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = rng.random() < 0.5
    torch.set_float32_matmul_precision(rng.choice(["highest", "high", "medium"]))
    torch.backends.cudnn.allow_tf32 = rng.random() < 0.5
    if rng.random() < 0.5:
        os.environ["PYTHONHASHSEED"] = str(rng.randrange(1, 100))
    else:
        os.environ.pop("PYTHONHASHSEED", None)
    if rng.random() < 0.5:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    else:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    for name in ENVIRONMENT[2:]:  # what Lightning's and transformers' helpers set
        if rng.random() < 0.5:
            os.environ[name] = str(rng.randrange(2))
        else:
            os.environ.pop(name, None)
