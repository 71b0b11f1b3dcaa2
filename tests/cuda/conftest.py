"""CUDA tests: skipped without a GPU. Run on a GPU machine with

    PYTHONPATH=. python -m pytest tests/cuda -m cuda      # under 5 minutes on one H100
"""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        item.add_marker(pytest.mark.cuda)
        if not torch.cuda.is_available():
            item.add_marker(skip)
