"""The environment a run had, as plain data: what can make two machines' results differ.

``environment_record()`` reads Python and its build, torch (version, git
hash, CUDA, cuDNN, HIP/XPU, CPU capability, BLAS and LAPACK, threads), NumPy
and its BLAS, the OS, libc and CPU, the GPUs, the variables that change
kernels or their order, every determinism flag, the hash seed, the
frameworks installed and the git commit of the working directory. It is
what ``repro-ctx doctor --json`` writes (under ``environment_record``) and
``record()`` embeds; ``environment_diff`` says which differences of two
records can change results.

``environment_summary()`` is the short form a state dict carries: the
fields that can change results and cost nothing to read again.

The parts that cannot change in a running process (versions, the build, the
CPU) are read once; threads, variables, flags and the hash seed every time.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import Any, Final

from ..sources.default_set import describe_sources

SCHEMA: Final = "repro-ctx environment"
SCHEMA_VERSION: Final = 1

# Variables read by torch, its BLAS and OpenMP runtimes, cuBLAS, cuDNN and
# NCCL that choose kernels, their vector width, their thread count or the
# order of their reductions.
VARIABLE_PREFIXES: Final = (
    "OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "GOTO_", "BLIS_", "VECLIB_", "DNNL_",
    "ONEDNN_", "ATEN_", "TORCH_", "PYTORCH_", "CUBLAS_", "CUBLASLT_", "CUDNN_", "NCCL_",
    "CUDA_", "NVIDIA_TF32_", "HIP_", "ROCBLAS_", "MIOPEN_", "HIPBLASLT_", "XLA_",
    "FLASH_ATTENTION_",
)
# Paths and caches under those prefixes: where files live, not what is computed.
_NOT_KERNELS: Final = frozenset({
    "CUDA_HOME", "CUDA_PATH", "CUDA_ROOT", "TORCH_HOME", "TORCH_EXTENSIONS_DIR",
    "TORCH_CUDA_ARCH_LIST", "TORCHINDUCTOR_CACHE_DIR", "TORCH_LOGS", "TORCH_SHOW_CPP_STACKTRACES",
    "PYTORCH_JIT_LOG_LEVEL", "CUDA_MODULE_LOADING", "CUDA_CACHE_PATH",
})
# Installed frameworks whose versions are recorded (torch and NumPy have their own entries).
FRAMEWORKS: Final = (
    "repro-ctx", "lightning", "pytorch-lightning", "transformers", "accelerate", "datasets",
    "diffusers", "timm", "torchvision", "torchaudio", "triton", "scipy", "jax", "jaxlib",
    "tensorflow", "mosaicml", "deepspeed", "xformers", "flash-attn", "threadpoolctl",
)
# The fields of a record that a state dict's summary carries.
SUMMARY_FIELDS: Final = (
    "python.version", "os.system", "cpu.model", "torch.version", "torch.git_version",
    "torch.cuda", "torch.hip", "torch.cpu_capability", "torch.blas", "torch.threads",
    "numpy.version", "numpy.blas",
)


def environment_record(*, read_gpus: bool = True, flags: bool = True) -> dict[str, Any]:
    """This process's environment as JSON-ready data (schema ``"repro-ctx environment"``, 1).

    Keys: ``schema``, ``schema_version``; ``python`` (version,
    implementation, build, compiler); ``torch`` (version, git_version, cuda,
    cudnn, hip, xpu, cpu_capability, blas, lapack, openmp, threads,
    interop_threads); ``numpy`` (version, blas, lapack); ``threadpools``
    (threadpoolctl's view of the loaded BLAS and OpenMP runtimes, ``None``
    without threadpoolctl); ``os`` (system, release, machine, libc); ``cpu``
    (model, count); ``gpus`` (``read``: how they were read, ``driver``,
    ``devices``: name and compute capability); ``variables`` (the set ones
    among ``VARIABLE_PREFIXES``); ``flags`` (every determinism flag now);
    ``hash_seed`` (``PYTHONHASHSEED``, ``fixed``); ``packages``
    (``FRAMEWORKS`` installed: version); ``git`` (``commit`` of the working
    directory, or ``None``).

    GPUs are read with ``nvidia-smi``, which leaves CUDA uninitialised, or
    from ``torch.cuda`` when CUDA is initialised already; otherwise only with
    ``read_gpus=True``, which then initialises CUDA and says so in ``read``.
    ``flags=False`` leaves ``flags`` empty, for a caller that records the
    flags a scope set apart (``record()``).
    """
    static = _static()
    import torch  # deferred: keeps torch out of `import repro_ctx`

    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "python": dict(static["python"]),
        "torch": {**static["torch"], "threads": torch.get_num_threads(),
                  "interop_threads": torch.get_num_interop_threads()},
        "numpy": dict(static["numpy"]),
        "threadpools": _threadpools(),
        "os": dict(static["os"]),
        "cpu": dict(static["cpu"]),
        "gpus": _gpus(torch, read_gpus),
        "variables": kernel_variables(os.environ),
        "flags": _flags() if flags else {},
        "hash_seed": {"PYTHONHASHSEED": startup_hash_seed(), "fixed": hash_seed_fixed()},
        "packages": dict(_packages()),
        "git": _git(),
    }


def environment_summary() -> dict[str, Any]:
    """The short record a state dict carries: ``SUMMARY_FIELDS``, as ``{field: value}``.

    Reads nothing that costs more than a function call after the first time.
    """
    import torch  # deferred: keeps torch out of `import repro_ctx`

    return {**_static_summary(), "torch.threads": torch.get_num_threads()}


def startup_hash_seed() -> str | None:
    """``PYTHONHASHSEED`` as this interpreter started with it, which is what it hashes by.

    Read from ``/proc/self/environ`` where there is one: ``os.environ`` may
    have changed since (a scope sets the variable for the programs it
    starts). Elsewhere, ``os.environ``'s value.
    """
    try:
        with open("/proc/self/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:  # not Linux
        return os.environ.get("PYTHONHASHSEED")
    for entry in entries:
        name, _, value = entry.partition(b"=")
        if name == b"PYTHONHASHSEED":
            return value.decode(errors="replace")
    return None


def hash_seed_fixed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``hash()`` of a str repeats across runs of this interpreter.

    It does when hash randomisation is off, or ``PYTHONHASHSEED`` holds an
    integer (``sys.flags.hash_randomization`` is 1 for any non-zero seed,
    which still gives the same hashes every run); not when it is unset or
    ``random``. ``environ`` defaults to the one this interpreter started with
    (``startup_hash_seed``).
    """
    if not sys.flags.hash_randomization:
        return True
    value = startup_hash_seed() if environ is None else environ.get("PYTHONHASHSEED")
    value = (value or "").strip()
    return value.isdigit() and int(value) <= 4294967295


