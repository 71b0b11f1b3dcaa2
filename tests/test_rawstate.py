"""Tests of repro_ctx._rawstate: raw RNG state copies vs. the public APIs."""

from __future__ import annotations

import contextlib
import pickle
import random
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repro_ctx import _rawstate as rawstate
from repro_ctx._rawstate import (
    FAST_PATHS,
    bitgen_get,
    bitgen_set,
    legacy_get,
    legacy_set,
    legacy_swap,
    random_get,
    random_set,
    random_swap,
)

BITGENS: list[type[np.random.BitGenerator]] = [
    np.random.MT19937,
    np.random.PCG64,
    np.random.PCG64DXSM,
    np.random.Philox,
    np.random.SFC64,
]
BITGEN_IDS = [cls.__name__ for cls in BITGENS]
ALL_KEYS = ["random", "numpy_legacy", *(f"bitgen:{cls.__name__}" for cls in BITGENS)]

SETTINGS = settings(max_examples=40, deadline=None)
seeds = st.integers(0, 2**64 - 1)
# (operation, count) pairs; counts up to 1400 cross MT19937's 624-word boundary.
ops = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1400)), max_size=6)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def same_state(a: object, b: object) -> bool:
    """Exact equality of public states (ndarrays compared by dtype and bytes).

    Written apart from ``_rawstate._deep_equal``, which the self-checks use:
    the tests' oracle must not share a bug with the code under test.
    """
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, Mapping):
        return (
            isinstance(b, Mapping) and set(a) == set(b) and all(same_state(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(same_state(x, y) for x, y in zip(a, b, strict=True))
        )
    return type(a) is type(b) and a == b


def as_state_of(public: Mapping[str, Any], bg: np.random.BitGenerator) -> dict[str, Any]:
    """numpy names the instance's class in ``.state``; follow it."""
    return {**public, "bit_generator": type(bg).__name__}


@contextlib.contextmanager
def fast_paths_off(*keys: str) -> Iterator[None]:
    saved = {key: FAST_PATHS[key] for key in keys}
    try:
        for key in keys:
            FAST_PATHS[key] = False
        yield
    finally:
        for key, value in saved.items():
            FAST_PATHS[key] = value


def is_raw(state: object) -> bool:
    assert isinstance(state, tuple)
    return isinstance(state[0], str) and state[0].endswith(":raw")


def random_ops(r: random.Random, plan: Sequence[tuple[int, int]]) -> None:
    for op, n in plan:
        if op == 0:
            for _ in range(n % 5 + 1):
                r.random()
        elif op == 1:
            for _ in range(n % 3 + 1):  # odd count leaves gauss_next set
                r.gauss(0.0, 1.0)
        elif op == 2:
            r.getrandbits(n % 300 + 1)
        elif op == 3:
            for _ in range(n):
                r.getrandbits(32)  # one MT word each
        elif op == 4:
            r.randrange(n + 1)
        else:
            r.normalvariate(0.0, 1.0)


def random_draws(r: random.Random) -> list[object]:
    return [r.random(), r.gauss(0.0, 1.0), r.getrandbits(100), r.gauss(0.0, 1.0), r.random()]


def legacy_ops(rs: np.random.RandomState, plan: Sequence[tuple[int, int]]) -> None:
    for op, n in plan:
        if op == 0:
            rs.randn(n % 7 + 1)  # odd sizes cache a Gaussian
        elif op == 1:
            rs.random_sample(n)
        elif op == 2:
            rs._bit_generator.random_raw(n)
        elif op == 3:
            rs.normal(size=n % 3 + 1)
        elif op == 4:
            rs.randint(0, 1000, size=n % 5)
        else:
            rs.standard_gamma(0.5, size=n % 3 + 1)


def legacy_draws(rs: np.random.RandomState) -> list[object]:
    return [rs.randn(3).tolist(), rs.random_sample(2).tolist(), rs.randint(0, 2**31, 3).tolist()]


def bitgen_ops(bg: np.random.BitGenerator, plan: Sequence[tuple[int, int]]) -> None:
    g = np.random.Generator(bg)
    for op, n in plan:
        if op == 0:
            g.integers(0, 2**32, size=n % 5 + 1, dtype=np.uint32)  # odd: buffered half
        elif op == 1:
            bg.random_raw(n)
        elif op == 2:
            g.random(n % 5 + 1)
        elif op == 3:
            g.standard_normal(n % 4 + 1)
        elif op == 4:
            g.integers(0, 2**16, size=n % 7, dtype=np.uint16)
        elif hasattr(bg, "advance"):
            bg.advance(n)


def bitgen_draws(bg: np.random.BitGenerator) -> list[object]:
    g = np.random.Generator(bg)
    return [
        g.integers(0, 2**32, size=3, dtype=np.uint32).tolist(),
        bg.random_raw(3).tolist(),
        g.random(2).tolist(),
        g.integers(0, 2**32, size=1, dtype=np.uint32).tolist(),
    ]


# --------------------------------------------------------------------------
# the fast paths are on
# --------------------------------------------------------------------------


def test_all_fast_paths_enabled() -> None:
    """The point of the module is speed: every fast path must pass its self-check here."""
    assert rawstate._CHECK_FAILURES == {}
    assert {key: FAST_PATHS.get(key) for key in ALL_KEYS} == dict.fromkeys(ALL_KEYS, True)


def test_fast_paths_are_taken() -> None:
    assert is_raw(random_get(random.Random(1)))
    assert is_raw(legacy_get(np.random.RandomState(1)))
    for cls in BITGENS:
        assert is_raw(bitgen_get(cls(1)))


def test_import_is_side_effect_free() -> None:
    """No torch import, and the self-checks leave the global generators alone."""
    path = Path(rawstate.__file__)
    code = (
        "import importlib.util, random, sys\n"
        "import numpy as np\n"
        "before = random.getstate(), np.random.get_state(legacy=False)\n"
        f"spec = importlib.util.spec_from_file_location('rawstate_alone', {str(path)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert all(mod.FAST_PATHS.values()), mod._CHECK_FAILURES\n"
        "after = random.getstate(), np.random.get_state(legacy=False)\n"
        "assert before[0] == after[0]\n"
        "assert mod._deep_equal(before[1], after[1])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------
# round trips, fast and public paths
# --------------------------------------------------------------------------

MODES = pytest.mark.parametrize("fast", [True, False], ids=["fast", "public"])


@contextlib.contextmanager
def mode(fast: bool, *keys: str) -> Iterator[None]:
    if fast:
        yield
    else:
        with fast_paths_off(*keys):
            yield


@MODES
@SETTINGS
@given(seed=seeds, plan=ops)
def test_random_round_trip(fast: bool, seed: int, plan: list[tuple[int, int]]) -> None:
    with mode(fast, "random"):
        r = random.Random(seed)
        random_ops(r, plan)
        public = r.getstate()
        snap = random_get(r)
        assert is_raw(snap) == fast
        frozen = pickle.dumps(snap)
        expected = random_draws(r)  # later draws must not affect the snapshot

        other = random.Random(0)  # cross-object copy
        random_set(other, snap)
        assert other.getstate() == public
        assert random_draws(other) == expected

        for _ in range(2):  # restoring the same snapshot twice
            random_set(r, snap)
            assert r.getstate() == public
            assert random_get(r) == snap
            assert random_draws(r) == expected
        assert pickle.dumps(snap) == frozen
        hash(snap)  # immutable all the way down


@MODES
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), plan=ops)
def test_legacy_round_trip(fast: bool, seed: int, plan: list[tuple[int, int]]) -> None:
    with mode(fast, "numpy_legacy", "bitgen:MT19937"):
        rs = np.random.RandomState(seed)
        legacy_ops(rs, plan)
        public = rs.get_state(legacy=False)
        snap = legacy_get(rs)
        assert is_raw(snap) == fast
        frozen = pickle.dumps(snap)
        expected = legacy_draws(rs)

        other = np.random.RandomState(0)
        legacy_set(other, snap)
        assert same_state(other.get_state(legacy=False), public)
        assert legacy_draws(other) == expected

        for _ in range(2):
            legacy_set(rs, snap)
            assert same_state(rs.get_state(legacy=False), public)
            assert legacy_draws(rs) == expected
        assert pickle.dumps(snap) == frozen


@MODES
@SETTINGS
@given(seed=seeds, plan=ops)
def test_random_swap_is_get_then_set(fast: bool, seed: int, plan: list[tuple[int, int]]) -> None:
    with mode(fast, "random"):
        r, source = random.Random(seed), random.Random(seed + 1)
        random_ops(source, plan)
        wanted, snap = source.getstate(), random_get(source)
        random_ops(r, plan[::-1])
        had = r.getstate()
        replaced = random_swap(r, snap)
        assert r.getstate() == wanted
        assert is_raw(replaced) == fast
        assert random_draws(r) == random_draws(source)
        random_swap(r, replaced)
        assert r.getstate() == had


@MODES
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), plan=ops)
def test_legacy_swap_is_get_then_set(fast: bool, seed: int, plan: list[tuple[int, int]]) -> None:
    with mode(fast, "numpy_legacy", "bitgen:MT19937"):
        rs, source = np.random.RandomState(seed), np.random.RandomState(seed ^ 1)
        legacy_ops(source, plan)
        wanted, snap = source.get_state(legacy=False), legacy_get(source)
        legacy_ops(rs, plan[::-1])
        had = rs.get_state(legacy=False)
        replaced = legacy_swap(rs, snap)
        assert same_state(rs.get_state(legacy=False), wanted)
        assert is_raw(replaced) == fast
        expected = legacy_draws(source)
        assert legacy_draws(rs) == expected
        legacy_swap(rs, replaced)
        assert same_state(rs.get_state(legacy=False), had)


