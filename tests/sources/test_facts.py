"""The torch and NumPy facts repro_ctx is built on (shared/FACTS.md), pinned for this version.

If one of these starts failing after an upgrade, the matching source needs a look.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import weakref

import numpy as np
import pytest
import torch

from tests.waits import HANG_TIMEOUT


@pytest.mark.parametrize(
    "make",
    [np.random.default_rng, np.random.RandomState, np.random.PCG64, np.random.MT19937],
)
def test_numpy_generators_cannot_be_weakly_referenced(make: object) -> None:
    with pytest.raises(TypeError):
        weakref.ref(make(0))  # type: ignore[operator]


def test_torch_generators_can_be_weakly_referenced_from_torch_2_13() -> None:
    """Before 2.13 the registry holds a torch.Generator strongly, as NumPy's generators."""
    from repro_ctx.sources.inductor import release

    assert weakref.ref(random.Random())() is not None
    if release(torch) >= (2, 13):
        assert weakref.ref(torch.Generator())() is not None
    else:
        with pytest.raises(TypeError):
            weakref.ref(torch.Generator())


def test_inductor_config_entries_by_release() -> None:
    """``deterministic`` first exists in torch 2.10, ``fallback_random`` in every release
    supported; overrides live in ContextVars from torch 2.12 on."""
    from repro_ctx.sources.inductor import ENTRIES, release

    code = (
        "import contextvars, torch._inductor.config as c\n"
        "print(hasattr(c, 'deterministic'), hasattr(c, 'fallback_random'), c.fallback_random)\n"
        "c.fallback_random = True\n"
        "print(contextvars.Context().run(getattr, c, 'fallback_random'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=HANG_TIMEOUT)
    here = release(torch)
    assert ENTRIES == {"deterministic": (2, 10), "fallback_random": (2, 0)}
    assert out.stdout.split() == [str(here >= (2, 10)), "True", "False", str(here < (2, 12))]


def test_numpy_legacy_seed_range_and_cached_gaussian() -> None:
    with pytest.raises(ValueError, match="between 0 and 2"):
        np.random.seed(2**32)
    np.random.seed(0)
    np.random.randn(1)
    state = np.random.get_state(legacy=False)
    assert state["has_gauss"] == 1
    np.random.seed(0)
    assert np.random.get_state(legacy=False)["has_gauss"] == 0


def test_numpy_seed_does_not_touch_generators() -> None:
    generator = np.random.default_rng(1)
    state = generator.bit_generator.state
    np.random.seed(5)
    assert generator.bit_generator.state == state


def test_default_generator_seed_equals_manual_seed_on_cpu() -> None:
    torch.manual_seed(9)
    a = torch.rand(4)
    torch.default_generator.manual_seed(9)
    assert torch.equal(torch.rand(4), a)


def test_fill_uninitialized_memory_defaults_to_true() -> None:
    code = "import torch; print(torch.utils.deterministic.fill_uninitialized_memory)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=HANG_TIMEOUT)
    assert out.stdout.strip() == "True"


def test_cudnn_flags_context_manager_disables_cudnn_by_default() -> None:
    """pytorch#77467: flags(deterministic=True) silently sets enabled=False."""
    with torch.backends.cudnn.flags(deterministic=True):
        assert torch.backends.cudnn.enabled is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA can never initialise here")
def test_manual_seed_and_lazy_cuda_calls_do_not_initialise_cuda() -> None:
    code = (
        "import torch\n"
        "torch.manual_seed(0)\n"
        "torch.cuda.manual_seed_all(0)\n"
        "with torch.random.fork_rng(devices=[]):\n"
        "    pass\n"
        "print(torch.cuda.is_initialized())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=HANG_TIMEOUT)
    assert out.stdout.strip() == "False"


def test_lazy_cuda_queue_shapes_repro_ctx_relies_on() -> None:
    """The private pieces of torch.cuda the lazy CUDA source uses, still there."""
    assert isinstance(torch.cuda._queued_calls, list)
    tracker = torch.cuda._lazy_seed_tracker
    assert isinstance(tracker, torch._utils._LazySeedTracker)
    assert callable(tracker.get_calls)
    assert callable(torch.cuda._is_in_bad_fork)
    assert torch.cuda.manual_seed_all.__module__ == "torch.cuda.random"


def test_pythonhashseed_only_affects_new_interpreters() -> None:
    code = "import sys; print(sys.flags.hash_randomization, hash('repro'))"
    env_a = {"PYTHONHASHSEED": "1", "PATH": ""}
    a = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_a,
                       timeout=HANG_TIMEOUT)
    b = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_a,
                       timeout=HANG_TIMEOUT)
    assert a.stdout == b.stdout
    assert a.stdout.split()[0] == "1"


