"""Pin the NumPy facts the public state access depends on (see repro_ctx/_numpy_state.py).

Which accessors take the generator's lock themselves changes between NumPy
releases, and the lock is not reentrant up to NumPy 2.2 at least: if the
table in ``repro_ctx/sources/numpy_access.py`` disagrees with the installed NumPy, a scope either
tears states or deadlocks.
Each accessor is called in a thread while the lock is held here: it blocks
exactly when it takes the lock itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from repro_ctx.sources import numpy_access as access
from tests.waits import HANG_TIMEOUT


def _takes_the_lock(lock: threading.Lock, call: Callable[[], object], *, table: bool) -> bool:
    """Whether ``call``, run in a thread while ``lock`` is held here, waits for the lock.

    ``table`` is what the table says. A call the table says waits gets 0.3 s
    to finish anyway: one that finishes did not wait, whatever the machine's
    load. A call the table says does not wait must finish while the lock is
    held, however long a loaded machine takes (a hang only ends the test).
    """
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    with lock:
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        blocked = not done.wait(0.3 if table else HANG_TIMEOUT)
    worker.join(HANG_TIMEOUT)
    assert done.is_set()
    return blocked


def test_legacy_accessors_lock_as_the_table_says() -> None:
    bitgen = np.random.get_bit_generator()
    state = np.random.get_state(legacy=False)
    table = access.LEGACY_ACCESSORS_LOCK
    assert _takes_the_lock(bitgen.lock, lambda: np.random.get_state(legacy=False),
                           table=table) is table
    assert _takes_the_lock(bitgen.lock, lambda: np.random.set_state(state), table=table) is table


def test_np_random_seed_takes_the_lock_itself() -> None:
    """The global source seeds MT19937 with ``np.random.seed`` and holds no lock around it."""
    state = np.random.get_state(legacy=False)
    try:
        assert _takes_the_lock(np.random.get_bit_generator().lock, lambda: np.random.seed(1),
                               table=True)
    finally:
        np.random.set_state(state)


def test_set_bit_generator_locks_as_the_table_says() -> None:
    bitgen = np.random.get_bit_generator()
    table = access.SET_BIT_GENERATOR_LOCKS
    assert _takes_the_lock(bitgen.lock, lambda: np.random.set_bit_generator(bitgen),
                           table=table) is table


@pytest.mark.parametrize("bitgen_type", [np.random.PCG64, np.random.MT19937, np.random.Philox])
def test_bit_generator_state_locks_as_the_table_says(bitgen_type: type) -> None:
    bitgen = bitgen_type(1)
    state = bitgen.state
    table = access.BITGEN_ACCESSORS_LOCK
    assert _takes_the_lock(bitgen.lock, lambda: bitgen.state, table=table) is table
    assert _takes_the_lock(bitgen.lock, lambda: setattr(bitgen, "state", state),
                           table=table) is table


def test_the_seed_sequence_is_restorable_as_the_table_says() -> None:
    bitgen = np.random.PCG64(1)
    restorable = isinstance(bitgen.__getstate__(), tuple)
    assert restorable is access.SEED_SEQUENCE_RESTORABLE
    if restorable:
        seq = np.random.SeedSequence(5, n_children_spawned=3)
        bitgen.__setstate__((bitgen.state, seq))
        assert bitgen.seed_seq is seq


def test_spawning_advances_a_counter_outside_the_bit_generator_state() -> None:
    g = np.random.default_rng(0)
    state = g.bit_generator.state
    g.spawn(2)
    assert g.bit_generator.state == state
    assert g.bit_generator.seed_seq.n_children_spawned == 2


def test_set_state_copies_a_list_key_and_an_array_key_alike() -> None:
    """The global source keeps MT19937 keys as lists (the fast path of the setter)."""
    rs = np.random.RandomState(3)
    state = rs.get_state(legacy=False)
    listed = access.settable(rs.get_state(legacy=False))
    assert isinstance(listed["state"]["key"], list)
    rs.random(10)
    rs.set_state(listed)
    np.testing.assert_array_equal(rs.get_state(legacy=False)["state"]["key"], state["state"]["key"])


def test_set_bit_generator_clears_the_cached_gaussian() -> None:
    """Why a restore that swaps the bit generator back also writes the state."""
    original = np.random.get_bit_generator()
    state = np.random.get_state(legacy=False)
    try:
        np.random.standard_normal()
        assert np.random.get_state(legacy=False)["has_gauss"] == 1
        np.random.set_bit_generator(original)
        assert np.random.get_state(legacy=False)["has_gauss"] == 0
    finally:
        np.random.set_state(state)