@MODES
def test_a_swap_with_a_bad_state_changes_nothing(fast: bool) -> None:
    with mode(fast, "random", "numpy_legacy", "bitgen:MT19937"):
        r = random.Random(1)
        before = r.getstate()
        good = cast(tuple[Any, ...], random_get(random.Random(2)))
        bads: list[tuple[Any, ...]] = [("nope", b""), (), (good[0], "garbage")]
        if fast:
            bads.append((good[0], good[1][:-1], good[2]))  # a short MT19937 state
        for bad in bads:
            with pytest.raises((ValueError, TypeError)):
                random_swap(r, bad)
            assert r.getstate() == before

        rs = np.random.RandomState(1)
        l_before = rs.get_state(legacy=False)
        l_good = cast(tuple[Any, ...], legacy_get(np.random.RandomState(2)))
        bads = [("nope", b""), (), (l_good[0], "garbage")]
        if fast:
            bits = l_good[1]
            bads += [
                l_good[:2],
                (l_good[0], l_good[1], l_good[2][:-1]),  # a cache of the wrong size
                (l_good[0], bitgen_get(np.random.PCG64(1)), l_good[2]),  # another BitGenerator's
                (l_good[0], (bits[0], bits[1][:-1]), l_good[2]),  # a short MT19937 state
            ]
        for bad in bads:
            with pytest.raises((ValueError, TypeError)):
                legacy_swap(rs, bad)
            assert same_state(rs.get_state(legacy=False), l_before)