def kernel_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The set variables that change kernels or their order, sorted by name."""
    return {
        name: environ[name] for name in sorted(environ)
        if name.startswith(VARIABLE_PREFIXES) and name not in _NOT_KERNELS
    }


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"torch.version": ..., "variables.OMP_NUM_THREADS": ...}``.

    Lists (GPU devices, thread pools) stay whole values: they are compared as one.
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------------------
# the parts read once
# ---------------------------------------------------------------------------


@functools.cache
def _static_summary() -> dict[str, Any]:
    flat = flatten(_static())
    # plain types only: a state dict must load with torch.load(weights_only=True)
    return {name: _plain(flat.get(name)) for name in SUMMARY_FIELDS}


def _plain(value: object) -> object:
    return value if value is None or type(value) in (bool, int, float) else str(value)


@functools.cache
def _static() -> dict[str, Any]:
    import numpy as np  # deferred: keeps torch and NumPy out of `import repro_ctx`
    import torch

    blas, lapack, openmp = torch_backends(torch.__config__.show())
    cudnn: Any = torch.backends.cudnn  # untyped in torch's stubs
    cpu = getattr(torch.backends, "cpu", None)
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": sys.implementation.name,
            "build": " ".join(platform.python_build()),
            "compiler": platform.python_compiler(),
        },
        "torch": {
            "version": str(torch.__version__),  # a str subclass torch.load refuses
            "git_version": getattr(torch.version, "git_version", None),
            "cuda": torch.version.cuda,
            "cudnn": cudnn.version() if cudnn.is_available() else None,
            "hip": getattr(torch.version, "hip", None),
            "xpu": getattr(torch.version, "xpu", None),
            "cpu_capability": cpu.get_cpu_capability() if cpu is not None else None,
            "blas": blas,
            "lapack": lapack,
            "openmp": openmp,
        },
        "numpy": {"version": np.__version__, **_numpy_blas(np)},
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "libc": " ".join(part for part in platform.libc_ver() if part) or None,
        },
        "cpu": {"model": _cpu_model(), "count": os.cpu_count()},
    }


def torch_backends(config: str) -> tuple[str | None, str | None, str | None]:
    """BLAS, LAPACK and OpenMP from ``torch.__config__.show()``'s text."""
    settings: dict[str, str] = {}
    openmp = None
    for line in config.splitlines():
        line = line.strip().lstrip("- ")
        if line.startswith("Build settings:"):
            for item in line.removeprefix("Build settings:").split(","):
                key, _, value = item.strip().partition("=")
                settings[key] = value
        elif line.startswith("OpenMP"):
            openmp = line
    return settings.get("BLAS_INFO") or None, settings.get("LAPACK_INFO") or None, openmp


