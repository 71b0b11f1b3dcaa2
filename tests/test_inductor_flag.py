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


def test_the_fast_reader_follows_the_real_config() -> None:
    import torch._inductor.config as config

    from repro_ctx._flags import _inductor_flag

    flag = _inductor_flag()
    original = config.deterministic
    try:
        for value in (True, False, True):
            config.deterministic = value
            assert flag.get() is value
    finally:
        config.deterministic = original


def test_entries_that_are_not_plain_are_read_through_the_public_attribute() -> None:
    import types

    from torch.utils._config_module import _UNSET_SENTINEL

    from repro_ctx._flags import _fast_config_reader

    class Entry:
        alias = "elsewhere"
        env_value_force = _UNSET_SENTINEL
        env_value_default = _UNSET_SENTINEL
        justknob = None
        deprecated = False
        default = False
        user_override = None

    config = types.SimpleNamespace(_config={"deterministic": Entry()}, deterministic="public")
    assert _fast_config_reader(config, "deterministic")() == "public"
    Entry.alias = None
    Entry.env_value_default = "from env"

    class Override:
        @staticmethod
        def get() -> object:
            return _UNSET_SENTINEL

    Entry.user_override = Override()  # type: ignore[assignment]
    config.deterministic = "from env"
    assert _fast_config_reader(config, "deterministic")() == "from env"
    config.deterministic = "disagrees"  # a fast read that would differ is never used
    assert _fast_config_reader(config, "deterministic")() == "disagrees"