@MODES
@pytest.mark.parametrize("cls", BITGENS, ids=BITGEN_IDS)
@SETTINGS
@given(seed=seeds, plan=ops)
def test_bitgen_round_trip(
    fast: bool, cls: type[np.random.BitGenerator], seed: int, plan: list[tuple[int, int]]
) -> None:
    with mode(fast, f"bitgen:{cls.__name__}"):
        bg = cls(seed)
        bitgen_ops(bg, plan)
        public = bg.state
        snap = bitgen_get(bg)
        assert is_raw(snap) == fast
        frozen = pickle.dumps(snap)
        expected = bitgen_draws(bg)

        other = cls(0)
        bitgen_set(other, snap)
        assert same_state(other.state, public)
        assert bitgen_draws(other) == expected

        for _ in range(2):
            bitgen_set(bg, snap)
            assert same_state(bg.state, public)
            assert bitgen_draws(bg) == expected
        assert pickle.dumps(snap) == frozen


@pytest.mark.parametrize("cls", BITGENS, ids=BITGEN_IDS)
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), plan=ops)
def test_legacy_with_any_bitgen(
    cls: type[np.random.BitGenerator], seed: int, plan: list[tuple[int, int]]
) -> None:
    rs = np.random.RandomState(cls(seed))
    legacy_ops(rs, plan)
    public = rs.get_state(legacy=False)
    snap = legacy_get(rs)
    assert is_raw(snap)
    expected = legacy_draws(rs)
    other = np.random.RandomState(cls(0))
    legacy_set(other, snap)
    assert same_state(other.get_state(legacy=False), public)
    assert legacy_draws(other) == expected


