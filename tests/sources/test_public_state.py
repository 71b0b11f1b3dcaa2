"""State through public APIs only: the edges issue #11 found broken, each from its reproducer."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from repro_ctx import RNGState, capture, deterministic, register, unregister
from repro_ctx.sources import numpy_access as access
from tests.waits import HANG_TIMEOUT

NUMPY_2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


@pytest.fixture
def pcg_global() -> Iterator[np.random.PCG64]:
    """The global RandomState backed by PCG64 for one test, MT19937 again after it."""
    original = np.random.get_bit_generator()
    state = np.random.get_state(legacy=False)
    bitgen = np.random.PCG64(1234)
    np.random.set_bit_generator(bitgen)
    try:
        yield bitgen
    finally:
        np.random.set_bit_generator(original)
        np.random.set_state(state)


def global_state() -> tuple[Any, dict[str, Any]]:
    return np.random.get_bit_generator(), access.listed(np.random.get_state(legacy=False))


# -- no memory by address -----------------------------------------------------------


class Impostor:
    """Claims to be a RandomState through ``__class__``, as the crash reproducer did."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return np.random.RandomState


def test_an_object_that_claims_a_generator_type_is_refused_cleanly() -> None:
    impostor = Impostor()
    assert isinstance(impostor, np.random.RandomState)  # what fooled the old fast path
    with pytest.raises(TypeError, match="cannot scope a Impostor object; expected"):
        deterministic(0, generators=[impostor])
    with pytest.raises(TypeError, match="cannot scope a Impostor object"):
        register(impostor)


def test_the_package_has_no_ctypes_and_no_raw_state_module() -> None:
    import pathlib

    import repro_ctx

    package = pathlib.Path(repro_ctx.__file__).parent
    for path in package.glob("*.py"):
        assert "ctypes" not in path.read_text(), path.name
    assert not (package / "_rawstate.py").exists()


# -- another bit generator behind the global state ----------------------------------


def test_a_scope_works_on_a_pcg64_global_state(pcg_global: np.random.PCG64) -> None:
    np.random.random(3)
    before = global_state()
    with deterministic(seed=7):
        inside = np.random.random(4)
        assert np.random.get_bit_generator() is pcg_global
    after = global_state()
    assert after[0] is before[0]
    assert after[1] == before[1]
    # documented seeding: the state PCG64(seed) starts in
    expected = np.random.RandomState(np.random.PCG64(7)).random(4)
    np.testing.assert_array_equal(inside, expected)


def test_the_cached_gaussian_of_a_pcg64_global_state_survives(pcg_global: np.random.PCG64) -> None:
    np.random.standard_normal()  # leaves one Gaussian cached
    before = global_state()
    assert before[1]["has_gauss"] == 1
    with deterministic(seed=0):
        np.random.standard_normal(3)
    assert global_state() == before


def test_a_bit_generator_set_inside_a_scope_is_undone() -> None:
    original = np.random.get_bit_generator()
    before = global_state()
    with deterministic(seed=0):
        np.random.set_bit_generator(np.random.PCG64(5))
        np.random.random()
    after = global_state()
    assert after[0] is original
    assert after[1] == before[1]


def test_set_bit_generator_in_a_generator_function_is_swapped_with_it() -> None:
    from repro_ctx import reproducible

    original = np.random.get_bit_generator()

    @reproducible(seed=1)
    def gen() -> Iterator[float]:
        np.random.set_bit_generator(np.random.PCG64(9))
        yield float(np.random.random())
        yield float(np.random.random())

    it = gen()
    first = next(it)
    assert np.random.get_bit_generator() is original  # the caller's object, between steps
    second = next(it)
    assert (first, second) == tuple(np.random.RandomState(np.random.PCG64(9)).random(2))
    it.close()
    assert np.random.get_bit_generator() is original


# -- SeedSequence spawn counters -----------------------------------------------------


needs_numpy_2 = pytest.mark.skipif(
    not NUMPY_2, reason="NumPy < 2.0 cannot replace a BitGenerator's SeedSequence publicly"
)


def _child_words(generator: np.random.Generator) -> list[int]:
    (child,) = generator.spawn(1)
    return [int(x) for x in child.bit_generator.random_raw(3)]


@needs_numpy_2
@pytest.mark.parametrize("how", ["registered", "passed"])
def test_spawned_children_repeat_from_scope_to_scope(how: str) -> None:
    g = np.random.default_rng(11)
    if how == "registered":
        register(g)
        scope = deterministic(seed=3)
    else:
        scope = deterministic(seed=3, generators=[g])
    try:
        with scope:
            first = _child_words(g)
        with scope:
            second = _child_words(g)
    finally:
        if how == "registered":
            unregister(g)
    assert first == second


