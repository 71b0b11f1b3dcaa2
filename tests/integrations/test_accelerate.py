"""register(accelerator): every process's streams in save_state/load_state (real accelerate 1.16).

Two CPU processes over gloo save a checkpoint; two fresh processes load it.
"""

from __future__ import annotations

from typing import Any

import pytest

from repro_ctx.integrations.accelerate import register
from tests.rank_processes import run_ranks

MODULE = "tests.integrations.accelerate_ranks"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("accelerate")
    return {"save": run_ranks(MODULE, "save", 2, directory),
            "load": run_ranks(MODULE, "load", 2, directory),
            "one": run_ranks(MODULE, "one_process", 1, directory)}


def test_each_process_resumes_on_its_own_streams(runs: dict[str, list[dict[str, Any]]]) -> None:
    saved = [rank["saved"] for rank in runs["save"]]
    assert [rank["processes"] for rank in runs["save"]] == [2, 2]
    assert saved[0] != saved[1]
    assert [rank["loaded"] for rank in runs["load"]] == saved  # registered generator included


def test_accelerate_alone_leaves_the_registered_generator_out(
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    assert runs["one"][0]["unhooked_restores_generator"] is False


def test_another_number_of_processes_or_a_missing_file_is_refused(
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    one = runs["one"][0]
    assert "saved by 2 processes; this run has 1" in one["resized"]
    assert "repro_ctx_rng_state_0.pt does not exist" in one["missing"]


def test_register_takes_an_accelerator() -> None:
    with pytest.raises(TypeError, match=r"takes an accelerate\.Accelerator, got object"):
        register(object())  # type: ignore[arg-type]
