"""Other libraries' determinism variables: set inside a scope, they come back exactly after it.

Lightning's ``seed_everything`` and transformers' ``enable_full_determinism``
are simulated by what they write (shared/FACTS.md), so these tests need
neither package.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
import torch

from repro_ctx import deterministic, reproducible
from repro_ctx.diagnose import leaks as _leaks
from repro_ctx.sources.default_set import default_sources
from repro_ctx.sources.environment import SCOPED_VARIABLES, EnvironmentSource

LIBRARY_VARIABLES = (
    "PL_GLOBAL_SEED",
    "PL_SEED_WORKERS",
    "CUDA_LAUNCH_BLOCKING",
    "FLASH_ATTENTION_DETERMINISTIC",
    "ASCEND_LAUNCH_BLOCKING",
    "HCCL_DETERMINISTIC",
    "NCCL_ALGO",
    "NCCL_PROTO",
)
ALL = ("CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED", *LIBRARY_VARIABLES)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL:
        monkeypatch.delenv(name, raising=False)


def _values() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in ALL}


def lightning_seed_everything(seed: int, workers: bool = False) -> None:
    """What Lightning's ``seed_everything`` leaves in the environment."""
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    os.environ["PL_SEED_WORKERS"] = str(int(workers))


def transformers_enable_full_determinism() -> None:
    """What transformers' ``enable_full_determinism`` does to the environment and torch."""
    os.environ["CUDA_LAUNCH_BLOCKING"] = "1"
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    os.environ["ASCEND_LAUNCH_BLOCKING"] = "1"
    os.environ["HCCL_DETERMINISTIC"] = "1"
    os.environ["FLASH_ATTENTION_DETERMINISTIC"] = "1"
    torch.use_deterministic_algorithms(True)


def torchtitan_batch_invariance() -> None:
    """The NCCL variables torchtitan's ``set_batch_invariance`` sets for reduction order."""
    os.environ["NCCL_PROTO"] = "Simple"
    os.environ["NCCL_ALGO"] = "allreduce:tree"


def test_every_variable_is_scoped_with_a_reason() -> None:
    assert {variable.name for variable in SCOPED_VARIABLES} == set(ALL)
    assert EnvironmentSource.variables == tuple(variable.name for variable in SCOPED_VARIABLES)
    for variable in SCOPED_VARIABLES:
        assert variable.reason
        assert "\n" not in variable.reason


def test_unset_variables_set_inside_a_scope_come_back_unset() -> None:
    before = _values()
    with deterministic(0):
        lightning_seed_everything(0, workers=True)
        transformers_enable_full_determinism()
        torchtitan_batch_invariance()
        assert os.environ["PL_GLOBAL_SEED"] == "0"
    assert _values() == before
    assert all(os.environ.get(name) is None for name in ALL)
    assert not torch.are_deterministic_algorithms_enabled()


def test_values_set_before_a_scope_come_back_exactly() -> None:
    os.environ.update(
        PL_GLOBAL_SEED="42", PL_SEED_WORKERS="0", CUDA_LAUNCH_BLOCKING="0",
        FLASH_ATTENTION_DETERMINISTIC="0", HCCL_DETERMINISTIC="0", NCCL_ALGO="ring",
    )
    before = _values()
    with deterministic(7):
        lightning_seed_everything(7, workers=True)
        transformers_enable_full_determinism()
        torchtitan_batch_invariance()
        del os.environ["PL_SEED_WORKERS"]
    assert _values() == before


def test_a_scope_never_sets_the_library_variables() -> None:
    os.environ["PL_GLOBAL_SEED"] = "3"
    with deterministic(0, algorithms=True):
        assert os.environ["PL_GLOBAL_SEED"] == "3"
        for name in LIBRARY_VARIABLES[1:]:
            assert name not in os.environ
    assert os.environ["PL_GLOBAL_SEED"] == "3"


def test_a_decorated_generator_keeps_its_variables_to_itself() -> None:
    @reproducible(seed=0)
    def body() -> Generator[str | None, None, None]:
        lightning_seed_everything(1)
        yield os.environ.get("PL_GLOBAL_SEED")
        yield os.environ.get("PL_GLOBAL_SEED")  # set again at resumption

    steps = body()
    assert next(steps) == "1"
    assert "PL_GLOBAL_SEED" not in os.environ  # the caller's (unset) value between steps
    os.environ["PL_GLOBAL_SEED"] = "caller"
    assert next(steps) == "1"
    assert os.environ["PL_GLOBAL_SEED"] == "caller"
    steps.close()
    assert os.environ["PL_GLOBAL_SEED"] == "caller"


def test_the_leak_checker_names_a_library_variable_left_set() -> None:
    sources = default_sources()
    before = _leaks.capture(sources)
    lightning_seed_everything(5)
    found = _leaks.changes(sources, before, _leaks.capture(sources))
    assert [str(change) for change in found] == [
        "os.environ['PL_GLOBAL_SEED']: unset -> '5'",
        "os.environ['PL_SEED_WORKERS']: unset -> '0'",
    ]


def test_reports_show_each_variable() -> None:
    os.environ["CUDA_LAUNCH_BLOCKING"] = "1"
    (source,) = [s for s in default_sources() if isinstance(s, EnvironmentSource)]
    described = source.describe()
    assert list(described) == list(EnvironmentSource.variables)
    assert described["CUDA_LAUNCH_BLOCKING"] == "1"
    assert described["PL_GLOBAL_SEED"] is None