@needs_numpy_2
def test_the_spawn_counter_comes_back_after_a_scope() -> None:
    g = np.random.default_rng(11)
    untouched = np.random.default_rng(11)
    with deterministic(seed=3, generators=[g]):
        g.spawn(2)
    assert g.bit_generator.seed_seq.n_children_spawned == 0
    assert _child_words(g) == _child_words(untouched)


@needs_numpy_2
def test_the_spawn_counter_comes_back_when_the_scope_does_not_reseed() -> None:
    g = np.random.default_rng(11)
    g.spawn(1)
    with deterministic(seed=None, generators=[g]):
        g.spawn(3)
    assert g.bit_generator.seed_seq.n_children_spawned == 1


# -- random.Random subclasses with their own state format ------------------------------


class Tagged(random.Random):
    """A subclass whose getstate carries extra fields, as some libraries' do."""

    def __init__(self, x: int | None = None) -> None:
        self.draws = 0
        super().__init__(x)

    def random(self) -> float:
        self.draws += 1
        return super().random()

    def getstate(self) -> tuple[Any, ...]:
        return ("tagged", self.draws, super().getstate())

    def setstate(self, state: tuple[Any, ...]) -> None:
        tag, draws, inner = state
        if tag != "tagged":
            raise ValueError("not a Tagged state")
        self.draws = draws
        super().setstate(inner)


def test_a_random_subclass_round_trips_through_its_own_state() -> None:
    g = Tagged(5)
    g.random()
    before = g.getstate()
    with deterministic(seed=2, generators=[g]):
        a = [g.random() for _ in range(3)]
    assert g.getstate() == before
    with deterministic(seed=2, generators=[g]):
        assert [g.random() for _ in range(3)] == a


def test_a_random_subclass_state_goes_through_a_state_dict(tmp_path: Any) -> None:
    g = Tagged(5)
    register(g)
    try:
        g.random()
        saved = capture()
        path = tmp_path / "rng.pt"
        torch.save(saved.state_dict(), path)
        expected = [g.random() for _ in range(3)]
        RNGState.from_state_dict(torch.load(path, weights_only=True)).restore(strict=False)
        assert [g.random() for _ in range(3)] == expected
        assert g.draws == 4
    finally:
        unregister(g)


# -- locks ---------------------------------------------------------------------------------


def _entry_waits_for(lock: Any, scope: deterministic) -> None:
    """A scope opened in another thread waits while ``lock`` is held here, and opens after."""
    entered = threading.Event()

    def open_scope() -> None:
        with scope:
            entered.set()

    lock.acquire()
    worker = threading.Thread(target=open_scope)
    try:
        worker.start()
        assert not entered.wait(0.3), "the scope touched the state while its lock was held"
    finally:
        lock.release()
    worker.join(HANG_TIMEOUT)
    assert entered.is_set()


def test_a_registered_generators_lock_delays_scope_entry() -> None:
    g = np.random.default_rng(1)
    register(g)
    try:
        _entry_waits_for(g.bit_generator.lock, deterministic(seed=0))
    finally:
        unregister(g)


def test_the_global_random_states_lock_delays_scope_entry() -> None:
    _entry_waits_for(np.random.get_bit_generator().lock, deterministic(seed=0))


def test_a_passed_random_states_lock_delays_scope_entry() -> None:
    rs = np.random.RandomState(3)
    lock = access.bit_generator_of(rs).lock
    _entry_waits_for(lock, deterministic(seed=0, generators=[rs]))


def _held(lock: Any) -> bool:
    """Whether some thread holds ``lock`` (a Lock or an RLock): another thread cannot take it."""
    free: list[bool] = []

    def probe() -> None:
        free.append(lock.acquire(blocking=False))
        if free[0]:
            lock.release()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return not free[0]


class _LockCheckedMT19937(np.random.MT19937):
    """Records, at every state read and write, whether the generator's lock was held."""

    seen: ClassVar[list[tuple[str, bool]]] = []

    @property  # type: ignore[override]
    def state(self) -> dict[str, Any]:
        type(self).seen.append(("get", _held(self.lock)))
        return np.random.MT19937.state.__get__(self)  # type: ignore[attr-defined,no-any-return]

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        type(self).seen.append(("set", _held(self.lock)))
        np.random.MT19937.state.__set__(self, value)  # type: ignore[attr-defined]


