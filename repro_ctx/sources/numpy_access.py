"""NumPy generator state through NumPy's public API, under each generator's own lock.

NumPy guards a generator's state with ``bit_generator.lock``: every draw
holds it. A state read or written without it can interleave with a draw in
another thread and tear: half the old state, half the new. Newer NumPy
releases take the lock inside the public accessors themselves, older ones do
not, and up to 2.2 at least the lock is a ``threading.Lock`` (not
reentrant; 2.4 uses an ``RLock``), so taking it around a call that takes it
too would deadlock there. Which accessors lock by themselves is therefore
decided once, from NumPy's version (and pinned by
``tests/sources/test_numpy_facts.py``, which watches each accessor block on a held
lock):

* ``RandomState.get_state`` / ``set_state``: from NumPy 2.4;
* ``BitGenerator.state`` (get and set, so also ``__setstate__``): from 2.5;
* ``RandomState.seed`` and ``set_bit_generator``: ``seed`` in every supported
  release, ``set_bit_generator`` (the outgoing generator's lock) from 2.4.

Everything else is speed within the public API: the MT19937 key is kept as a
Python list, because ``set_state`` copies a list in about 4 us and an ndarray
element by element in about 60 us.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Final

import numpy as np

_VERSION: Final = np.lib.NumpyVersion(np.__version__)

LEGACY_ACCESSORS_LOCK: Final = _VERSION >= "2.4.0"
"""``RandomState.get_state``/``set_state`` (and ``np.random.*``'s) take the lock themselves."""
BITGEN_ACCESSORS_LOCK: Final = _VERSION >= "2.5.0"
"""``BitGenerator.state`` (get, set, ``__setstate__``) takes the lock itself."""
SET_BIT_GENERATOR_LOCKS: Final = _VERSION >= "2.4.0"
"""``np.random.set_bit_generator`` takes the outgoing generator's lock itself."""
SEED_SEQUENCE_RESTORABLE: Final = _VERSION >= "2.0.0"
"""``BitGenerator.__setstate__`` takes ``(state, seed_seq)``: the spawn counter is restorable."""

_NO_LOCK: Final = contextlib.nullcontext()

# public since NumPy 1.25, absent from its type stubs
_get_bit_generator: Callable[[], Any] = np.random.get_bit_generator  # type: ignore[attr-defined]
_set_bit_generator: Callable[[Any], None] = np.random.set_bit_generator  # type: ignore[attr-defined]


def listed(value: Any) -> Any:
    """A NumPy public state with every ndarray as a list (NumPy scalars as Python numbers)."""
    if isinstance(value, dict):
        return {key: listed(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


_keys: list[tuple[bytes, list[int]]] = [(b"", []), (b"", [])]
"""The last two MT19937 keys converted, as bytes and as the list made from them, newest first."""


def settable(state: dict[str, Any]) -> dict[str, Any]:
    """A fresh state from a getter, made cheap to set again (in place): MT19937's key as a list.

    MT19937 draws from a key it regenerates only every 624 words, so a key
    read again is most often one read lately: the caller's or the scope's (a
    scope per training step reads one; a generator step swaps two, the
    caller's and its own). Such a key's list, which nothing ever mutates, is
    reused when the bytes match. Other bit generators' states are a few ints
    or small arrays, kept as they are.
    """
    if state["bit_generator"] == "MT19937":
        inner = state["state"]
        raw = inner["key"].tobytes()
        keys = _keys
        newest = keys[0]
        if raw == newest[0]:
            inner["key"] = newest[1]
            return state
        older = keys[1]
        if raw == older[0]:
            inner["key"] = older[1]
        else:
            older = (raw, inner["key"].tolist())
            inner["key"] = older[1]
        keys[0], keys[1] = older, newest
    return state


def legacy_lock(bit_generator: Any) -> contextlib.AbstractContextManager[Any]:
    """What to hold around a ``RandomState`` state accessor backed by ``bit_generator``."""
    return _NO_LOCK if LEGACY_ACCESSORS_LOCK else bit_generator.lock


def bitgen_lock(bit_generator: Any) -> contextlib.AbstractContextManager[Any]:
    """What to hold around ``bit_generator.state`` and ``__setstate__``."""
    return _NO_LOCK if BITGEN_ACCESSORS_LOCK else bit_generator.lock


# -- the global RandomState (np.random.rand, np.random.seed, ...) -------------------


def global_bit_generator() -> Any:
    return _get_bit_generator()


def _global_get_locked() -> dict[str, Any]:
    with _get_bit_generator().lock:
        return settable(np.random.get_state(legacy=False))


def _global_get_self_locking() -> dict[str, Any]:
    return settable(np.random.get_state(legacy=False))


def _global_set_locked(state: dict[str, Any]) -> None:
    with _get_bit_generator().lock:
        np.random.set_state(state)


def _global_set_self_locking(state: dict[str, Any]) -> None:
    np.random.set_state(state)


# chosen once, like the lock table: no per-call branch or null context
global_get: Final = _global_get_self_locking if LEGACY_ACCESSORS_LOCK else _global_get_locked
"""``np.random.get_state(legacy=False)``, cached Gaussian included, keys as lists."""
global_set: Final = _global_set_self_locking if LEGACY_ACCESSORS_LOCK else _global_set_locked
"""``np.random.set_state(state)`` under the global bit generator's lock."""


def global_use(bit_generator: Any) -> None:
    """``np.random.set_bit_generator``, with the outgoing generator's lock held."""
    if SET_BIT_GENERATOR_LOCKS:
        _set_bit_generator(bit_generator)
        return
    with _get_bit_generator().lock:
        _set_bit_generator(bit_generator)


# -- a RandomState object --------------------------------------------------------


def legacy_get(rs: Any, bit_generator: Any) -> dict[str, Any]:
    """``rs.get_state(legacy=False)``, arrays as lists, under ``bit_generator``'s lock."""
    with legacy_lock(bit_generator):
        return settable(rs.get_state(legacy=False))


def legacy_set(rs: Any, bit_generator: Any, state: dict[str, Any]) -> None:
    with legacy_lock(bit_generator):
        rs.set_state(state)


def bit_generator_of(rs: Any) -> Any:
    """The BitGenerator behind a RandomState: its lock guards the RandomState's state.

    NumPy >= 2.0 hands it out through the pickle protocol (``__reduce__``).
    Older releases pickle only its name and offer no public accessor, so there
    the attribute that holds it is read: the one place a private name is used,
    to hold the lock NumPy itself holds while it draws.
    """
    if SEED_SEQUENCE_RESTORABLE:  # NumPy >= 2.0
        return rs.__reduce__()[1][0]
    return rs._bit_generator


# -- a BitGenerator (alone or behind a Generator) ----------------------------------


def seed_sequence(bit_generator: Any) -> tuple[Any, int | None]:
    """The generator's SeedSequence and its spawn counter (``None`` if it has none)."""
    seq = bit_generator.seed_seq
    return seq, getattr(seq, "n_children_spawned", None)


def _bitgen_get_locked(bit_generator: Any) -> dict[str, Any]:
    with bit_generator.lock:
        state: dict[str, Any] = bit_generator.state
    if state["bit_generator"] == "MT19937":
        return settable(state)
    return state


def _bitgen_get_self_locking(bit_generator: Any) -> dict[str, Any]:
    state: dict[str, Any] = bit_generator.state
    if state["bit_generator"] == "MT19937":
        return settable(state)
    return state


bitgen_get: Final = _bitgen_get_self_locking if BITGEN_ACCESSORS_LOCK else _bitgen_get_locked
"""``bit_generator.state``, fresh and cheap to set again, read under its lock."""


def respawned(seq: Any, spawned: int) -> Any:
    """A copy of ``seq`` whose spawn counter reads ``spawned``."""
    return np.random.SeedSequence(
        seq.entropy, spawn_key=seq.spawn_key, pool_size=seq.pool_size, n_children_spawned=spawned
    )


def bitgen_set(bit_generator: Any, state: dict[str, Any]) -> None:
    """``bit_generator.state = state`` under its lock: the state alone, without its SeedSequence.

    What NumPy < 2.0 offers. From 2.0 the registry and the generator adapter
    write ``__setstate__((state, seed_seq))`` themselves, in one loop over
    many generators, holding the lock when ``BITGEN_ACCESSORS_LOCK`` says to.
    """
    with bitgen_lock(bit_generator):
        bit_generator.state = state
