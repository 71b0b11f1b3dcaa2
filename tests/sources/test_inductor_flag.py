"""Inductor's config entries (``deterministic``, ``fallback_random``): scoped once imported.

``deterministic`` exists from torch 2.10 on, ``fallback_random`` on every
supported torch (pinned in tests/sources/test_facts.py); each test runs for
every entry this torch has, and checks that an entry it lacks is no flag.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repro_ctx.sources import inductor
from repro_ctx.sources.flags import build_flags_source
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
HERE = inductor.release(torch)
ENTRIES = [name for name, first in inductor.ENTRIES.items() if first <= HERE]
"""The entries this torch's config has."""


@pytest.fixture(params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_an_entry_is_a_flag_exactly_where_this_torch_has_it() -> None:
    names = {flag.name for flag in build_flags_source(torch).flags}
    for name, first in inductor.ENTRIES.items():
        assert (f"torch._inductor.config.{name}" in names) is (first <= HERE), name


SCRIPT = """
import sys
import torch
from repro_ctx import deterministic
with deterministic(0):
    pass
assert "torch._inductor.config" not in sys.modules, "a scope must not import inductor"
import torch._inductor.config as config
setattr(config, NAME, False)
with deterministic(0):
    assert getattr(config, NAME) is True
    setattr(config, NAME, False)
    with deterministic(0, algorithms=False):
        assert getattr(config, NAME) is False
    assert getattr(config, NAME) is False
assert getattr(config, NAME) is False
setattr(config, NAME, True)
with deterministic(0, algorithms=None):
    assert getattr(config, NAME) is True
with deterministic(0, algorithms=False):
    assert getattr(config, NAME) is False
assert getattr(config, NAME) is True
with deterministic(0):
    del sys.modules["torch._inductor.config"]  # unloaded inside: nothing to write back
assert getattr(config, NAME) is True
print("ok")
"""


def test_inductor_config_is_scoped_once_imported(entry: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"NAME = {entry!r}\n{SCRIPT}"], capture_output=True, text=True,
        cwd=ROOT, timeout=HANG_TIMEOUT,
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_inductor_flag_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same paths in this process, with a stand-in for the (slow to import) config.

    An entry this torch lacks is left alone, even where the stand-in has it.
    """
    from types import SimpleNamespace

    from repro_ctx import deterministic

    config = SimpleNamespace(**dict.fromkeys(inductor.ENTRIES, False))
    monkeypatch.setitem(sys.modules, "torch._inductor.config", config)
    with deterministic(0):
        for name in inductor.ENTRIES:
            assert getattr(config, name) is (name in ENTRIES)
            setattr(config, name, "changed")
    for name in inductor.ENTRIES:
        assert getattr(config, name) == (False if name in ENTRIES else "changed")


def test_a_config_without_an_entry_reads_none_and_takes_no_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A torch whose config drops an entry: the flag reads None and nothing breaks."""
    from types import SimpleNamespace

    config = SimpleNamespace()
    monkeypatch.setitem(sys.modules, "torch._inductor.config", config)
    flag = inductor.ConfigEntry("fallback_random")
    assert flag.get() is None
    assert flag.initial() is None
    flag.set(True)
    assert not hasattr(config, "fallback_random")


def test_the_fast_reader_follows_the_real_config(entry: str) -> None:
    import torch._inductor.config as config

    flag = inductor.ConfigEntry(entry)
    original = getattr(config, entry)
    try:
        for value in (True, False, True):
            setattr(config, entry, value)
            assert flag.get() is value
    finally:
        setattr(config, entry, original)


def test_the_fast_reader_is_used_exactly_where_overrides_are_context_variables() -> None:
    """torch 2.12 keeps overrides in ContextVars; before it, the public attribute is read."""
    import torch._inductor.config as config

    reader = inductor.fast_config_reader(config, "fallback_random")
    assert (reader.__name__ == "fast") is (HERE >= (2, 12))


def test_entries_that_are_not_plain_are_read_through_the_public_attribute() -> None:
    import contextvars
    import types

    unset = object()
    module = types.ModuleType("torch.utils._config_module")
    module._UNSET_SENTINEL = unset  # type: ignore[attr-defined]

    class Entry:
        alias: str | None = "elsewhere"
        env_value_force = unset
        env_value_default: object = unset
        justknob = None
        deprecated = False
        default = False
        user_override: object = contextvars.ContextVar("override", default=unset)

    config = types.SimpleNamespace(_config={"deterministic": Entry()}, deterministic="public")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "torch.utils._config_module", module)
        assert inductor.fast_config_reader(config, "deterministic")() == "public"
        Entry.alias = None
        Entry.env_value_default = "from env"
        config.deterministic = "from env"
        assert inductor.fast_config_reader(config, "deterministic").__name__ == "fast"
        assert inductor.fast_config_reader(config, "deterministic")() == "from env"
        config.deterministic = "disagrees"  # a fast read that would differ is never used
        assert inductor.fast_config_reader(config, "deterministic")() == "disagrees"
        Entry.user_override = unset  # a plain value, as up to torch 2.11
        config.deterministic = "from env"
        assert inductor.fast_config_reader(config, "deterministic").__name__ == "public"


