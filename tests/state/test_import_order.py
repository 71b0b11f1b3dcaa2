"""Comparing states does not depend on import order: ``==``, ``fingerprint()``, ``diff()``.

Inductor's config reads ``None`` until the program imports it (``torch.compile``
does). ``==`` and ``diff()`` skip a flag that one state cannot read, so a state
captured before that import equals one captured after; the fingerprint, a
digest of one state alone, cannot know what the other side reads, so it
leaves such flags out. The synchronisation check across ranks is in
tests/state/test_distributed.py.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro_ctx import RNGState, capture, deterministic
from repro_ctx.sources.default_set import default_sources
from repro_ctx.sources.inductor import ENTRIES, release
from repro_ctx.state.state_dict import LAZY_FLAGS
from tests.global_state import INDUCTOR_ENTRY, INDUCTOR_FLAG
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
INDUCTOR = "torch._inductor.config"
LAZY = INDUCTOR_FLAG  # the lazily read entry this torch has
ENTRY = INDUCTOR_ENTRY
NOT_COMPARED = "not compared: it reads None in the"


@pytest.fixture(autouse=True)
def _isolate_rng() -> Iterator[None]:
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        yield


def test_the_lazy_flags_are_the_flags_that_read_none_until_imported() -> None:
    flags: Any = next(s for s in default_sources() if s.name == "torch flags")
    here = {f"{INDUCTOR}.{name}" for name, first in ENTRIES.items() if release(torch) >= first}
    assert {flag.name for flag in flags.flags if flag.initial is not None} == here
    assert here <= LAZY_FLAGS
    assert LAZY in here


FRESH_PROCESS = """
import sys
ENTRY = sys.argv[1]
import repro_ctx
from repro_ctx import distributed
assert "torch._inductor.config" not in sys.modules
a = repro_ctx.capture()
import torch._inductor.config as config
b = repro_ctx.capture()
assert getattr(config, ENTRY) is False
assert a.fingerprint() == b.fingerprint(), (a.fingerprint(), b.fingerprint())
assert a == b and b == a and hash(a) == hash(b)
entries = a.diff(b)  # one per inductor entry this torch has, each "not compared"
assert len(entries) == sum(hasattr(config, n) for n in ("deterministic", "fallback_random"))
print(entries[0])
setattr(config, ENTRY, True)
c = repro_ctx.capture()
assert a == c and c == a          # a cannot read it
assert b != c and c != b          # both read it, and it differs
assert b.diff(c) == [f"torch flags: torch._inductor.config.{ENTRY}"]
assert b.fingerprint() == c.fingerprint()  # what the fingerprint leaves out
print("ok")
"""


def test_a_state_captured_before_inductor_is_imported_equals_one_after() -> None:
    """The issue's reproducer, in a process that has not imported inductor's config."""
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, ENTRY], capture_output=True,
                            text=True, cwd=ROOT, timeout=HANG_TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr
    entry, ok = result.stdout.strip().splitlines()
    assert entry.startswith(f"torch flags: {LAZY} ({NOT_COMPARED} first state")
    assert ok == "ok"


# -- Hypothesis: which flags each state can read ----------------------------------------------


NONE_FLAG = "torch.backends.cudnn.benchmark_limit"  # None on a CPU build, 10 on a CUDA one
BENCHMARK = "torch.backends.cudnn.benchmark"

# field -> the values a state may hold there; None: the state cannot read it
FIELDS: dict[str, list[Any]] = {
    LAZY: [None, False, True],
    NONE_FLAG: [None, 10],
    BENCHMARK: [False, True],
    "random": ["base", "drawn"],
}


def _state(values: dict[str, Any], base: dict[str, Any], drawn: dict[str, Any]) -> RNGState:
    data = {**base, "sources": {name: dict(entry) for name, entry in base["sources"].items()}}
    flags = dict(data["sources"]["torch flags"]["state"])
    for name in (LAZY, NONE_FLAG, BENCHMARK):
        flags[name] = values[name]
    data["sources"]["torch flags"] = {"kind": "flags", "state": flags}
    if values["random"] == "drawn":
        data["sources"]["random"] = drawn["sources"]["random"]
    return RNGState.from_state_dict(data)


def _readable_fields_agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The model: equal exactly when every field both sides can read is the same.

    Only the lazily imported flag can be unreadable on one side; a flag that
    reads None in one torch build and not in another is a difference.
    """
    return all(a[name] == b[name] or (name == LAZY and None in (a[name], b[name]))
               for name in FIELDS)


_values = st.fixed_dictionaries({name: st.sampled_from(values)
                                 for name, values in FIELDS.items()})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values, _values)
def test_equality_agrees_with_diff_whatever_each_side_can_read(
    a_values: dict[str, Any], b_values: dict[str, Any]
) -> None:
    base = capture().state_dict()
    random.random()
    drawn = capture().state_dict()
    a, b = _state(a_values, base, drawn), _state(b_values, base, drawn)
    equal = _readable_fields_agree(a_values, b_values)
    assert (a == b) is equal
    assert (b == a) is equal
    diff = a.diff(b)
    assert all(NOT_COMPARED in entry for entry in diff) is equal  # == agrees with diff()
    if equal:
        assert a.fingerprint() == b.fingerprint()
        assert hash(a) == hash(b)
    # the fingerprint covers every field but the lazily imported flag
    covered_same = all(a_values[name] == b_values[name] for name in FIELDS if name != LAZY)
    assert (a.fingerprint() == b.fingerprint()) is covered_same
    unread = (a_values[LAZY] is None) != (b_values[LAZY] is None)
    assert any(entry.startswith(f"torch flags: {LAZY} ({NOT_COMPARED}") for entry in diff) is (
        unread
    )


class _Config:
    """Stands in for inductor's config, which takes seconds to import (as in
    tests/sources/test_inductor_flag.py)."""

    def __init__(self) -> None:
        setattr(self, ENTRY, False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["import", "unimport", "flip", "benchmark"]), max_size=6))
def test_live_captures_compare_by_what_both_can_read(steps: list[str]) -> None:
    """Capture after every step; every pair compares as the public values say."""
    config = _Config()
    public: list[dict[str, Any]] = []
    states: list[RNGState] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.delitem(sys.modules, INDUCTOR, raising=False)
        for step in ["start", *steps]:
            if step == "import":
                patch.setitem(sys.modules, INDUCTOR, config)
            elif step == "unimport":
                patch.delitem(sys.modules, INDUCTOR, raising=False)
            elif step == "flip":
                setattr(config, ENTRY, not getattr(config, ENTRY))
            elif step == "benchmark":
                torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
            module = sys.modules.get(INDUCTOR)
            public.append({LAZY: None if module is None else getattr(module, ENTRY),
                           BENCHMARK: torch.backends.cudnn.benchmark})
            states.append(capture())
    for a, a_public in zip(states, public, strict=True):
        for b, b_public in zip(states, public, strict=True):
            equal = all(a_public[k] == b_public[k] or (k == LAZY and None in (
                a_public[k], b_public[k])) for k in a_public)
            assert (a == b) is equal
            assert all(NOT_COMPARED in entry for entry in a.diff(b)) is equal
            if equal:
                assert a.fingerprint() == b.fingerprint()
            assert (a.fingerprint() == b.fingerprint()) is (
                a_public[BENCHMARK] == b_public[BENCHMARK])
