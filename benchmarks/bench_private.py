"""Each private torch accessor repro_ctx uses, against its public counterpart (docs/internals.md).

A scope reads every flag twice (capture, and the compare before restoring), so
the reads are the hot path. For each pair this prints the median per-call
time of both, measured in interleaved rounds of the same run, and the ratio
public / private: a private name is kept only where that ratio is above 1.

    python benchmarks/bench_private.py

The machine is noisy: quote the ratios, not the times.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import torch._inductor.config as inductor_config
from _timing import environment_note, per_call_medians

from repro_ctx.sources.inductor import fast_config_reader

C = torch._C
backends = torch.backends

# (what is read, private accessor, public counterpart)
PAIRS = [
    ("use_deterministic_algorithms", C._get_deterministic_algorithms,
     torch.are_deterministic_algorithms_enabled),
    ("fill_uninitialized_memory", getattr(C, "_get_deterministic_fill_uninitialized_memory", None),
     lambda: torch.utils.deterministic.fill_uninitialized_memory),
    ("cudnn.enabled", C._get_cudnn_enabled, lambda: backends.cudnn.enabled),
    ("cudnn.benchmark", C._get_cudnn_benchmark, lambda: backends.cudnn.benchmark),
    ("cudnn.deterministic", C._get_cudnn_deterministic, lambda: backends.cudnn.deterministic),
    ("cudnn.allow_tf32", C._get_cudnn_allow_tf32, lambda: backends.cudnn.allow_tf32),
    ("mkldnn.enabled", C._get_mkldnn_enabled, lambda: backends.mkldnn.enabled),
    ("matmul.allow_fp16_reduced_precision_reduction",
     C._get_cublas_allow_fp16_reduced_precision_reduction,
     lambda: backends.cuda.matmul.allow_fp16_reduced_precision_reduction),
    ("flash_sdp_enabled", C._get_flash_sdp_enabled, backends.cuda.flash_sdp_enabled),
    ("preferred_linalg_library", C._get_linalg_preferred_backend,
     backends.cuda.preferred_linalg_library),
    ("float32_matmul_precision", getattr(C, "_get_float32_matmul_precision", None),
     torch.get_float32_matmul_precision),
    ("inductor fallback_random", fast_config_reader(inductor_config, "fallback_random"),
     lambda: inductor_config.fallback_random),
]


def main() -> None:
    print(environment_note())
    print(f"torch {torch.__version__}; ratio = public / private (above 1: the private is faster)")
    width = max(len(name) for name, *_ in PAIRS)
    for name, private, public in PAIRS:
        if private is None:
            print(f"  {name:<{width}}  no private accessor in this torch")
            continue
        medians = per_call_medians({"private": private, "public": public},
                                   calls=5000, rounds=15)
        private_ns, public_ns = medians["private"] * 1e9, medians["public"] * 1e9
        print(f"  {name:<{width}}  private {private_ns:7.0f} ns  public {public_ns:7.0f} ns  "
              f"ratio {public_ns / private_ns:5.2f}")


if __name__ == "__main__":
    main()