# -- inductor's config first imported inside a scope ----------------------------------

REPRODUCER = """
import sys, torch
from repro_ctx import deterministic
assert "torch._inductor.config" not in sys.modules
with deterministic(seed=0):
    torch.use_deterministic_algorithms({mode})
    import torch._inductor.config as config
    config.fallback_random = True
print(torch.are_deterministic_algorithms_enabled(), getattr(config, "deterministic", None),
      config.fallback_random)
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
    """The issue's reproducer: ``False True`` before, inductor stayed deterministic.

    torch before 2.10 has no ``deterministic`` entry (None).
    """
    deterministic = "False" if HERE >= (2, 10) else "None"
    assert _run(REPRODUCER.format(mode=True)) == f"False {deterministic} False"


def test_the_default_after_the_scope_is_torchs_import_time_value_not_false() -> None:
    """With TORCHINDUCTOR_DETERMINISTIC=1 torch's default is True: that comes back."""
    code = REPRODUCER.format(mode=False)
    deterministic = "True" if HERE >= (2, 10) else "None"
    assert _run(code, TORCHINDUCTOR_DETERMINISTIC="1") == f"False {deterministic} False"


class _Unimported:
    """Hides the (already imported) config from sys.modules until ``load()``.

    Putting the same module object back, recorded by the import watch as a
    real import would be, stands for its first import: torch would refuse to
    import the config a second time in this process.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        import torch._inductor.config as config

        self.config = config
        self.name = name
        monkeypatch.delitem(sys.modules, "torch._inductor.config")
        monkeypatch.setattr(inductor.WATCH, "_values", {})  # this test's imports only
        self._monkeypatch = monkeypatch

    def load(self, value: bool = True) -> None:
        """The config imported, then its entry set (as ``use_deterministic_algorithms`` does)."""
        sys.modules["torch._inductor.config"] = self.config
        inductor.WATCH.record(self.config)
        self.set(value)

    def read(self) -> object:
        return getattr(self.config, self.name)

    def set(self, value: object) -> None:
        setattr(self.config, self.name, value)

    def unload(self) -> None:
        del sys.modules["torch._inductor.config"]


def _default_false(monkeypatch: pytest.MonkeyPatch, name: str) -> _Unimported:
    """The config, hidden; its import-time value False, as the watch will record it."""
    import torch._inductor.config as config

    setattr(config, name, False)
    return _Unimported(monkeypatch, name)


def test_a_with_block_restores_the_import_time_value(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    from repro_ctx import deterministic

    hidden = _default_false(monkeypatch, entry)
    with deterministic(0):
        hidden.load(True)
    assert hidden.read() is False


def test_nested_scopes_both_entered_before_the_import(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    from repro_ctx import deterministic

    hidden = _default_false(monkeypatch, entry)
    with deterministic(0):
        with deterministic(1):
            hidden.load(True)
        # the inner scope's entry was unimported: it reads what the outer scope,
        # still open, wants of it (deterministic(0): True), not the import-time False
        assert hidden.read() is True
        hidden.set(False)
    assert hidden.read() is False


def test_an_inner_scope_entered_after_the_import_restores_its_own_entry(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    from repro_ctx import deterministic

    hidden = _default_false(monkeypatch, entry)
    with deterministic(0, algorithms=None):
        hidden.load(True)
        with deterministic(1, algorithms=False):
            assert hidden.read() is False
        assert hidden.read() is True
    assert hidden.read() is False


def test_a_generator_imported_it_between_the_callers_steps(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    from collections.abc import Generator

    from repro_ctx import reproducible

    hidden = _default_false(monkeypatch, entry)

    @reproducible(seed=0, algorithms=None)
    def body() -> Generator[object, None, None]:
        hidden.load(True)
        yield hidden.read()
        yield hidden.read()

    steps = body()
    assert next(steps) is True
    assert hidden.read() is False  # the caller's: it had never imported it
    assert next(steps) is True  # the generator's own value, swapped back in
    assert hidden.read() is False
    steps.close()
    assert hidden.read() is False


def test_a_coroutine_imported_it_across_an_await(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    """Driven by hand: an asyncio task would run it in a copy of the context, and
    the config keeps its values in ContextVars, so the caller would never see them."""
    import asyncio

    from repro_ctx import reproducible

    hidden = _default_false(monkeypatch, entry)

    @reproducible(seed=0, algorithms=None)
    async def body() -> bool:
        hidden.load(True)
        await asyncio.sleep(0)
        return bool(hidden.read())

    steps = body()
    steps.send(None)  # suspended at the await, after the import
    assert hidden.read() is False
    with pytest.raises(StopIteration) as done:
        steps.send(None)
    assert done.value.value is True
    assert hidden.read() is False


def test_unloaded_again_inside_the_scope_nothing_is_written(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    from repro_ctx import deterministic

    hidden = _default_false(monkeypatch, entry)
    with deterministic(0):
        hidden.load(True)
        hidden.unload()
    assert "torch._inductor.config" not in sys.modules
    assert hidden.read() is True


def test_importing_it_at_its_default_is_no_leak(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    from repro_ctx.diagnose import leaks as _leaks
    from repro_ctx.sources.default_set import default_sources

    hidden = _default_false(monkeypatch, entry)
    sources = default_sources()
    before = _leaks.capture(sources)
    hidden.load(False)
    assert _leaks.changes(sources, before, _leaks.capture(sources)) == []
    hidden.set(True)
    assert [str(c) for c in _leaks.changes(sources, before, _leaks.capture(sources))] == [
        f"torch._inductor.config.{entry}: None -> True"
    ]


def test_a_config_imported_before_the_watch_falls_back_to_an_empty_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No record (imported before repro_ctx): torch >= 2.12 still gives the import-time value."""
    import torch._inductor.config as config

    monkeypatch.setattr(inductor.WATCH, "_values", {})
    original = config.fallback_random
    try:
        config.fallback_random = True
        expected = HERE < (2, 12)  # before 2.12: the value now
        assert inductor.import_time_value(config, "fallback_random") is expected
    finally:
        config.fallback_random = original


