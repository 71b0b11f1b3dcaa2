"""CUDA tests: skipped without a GPU. Run on a GPU machine with

    PYTHONPATH=. python -m pytest tests/cuda -m cuda      # under 5 minutes on one H100
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder (the hook sees the whole session's items)."""
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if HERE not in Path(str(item.path)).resolve().parents:
            continue
        item.add_marker(pytest.mark.cuda)
        if not torch.cuda.is_available():
            item.add_marker(skip)