@pytest.mark.parametrize("cls", BITGENS, ids=BITGEN_IDS)
def test_fast_and_public_snapshots_interchangeable(cls: type[np.random.BitGenerator]) -> None:
    """A snapshot taken on one path restores on the other (after a switch)."""
    key = f"bitgen:{cls.__name__}"
    bg = cls(7)
    bitgen_ops(bg, [(0, 1), (1, 700), (0, 3)])
    public = bg.state
    raw = bitgen_get(bg)
    with fast_paths_off(key):
        slow = bitgen_get(bg)
        assert not is_raw(slow)
        target = cls(1)
        bitgen_set(target, raw)  # raw snapshot, fast path off: converted
        assert same_state(target.state, public)
    target = cls(2)
    bitgen_set(target, slow)  # public snapshot, fast path on
    assert same_state(target.state, public)


def test_random_and_legacy_snapshots_interchangeable() -> None:
    r = random.Random(3)
    r.gauss(0.0, 1.0)
    rs = np.random.RandomState(3)
    rs.randn(5)
    r_raw, l_raw = random_get(r), legacy_get(rs)
    with fast_paths_off("random", "numpy_legacy"):
        r_slow, l_slow = random_get(r), legacy_get(rs)
        other_r, other_rs = random.Random(0), np.random.RandomState(0)
        random_set(other_r, r_raw)
        legacy_set(other_rs, l_raw)
        assert other_r.getstate() == r.getstate()
        assert same_state(other_rs.get_state(legacy=False), rs.get_state(legacy=False))
    other_r, other_rs = random.Random(0), np.random.RandomState(0)
    random_set(other_r, r_slow)
    legacy_set(other_rs, l_slow)
    assert other_r.getstate() == r.getstate()
    assert same_state(other_rs.get_state(legacy=False), rs.get_state(legacy=False))


def test_switching_back_on_restores_fast_path() -> None:
    with fast_paths_off(*ALL_KEYS):
        assert not is_raw(random_get(random.Random(1)))
        assert not is_raw(legacy_get(np.random.RandomState(1)))
        assert not is_raw(bitgen_get(np.random.PCG64(1)))
    assert is_raw(random_get(random.Random(1)))
    assert is_raw(legacy_get(np.random.RandomState(1)))
    assert is_raw(bitgen_get(np.random.PCG64(1)))


def test_monkeypatch_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAST_PATHS, "bitgen:MT19937", False)
    assert not is_raw(bitgen_get(np.random.MT19937(1)))
    monkeypatch.undo()
    assert is_raw(bitgen_get(np.random.MT19937(1)))