def _numpy_blas(np: Any) -> dict[str, str | None]:
    """NumPy's BLAS and LAPACK, with versions (``show_config(mode="dicts")``, NumPy >= 1.25)."""
    try:
        config = np.show_config(mode="dicts")
    except (TypeError, ValueError, ImportError):  # older NumPy: no dict form
        return {"blas": None, "lapack": None}
    found = config.get("Build Dependencies", {}) if isinstance(config, dict) else {}
    out: dict[str, str | None] = {}
    for name in ("blas", "lapack"):
        entry = found.get(name) or {}
        parts = [str(entry[key]) for key in ("name", "version") if entry.get(key)]
        out[name] = " ".join(parts) or None
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Processor", "cpu model"):
                    return value.strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


@functools.cache
def _packages() -> dict[str, str]:
    from importlib import metadata

    found: dict[str, str] = {}
    for name in FRAMEWORKS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return dict(found)


# ---------------------------------------------------------------------------
# the parts read every time
# ---------------------------------------------------------------------------


def _threadpools() -> list[dict[str, Any]] | None:
    """threadpoolctl's view (the BLAS core type OpenBLAS chose, threads), where installed."""
    try:
        import threadpoolctl  # type: ignore[import-not-found,unused-ignore]  # optional
    except ImportError:
        return None
    keys = ("user_api", "internal_api", "version", "num_threads", "architecture")
    return [{key: pool.get(key) for key in keys}
            for pool in threadpoolctl.threadpool_info()]


def _gpus(torch: Any, read_gpus: bool) -> dict[str, Any]:
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return {"read": "no CUDA or ROCm in this torch build", "driver": None, "devices": []}
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        found = _nvidia_smi(smi)
        if found is not None:
            return found
    initialised = bool(torch.cuda.is_initialized())
    if not initialised and not read_gpus:
        return {"read": "not read: nvidia-smi was not found, and torch.cuda would initialise "
                        "CUDA", "driver": None, "devices": []}
    if not torch.cuda.is_available():
        return {"read": "torch.cuda: no device available", "driver": None, "devices": []}
    devices = []
    for index in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(index)
        devices.append({"name": torch.cuda.get_device_name(index),
                        "capability": f"{major}.{minor}"})
    how = "torch.cuda (CUDA was initialised already)" if initialised else (
        "torch.cuda, which initialised CUDA (nvidia-smi was not found)")
    return {"read": f"{how}; torch has no public call for the driver version",
            "driver": None, "devices": devices}


def _nvidia_smi(smi: str) -> dict[str, Any] | None:
    try:
        completed = subprocess.run(
            [smi, "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    devices, drivers = [], set()
    for line in completed.stdout.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3:
            devices.append({"name": parts[0], "capability": parts[1]})
            drivers.add(parts[2])
    return {"read": "nvidia-smi (CUDA not initialised)",
            "driver": ", ".join(sorted(drivers)) or None, "devices": devices}


def _flags() -> dict[str, Any]:
    """Every setting the flag sources describe, by name; variables are in ``variables``."""
    flags: dict[str, Any] = {}
    for described in describe_sources().values():
        if isinstance(described, Mapping):
            flags.update((str(key), value) for key, value in described.items()
                         if not str(key).isupper())
    return flags


def _git() -> dict[str, Any] | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        completed = subprocess.run(
            [git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = completed.stdout.strip()
    if completed.returncode != 0 or not commit:
        return None  # not a git working directory
    return {"commit": commit}