# -- the watch on sys.meta_path ------------------------------------------------------

WATCHED = """
import sys
import repro_ctx
repro_ctx.capture()  # builds the flag table, which installs the watch
from repro_ctx.sources.inductor import WATCH
assert sys.meta_path[0] is WATCH
import json  # any other module: not the watch's business
import torch._inductor.config as config
print(WATCH.recorded(config, "fallback_random"), type(config.__loader__).__name__,
      config.__loader__.get_filename("torch._inductor.config") == config.__file__)
"""


def test_the_watch_records_the_import_and_leaves_the_loader_working() -> None:
    assert _run(WATCHED) == "(True, False) _RecordingLoader True"


def test_the_watch_finds_nothing_itself() -> None:
    watch = inductor.ImportWatch()
    assert watch.find_spec("json", None) is None
    assert watch.find_spec("no_such_module_anywhere", None) is None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "meta_path", [watch])  # no finder after it: nothing found
        assert watch.find_spec("torch._inductor.config", None) is None


# -- fallback_random: compiled code draws what eager code draws (pytorch#141645) -------

COMPILED = """
import sys
import torch
import torch._inductor.config  # a scope sets inductor's entries once its config is imported
from repro_ctx import deterministic

def f(x):
    return torch.nn.functional.dropout(x, 0.5, training=True) + torch.rand_like(x)

x = torch.ones(64)
algorithms = None if sys.argv[1] == "leave" else True
with deterministic(0, algorithms=algorithms):
    eager = f(x)
with deterministic(0, algorithms=algorithms):
    compiled = torch.compile(f)(x)
print(torch.equal(eager, compiled))
"""


@pytest.mark.slow  # two inductor compilations with a C compiler: minutes on a busy 2-core box
@pytest.mark.parametrize(("algorithms", "equal"), [("scope", "True"), ("leave", "False")])
def test_compiled_random_numbers_equal_eager_ones_in_a_scope(algorithms: str, equal: str) -> None:
    """In a scope, torch.compile'd dropout and rand_like draw eager's numbers; a scope that
    leaves the flags alone (``algorithms=None``) shows the difference fallback_random makes.
    Marked slow, so it runs once, in the ``tests`` session, not in every core-suite session.
    """
    result = subprocess.run(
        [sys.executable, "-c", COMPILED, algorithms], capture_output=True, text=True, cwd=ROOT,
        timeout=HANG_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == equal


NESTED_IMPORT = """
import sys, torch
from repro_ctx import deterministic
assert "torch._inductor.config" not in sys.modules
names = [n for n in ("deterministic", "fallback_random")
         if n != "deterministic" or {has_deterministic}]
seen = []
with deterministic(seed=0):
    with deterministic(seed=1, algorithms=None):  # leaves the flags to the outer scope
        import torch._inductor.config as config
        seen.append([getattr(config, n) for n in names])
        with deterministic(seed=2, algorithms=False):
            seen.append([getattr(config, n) for n in names])
        seen.append([getattr(config, n) for n in names])
    seen.append([getattr(config, n) for n in names])
seen.append([getattr(config, n) for n in names])
print(seen)
"""


def test_imported_inside_scopes_each_entry_is_as_the_open_scopes_want_it() -> None:
    """``torch.compile`` inside ``with deterministic()`` imports the config: compiled code
    draws eager's numbers (``fallback_random``) in that very scope, and every exit after
    puts back what the scopes still open want, then the import-time value."""
    code = NESTED_IMPORT.format(has_deterministic=HERE >= (2, 10))
    width = 2 if HERE >= (2, 10) else 1
    on, off = [True] * width, [False] * width
    assert _run(code) == str([on, off, on, on, off])