@pytest.mark.skipif(access.BITGEN_ACCESSORS_LOCK, reason="NumPy's accessors lock themselves")
@pytest.mark.parametrize("how", ["registered", "passed"])
def test_every_state_read_and_write_holds_the_lock(how: str) -> None:
    """Not only entry: the seeding write and the restoring write hold the lock too."""
    g = np.random.Generator(_LockCheckedMT19937(7))
    scope = deterministic(seed=0, generators=[g] if how == "passed" else [])
    if how == "registered":
        register(g)
    try:
        _LockCheckedMT19937.seen.clear()
        with scope:
            g.random()
    finally:
        if how == "registered":
            unregister(g)
    assert [kind for kind, _held in _LockCheckedMT19937.seen].count("set") >= 2
    assert ("get", True) in _LockCheckedMT19937.seen
    assert all(held for _kind, held in _LockCheckedMT19937.seen), _LockCheckedMT19937.seen


def _draws_concurrently(draw: Callable[[], object], stop: threading.Event) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            draw()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_writes_never_tear_a_state_that_another_thread_draws_from() -> None:
    """Inside a scope, a registered generator's state is its seeded state or that state
    advanced by whole fills of the other thread: never a mix of old and new."""
    fill = 2000
    g = np.random.Generator(np.random.MT19937(0))
    register(g)
    try:
        with deterministic(seed=1):
            seeded = g.bit_generator.state
        probe = np.random.Generator(np.random.MT19937())
        probe.bit_generator.state = seeded
        def key(state: dict[str, Any]) -> tuple[int, tuple[int, ...]]:
            inner = access.listed(state)["state"]
            return inner["pos"], tuple(inner["key"])

        continuations = {key(probe.bit_generator.state)}
        for _ in range(3000):  # more whole fills than can happen while a scope opens
            probe.random(fill)
            continuations.add(key(probe.bit_generator.state))
        stop = threading.Event()
        drawer = _draws_concurrently(lambda: g.random(fill), stop)
        try:
            for _ in range(100):
                with deterministic(seed=1):
                    state = key(access.bitgen_get(g.bit_generator))
                assert state in continuations
        finally:
            stop.set()
            drawer.join()
    finally:
        unregister(g)


# -- a Hypothesis model: draws, scopes and set_bit_generator interleaved ------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("draw"), st.integers(1, 5)),
        st.tuples(st.just("normal"), st.integers(1, 3)),
        st.tuples(st.just("bitgen"), st.sampled_from(["PCG64", "MT19937", "Philox"])),
        st.tuples(st.just("scope"), st.integers(0, 3)),
    ),
    max_size=12,
)


def _run(actions: list[tuple[str, int | str]], depth: int = 0) -> list[float]:
    out: list[float] = []
    for index, (kind, arg) in enumerate(actions):
        if kind == "draw":
            out.extend(np.random.random(int(arg)).tolist())
        elif kind == "normal":
            out.extend(np.random.standard_normal(int(arg)).tolist())
        elif kind == "bitgen":
            np.random.set_bit_generator(getattr(np.random, str(arg))(index))
        elif depth < 2:
            before = global_state()
            with deterministic(seed=int(arg)):
                out.extend(_run(actions[index + 1 :], depth + 1))
            after = global_state()
            assert after[0] is before[0]
            assert after[1] == before[1]
    return out


@settings(max_examples=60, deadline=None)
@given(_ACTIONS)
def test_interleaved_draws_scopes_and_bit_generators(actions: list[tuple[str, Any]]) -> None:
    original = global_state()
    try:
        first = _run(actions)
        np.random.set_bit_generator(original[0])
        np.random.set_state(original[1])
        assert _run(actions) == first  # nothing outside the model leaks between runs
    finally:
        np.random.set_bit_generator(original[0])
        np.random.set_state(original[1])


def test_a_reused_key_list_never_stands_for_another_key() -> None:
    """The global source reuses the last key's list when the key's bytes match: draws that
    regenerate the key (every 624 words) or only move the position must still come back."""
    scope = deterministic(seed=0)
    for outside_draws in (0, 1, 5, 700, 2000, 3):
        np.random.random(outside_draws)
        before = global_state()
        with scope:
            np.random.random(800)  # regenerates the key inside the scope too
        assert global_state() == before
    data = capture().state_dict()["sources"]["numpy.random (global)"]["state"]
    data["state"]["key"][0] ^= 1  # a state_dict is a private copy: the cached list stays intact
    before = global_state()
    with scope:
        pass
    assert global_state() == before