# --------------------------------------------------------------------------
# fallback states are immutable
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", BITGENS, ids=BITGEN_IDS)
def test_public_snapshot_is_deep_frozen(cls: type[np.random.BitGenerator]) -> None:
    bg = cls(5)
    bitgen_ops(bg, [(0, 1), (1, 33)])
    public = bg.state
    with fast_paths_off(f"bitgen:{cls.__name__}"):
        snap = bitgen_get(bg)
    frozen = pickle.dumps(snap)
    # Whatever a restore hands out is a fresh copy: scribbling on it is harmless.
    thawed = rawstate._thaw(snap[1])  # type: ignore[index]
    for value in _arrays(thawed):
        value[...] = 0
    bitgen_ops(bg, [(1, 10)])
    bitgen_set(bg, snap)
    assert same_state(bg.state, public)
    assert pickle.dumps(snap) == frozen


def _arrays(obj: object) -> Iterator[np.ndarray[Any, Any]]:
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _arrays(value)


def test_freeze_thaw_round_trip() -> None:
    value = {
        "a": np.arange(6, dtype=np.uint32).reshape(2, 3),
        "b": [1, 2.5, None, "x", (np.uint64(3), b"y")],
        "c": {"d": np.array(1.5)},
        "e": {1, 2},  # not freezable: kept as a private deep copy
    }
    frozen = rawstate._freeze(value)
    thawed = rawstate._thaw(frozen)
    assert same_state(thawed, value)
    assert thawed is not value
    assert thawed["a"] is not value["a"]  # type: ignore[index]
    assert thawed["a"].flags.writeable  # type: ignore[index]
    thawed["e"].add(3)  # type: ignore[index]
    assert rawstate._thaw(frozen)["e"] == {1, 2}  # type: ignore[index]


# --------------------------------------------------------------------------
# subclasses, module-level generators, special cases
# --------------------------------------------------------------------------


def test_random_plain_subclass_is_fast() -> None:
    class Sub(random.Random):
        def random(self) -> float:
            return super().random()

    r = Sub(4)
    r.gauss(0.0, 1.0)
    snap = random_get(r)
    assert is_raw(snap)
    other = random.Random(0)
    random_set(other, snap)
    assert other.getstate() == r.getstate()
    random_set(r, random_get(random.Random(9)))
    assert r.getstate() == random.Random(9).getstate()


def test_random_subclass_overriding_getstate_uses_public_api() -> None:
    class WithExtra(random.Random):
        extra = 0

        def getstate(self) -> Any:
            return (super().getstate(), self.extra)

        def setstate(self, state: Any) -> None:
            base, self.extra = state
            super().setstate(base)

    r = WithExtra(1)
    r.extra = 41
    snap = random_get(r)
    assert not is_raw(snap)
    expected = r.getstate()
    r.extra = 0
    r.random()
    random_set(r, snap)
    assert r.getstate() == expected
    assert r.extra == 41


def test_system_random_has_no_state() -> None:
    with pytest.raises(NotImplementedError):
        random_get(random.SystemRandom())


def test_module_level_generators() -> None:
    saved_r, saved_np = random.getstate(), np.random.get_state(legacy=False)
    try:
        random.seed(5)
        random.gauss(0.0, 1.0)
        np.random.seed(5)
        np.random.randn(3)
        r_snap = random_get(random._inst)
        l_snap = legacy_get(np.random.mtrand._rand)
        expected = (random.random(), random.gauss(0.0, 1.0), np.random.randn(3).tolist())
        random_set(random._inst, r_snap)
        legacy_set(np.random.mtrand._rand, l_snap)
        assert (random.random(), random.gauss(0.0, 1.0), np.random.randn(3).tolist()) == expected
    finally:
        random.setstate(saved_r)
        np.random.set_state(saved_np)


