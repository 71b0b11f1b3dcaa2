"""Inductor's deterministic config: scoped once the program has imported it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import torch
from repro_ctx import deterministic
with deterministic(0):
    pass
assert "torch._inductor.config" not in sys.modules, "a scope must not import inductor"
import torch._inductor.config as config
config.deterministic = False
with deterministic(0):
    assert config.deterministic is True
    config.deterministic = False
    with deterministic(0, algorithms=False):
        assert config.deterministic is False
    assert config.deterministic is False
assert config.deterministic is False
config.deterministic = True
with deterministic(0, algorithms=None):
    assert config.deterministic is True
with deterministic(0, algorithms=False):
    assert config.deterministic is False
assert config.deterministic is True
with deterministic(0):
    del sys.modules["torch._inductor.config"]  # unloaded inside: nothing to write back
assert config.deterministic is True
print("ok")
"""


def test_inductor_config_is_scoped_once_imported() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_inductor_flag_in_process(monkeypatch: object) -> None:
    """The same paths in this process, with a stand-in for the (slow to import) config."""
    import types

    import pytest

    from repro_ctx import deterministic

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    config = types.SimpleNamespace(deterministic=False)
    monkeypatch.setitem(sys.modules, "torch._inductor.config", config)
    with deterministic(0):
        assert config.deterministic is True
        config.deterministic = "changed"
    assert config.deterministic is False