def test_weights_only_load_rejects_numpy_arrays(tmp_path: object) -> None:
    """Why repro_ctx's state_dict holds only plain data: torch.load's default."""
    import pathlib

    from repro_ctx.sources.inductor import release

    path = pathlib.Path(str(tmp_path)) / "state.pt"
    torch.save({"key": np.zeros(3)}, path)
    with pytest.raises(Exception, match=r"[Ww]eights only"):
        torch.load(path, weights_only=True)
    if release(torch) >= (2, 6):  # the default from torch 2.6
        with pytest.raises(Exception, match=r"[Ww]eights only"):
            torch.load(path)
    else:  # before it, torch.load unpickles anything by default
        assert torch.load(path)["key"].tolist() == [0.0, 0.0, 0.0]


def test_use_deterministic_algorithms_imports_and_sets_inductors_config() -> None:
    """The torch call imports inductor's config (first time) and writes it too.

    Also pinned: the config's import-time value is False (without
    TORCHINDUCTOR_DETERMINISTIC), and a read in an empty ``contextvars``
    context still gives that value after an override: config overrides live in
    ContextVars, which is how repro_ctx finds the value to restore for a
    config first imported inside a scope. Dropped from ``sys.modules`` (as an
    in-process pytester run does), the config is imported again as a new
    module: the flag's readers must not mistake one for the other.
    """
    code = (
        "import contextvars, sys, torch\n"
        "assert 'torch._inductor.config' not in sys.modules\n"
        "torch.use_deterministic_algorithms(False)\n"
        "c = sys.modules['torch._inductor.config']\n"
        "torch.use_deterministic_algorithms(True)\n"
        "print(c.deterministic, contextvars.Context().run(getattr, c, 'deterministic'))\n"
        "del sys.modules['torch._inductor.config']\n"
        "import torch._inductor.config as fresh\n"
        "print(fresh is c)\n"
    )
    from repro_ctx.sources.inductor import release

    here = release(torch)
    if here < (2, 10):  # no such entry, and the config stays unimported
        code = ("import sys, torch\ntorch.use_deterministic_algorithms(True)\n"
                "print('torch._inductor.config' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_DETERMINISTIC"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
        timeout=HANG_TIMEOUT,
    )
    if here < (2, 10):
        assert out.stdout.split() == ["False"]
    else:  # before 2.12 an empty context reads the override too
        assert out.stdout.split() == ["True", "True" if here < (2, 12) else "False", "False"]


@pytest.mark.skipif(
    not hasattr(torch._C, "_get_fp32_precision_getter"), reason="fp32_precision API is torch >= 2.9"
)
def test_legacy_tf32_setters_write_only_their_own_leaf_nodes() -> None:
    """What TF32Source relies on to read back only two nodes after a legacy write.

    ``set_float32_matmul_precision`` writes the cuda and mkldnn matmul nodes,
    cuDNN's ``allow_tf32`` the cuda conv and rnn nodes; no other node moves,
    whatever the nodes held before (checked from many random node settings).
    """
    from repro_ctx import deterministic
    from repro_ctx.sources.tf32 import _CUDNN_NODES, _MATMUL_NODES, TF32Source

    source = TF32Source(torch)
    values = {"cuda": ("none", "ieee", "tf32"), "generic": ("none", "ieee", "tf32", "bf16"),
              "mkldnn": ("none", "ieee", "tf32", "bf16")}
    setters = [
        *[(lambda p=p: torch.set_float32_matmul_precision(p), _MATMUL_NODES)
          for p in ("highest", "high", "medium")],
        *[(lambda b=b: torch._C._set_cudnn_allow_tf32(b), _CUDNN_NODES) for b in (True, False)],
    ]
    rng = random.Random(0)
    seen: set[tuple[str, str]] = set()
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        for _ in range(200):
            for backend, op in source._nodes:
                torch._C._set_fp32_precision_setter(backend, op, rng.choice(values[backend]))
            write, own = rng.choice(setters)
            before = source.capture().nodes
            write()
            after = source.capture().nodes
            moved = {node for node, a, b in zip(source._nodes, before, after) if a != b}
            assert moved <= set(own)
            seen |= moved
    assert seen == set(_MATMUL_NODES) | set(_CUDNN_NODES)  # each setter did move its nodes
