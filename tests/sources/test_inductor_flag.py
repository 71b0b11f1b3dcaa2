"""Inductor's deterministic config: scoped once the program has imported it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]

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
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT,
        timeout=HANG_TIMEOUT,
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

    from repro_ctx.sources.flags import _inductor_flag

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

    from repro_ctx.sources.flags import _fast_config_reader

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


# -- inductor's config first imported inside a scope ----------------------------------

REPRODUCER = """
import sys, torch
from repro_ctx import deterministic
assert "torch._inductor.config" not in sys.modules
with deterministic(seed=0):
    torch.use_deterministic_algorithms({mode})
print(torch.are_deterministic_algorithms_enabled(), torch._inductor.config.deterministic)
"""


def _run(code: str, **env: str) -> str:
    import os

    environ = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_DETERMINISTIC"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
        env={**environ, **env}, timeout=HANG_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_imported_inside_a_scope_it_reads_torchs_default_after_it() -> None:
    """The issue's reproducer: ``False True`` before, inductor stayed deterministic."""
    assert _run(REPRODUCER.format(mode=True)) == "False False"


def test_the_default_after_the_scope_is_torchs_import_time_value_not_false() -> None:
    """With TORCHINDUCTOR_DETERMINISTIC=1 torch's default is True: that comes back."""
    code = REPRODUCER.format(mode=False)
    assert _run(code, TORCHINDUCTOR_DETERMINISTIC="1") == "False True"


class _Unimported:
    """Hides the (already imported) config from sys.modules until ``load()``.

    Putting the same module object back stands for its first import: torch
    would refuse to import the config a second time in this process.
    """

    def __init__(self, monkeypatch: object) -> None:
        import pytest
        import torch._inductor.config as config

        assert isinstance(monkeypatch, pytest.MonkeyPatch)
        self.config = config
        monkeypatch.delitem(sys.modules, "torch._inductor.config")
        self._monkeypatch = monkeypatch

    def load(self, value: bool = True) -> None:
        """What ``use_deterministic_algorithms(value)`` does to the config, importing it."""
        sys.modules["torch._inductor.config"] = self.config
        self.config.deterministic = value

    def unload(self) -> None:
        del sys.modules["torch._inductor.config"]


def _default_false(monkeypatch: object) -> _Unimported:
    """The config, hidden; its import-time value is False (pinned in test_facts)."""
    import os

    import pytest
    import torch._inductor.config as config

    if os.environ.get("TORCHINDUCTOR_DETERMINISTIC") == "1":
        pytest.skip("TORCHINDUCTOR_DETERMINISTIC=1 makes inductor's default True")
    config.deterministic = False
    return _Unimported(monkeypatch)


def test_a_with_block_restores_the_import_time_value(monkeypatch: object) -> None:
    from repro_ctx import deterministic

    hidden = _default_false(monkeypatch)
    with deterministic(0):
        hidden.load(True)
    assert hidden.config.deterministic is False


def test_nested_scopes_both_entered_before_the_import(monkeypatch: object) -> None:
    from repro_ctx import deterministic

    hidden = _default_false(monkeypatch)
    with deterministic(0):
        with deterministic(1):
            hidden.load(True)
        assert hidden.config.deterministic is False  # the inner scope's entry: unimported
        hidden.config.deterministic = True
    assert hidden.config.deterministic is False


def test_an_inner_scope_entered_after_the_import_restores_its_own_entry(
    monkeypatch: object,
) -> None:
    from repro_ctx import deterministic

    hidden = _default_false(monkeypatch)
    with deterministic(0, algorithms=None):
        hidden.load(True)
        with deterministic(1, algorithms=False):
            assert hidden.config.deterministic is False
        assert hidden.config.deterministic is True
    assert hidden.config.deterministic is False


def test_a_generator_imported_it_between_the_callers_steps(monkeypatch: object) -> None:
    from collections.abc import Generator

    from repro_ctx import reproducible

    hidden = _default_false(monkeypatch)

    @reproducible(seed=0, algorithms=None)
    def body() -> Generator[bool, None, None]:
        hidden.load(True)
        yield hidden.config.deterministic
        yield hidden.config.deterministic

    steps = body()
    assert next(steps) is True
    assert hidden.config.deterministic is False  # the caller's: it had never imported it
    assert next(steps) is True  # the generator's own value, swapped back in
    assert hidden.config.deterministic is False
    steps.close()
    assert hidden.config.deterministic is False


def test_a_coroutine_imported_it_across_an_await(monkeypatch: object) -> None:
    """Driven by hand: an asyncio task would run it in a copy of the context, and
    the config keeps its values in ContextVars, so the caller would never see them."""
    import asyncio

    import pytest

    from repro_ctx import reproducible

    hidden = _default_false(monkeypatch)

    @reproducible(seed=0, algorithms=None)
    async def body() -> bool:
        hidden.load(True)
        await asyncio.sleep(0)
        return bool(hidden.config.deterministic)

    steps = body()
    steps.send(None)  # suspended at the await, after the import
    assert hidden.config.deterministic is False
    with pytest.raises(StopIteration) as done:
        steps.send(None)
    assert done.value.value is True
    assert hidden.config.deterministic is False


def test_unloaded_again_inside_the_scope_nothing_is_written(monkeypatch: object) -> None:
    from repro_ctx import deterministic

    hidden = _default_false(monkeypatch)
    with deterministic(0):
        hidden.load(True)
        hidden.unload()
    assert "torch._inductor.config" not in sys.modules
    assert hidden.config.deterministic is True


def test_importing_it_at_its_default_is_no_leak(monkeypatch: object) -> None:
    from repro_ctx.diagnose import leaks as _leaks
    from repro_ctx.sources.default_set import default_sources

    hidden = _default_false(monkeypatch)
    sources = default_sources()
    before = _leaks.capture(sources)
    hidden.load(False)
    assert _leaks.changes(sources, before, _leaks.capture(sources)) == []
    hidden.config.deterministic = True
    assert [str(c) for c in _leaks.changes(sources, before, _leaks.capture(sources))] == [
        "torch._inductor.config.deterministic: None -> True"
    ]
