"""``repro_ctx.distributed`` is reachable as an attribute, imported only when first used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import repro_ctx
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import sys, repro_ctx
print("repro_ctx.distributed" in sys.modules, "torch.distributed" in sys.modules)
module = repro_ctx.distributed
print(module.__name__, callable(module.assert_synchronized), "distributed" in dir(repro_ctx))
"""


def test_distributed_is_an_attribute_imported_on_first_use() -> None:
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                            cwd=ROOT, check=True, timeout=HANG_TIMEOUT)
    assert result.stdout.splitlines() == ["False False", "repro_ctx.distributed True True"]


def test_other_missing_attributes_still_raise() -> None:
    assert repro_ctx.distributed.NotSynchronizedError.__name__ == "NotSynchronizedError"
    assert "distributed" in dir(repro_ctx)
    assert "find_divergence" in dir(repro_ctx)
    with pytest.raises(AttributeError, match="module 'repro_ctx' has no attribute 'nothing'"):
        repro_ctx.nothing  # type: ignore[attr-defined]  # noqa: B018