@pytest.mark.parametrize("cls", BITGENS, ids=BITGEN_IDS)
def test_bitgen_plain_subclass_is_fast(cls: type[np.random.BitGenerator]) -> None:
    sub_cls = type("Sub" + cls.__name__, (cls,), {})
    sub = sub_cls(3)
    bitgen_ops(sub, [(0, 1), (1, 5)])
    snap = bitgen_get(sub)
    assert is_raw(snap)
    assert snap[0] == bitgen_get(cls(1))[0]  # type: ignore[index]
    base = cls(0)
    bitgen_set(base, snap)
    assert same_state(base.state, as_state_of(sub.state, base))
    assert bitgen_draws(base) == bitgen_draws(sub)


def test_bitgen_subclass_overriding_state_uses_public_api() -> None:
    calls = []

    class Logged(np.random.PCG64):
        @property
        def state(self) -> Any:
            calls.append("get")
            return super().state

        @state.setter
        def state(self, value: Any) -> None:
            calls.append("set")
            np.random.PCG64.state.__set__(self, value)  # type: ignore[attr-defined]

    bg = Logged(2)
    bitgen_ops(bg, [(0, 1)])
    public = np.random.PCG64.state.__get__(bg)
    snap = bitgen_get(bg)
    assert not is_raw(snap)
    bitgen_ops(bg, [(1, 9)])
    bitgen_set(bg, snap)
    assert same_state(np.random.PCG64.state.__get__(bg), public)
    assert calls == ["get", "set"]
    # A raw PCG64 snapshot restores into it through its own setter.
    src = np.random.PCG64(11)
    bitgen_set(bg, bitgen_get(src))
    assert calls[-1] == "set"
    assert bitgen_draws(bg) == bitgen_draws(src)


def test_legacy_subclass() -> None:
    class Sub(np.random.RandomState):
        pass

    class Custom(np.random.RandomState):
        def get_state(self, legacy: Any = True) -> Any:
            return super().get_state(legacy=legacy)

    for cls in (Sub, Custom):
        rs = cls(6)
        rs.randn(1)
        snap = legacy_get(rs)
        assert is_raw(snap) == (cls is Sub)
        public = rs.get_state(legacy=False)
        other = np.random.RandomState(0)
        legacy_set(other, snap)
        assert same_state(other.get_state(legacy=False), public)
        rs.randn(4)
        legacy_set(rs, legacy_get(other))
        assert same_state(rs.get_state(legacy=False), public)


def test_legacy_raw_snapshot_converted_for_subclassed_bitgen() -> None:
    sub_mt = type("SubMT19937", (np.random.MT19937,), {})
    rs = np.random.RandomState(sub_mt(1))
    rs.randn(3)
    public = rs.get_state(legacy=False)
    snap = legacy_get(rs)
    assert is_raw(snap)
    with fast_paths_off("numpy_legacy"):  # restored through set_state()
        other = np.random.RandomState(sub_mt(0))
        legacy_set(other, snap)
    assert same_state(other.get_state(legacy=False), public)
    assert legacy_draws(other) == legacy_draws(rs)


# --------------------------------------------------------------------------
# misuse is rejected without touching the generator
# --------------------------------------------------------------------------


def test_mismatched_bitgen_type_rejected() -> None:
    mt = np.random.MT19937(1)
    before = mt.state
    with pytest.raises(ValueError, match="MT19937"):
        bitgen_set(mt, bitgen_get(np.random.PCG64(1)))
    assert same_state(mt.state, before)


def test_wrong_size_rejected() -> None:
    r = random.Random(1)
    before = r.getstate()
    tag, raw, gauss = cast(tuple[Any, ...], random_get(r))
    for bad in (raw[:-1], raw + b"\0"):
        with pytest.raises(ValueError, match="memoryview assignment"):
            random_set(r, (tag, bad, gauss))
    assert r.getstate() == before

    for cls in BITGENS:
        bg = cls(1)
        public = bg.state
        tag, raw = cast(tuple[Any, ...], bitgen_get(bg))
        with pytest.raises(ValueError, match="memoryview assignment"):
            bitgen_set(bg, (tag, raw[:-1]))
        with pytest.raises(ValueError, match="malformed"):
            bitgen_set(bg, (tag, raw, raw))
        assert same_state(bg.state, public)

    rs = np.random.RandomState(1)
    l_public = rs.get_state(legacy=False)
    tag, bits, cache = cast(tuple[Any, ...], legacy_get(rs))
    with pytest.raises(ValueError, match="malformed"):
        legacy_set(rs, (tag, bits, cache[:-1]))
    assert same_state(rs.get_state(legacy=False), l_public)


@pytest.mark.parametrize("bad", [("nope", b""), (), "text", ("repro_ctx:random:public",)])
def test_garbage_rejected(bad: object) -> None:
    with pytest.raises(TypeError):
        random_set(random.Random(1), bad)
    with pytest.raises(TypeError):
        legacy_set(np.random.RandomState(1), bad)
    with pytest.raises(TypeError):
        bitgen_set(np.random.PCG64(1), bad)


def test_switchboard_guards() -> None:
    with pytest.raises(ValueError, match="self-check"):
        FAST_PATHS["no-such-path"] = True
    with pytest.raises(TypeError):
        FAST_PATHS.update(random=False)
    FAST_PATHS["no-such-path"] = False  # switching off is always allowed
    del FAST_PATHS["no-such-path"]


# --------------------------------------------------------------------------
# the self-checks reject wrong layouts before writing anything
# --------------------------------------------------------------------------


def test_self_check_rejects_region_outside_object() -> None:
    # MT19937's 2500-byte layout claimed for a 160-byte PCG64 object.
    kind = rawstate._Kind(
        np.random.PCG64, (), ((-1, 0, 2500),), rawstate._decode_mt19937, rawstate._norm_mt19937
    )
    with pytest.raises(rawstate._CheckFailed, match="outside the object"):
        rawstate._check_bitgen(kind)


def _decode_buffered(mem: bytes, off: int, targets: tuple[int, ...]) -> object:
    return (rawstate._i32(mem, off + 8), rawstate._u32(mem, off + 12))


def _norm_buffered(state: Mapping[str, Any]) -> object:
    return (state["has_uint32"], state["uinteger"])


def test_self_check_rejects_copying_a_pointer() -> None:
    # PCG64's 16-byte state struct copied whole, its pcg_state pointer included:
    # the decoded fields match, but the bytes differ between objects.
    kind = rawstate._Kind(np.random.PCG64, (), ((-1, 0, 16),), _decode_buffered, _norm_buffered)
    with pytest.raises(rawstate._CheckFailed, match="object-specific"):
        rawstate._check_bitgen(kind)
    # Declared as a pointer, it may not be copied either.
    kind = rawstate._Kind(np.random.PCG64, (0,), ((-1, 0, 16),), _decode_buffered, _norm_buffered)
    with pytest.raises(rawstate._CheckFailed, match="overlaps a pointer"):
        rawstate._check_bitgen(kind)


def test_self_check_rejects_missing_state() -> None:
    # Only the buffered value of PCG64, not the 128-bit state it points to.
    kind = rawstate._Kind(np.random.PCG64, (), ((-1, 8, 8),), _decode_buffered, _norm_buffered)
    with pytest.raises(rawstate._CheckFailed, match="outside the copied region"):
        rawstate._check_bitgen(kind)


def test_failed_self_check_disables_path() -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    try:
        rawstate._run_check("test:broken", broken)
        assert FAST_PATHS["test:broken"] is False
        assert "boom" in rawstate._CHECK_FAILURES["test:broken"]
        with pytest.raises(ValueError, match="self-check"):
            FAST_PATHS["test:broken"] = True
    finally:
        del FAST_PATHS["test:broken"]
        del rawstate._VALIDATED["test:broken"]
        del rawstate._CHECK_FAILURES["test:broken"]
