"""Adapters for NumPy's generator objects: Generator, BitGenerator and RandomState.

Imported at the first NumPy object a scope is handed, never by ``import repro_ctx``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from ..core.plain import Plain, round_trip
from . import numpy_access as access
from .generator_adapter import Adapter, sequence
from .numpy_global import check_numpy_dict

_new_tuple = tuple.__new__
_TAKE_LOCK = not access.BITGEN_ACCESSORS_LOCK
_WITH_SEQUENCE = access.SEED_SEQUENCE_RESTORABLE


class BitGenSnapshot(NamedTuple):
    """A bit generator's public state and SeedSequence, and the sequence's spawn counter."""

    pair: tuple[dict[str, Any], Any]
    """``(state, seed_seq)``: what ``__getstate__`` returns and ``__setstate__`` takes (NumPy 2)."""
    spawned: int | None

    @property
    def state(self) -> dict[str, Any]:
        return self.pair[0]


@lru_cache(maxsize=256)
def _seeded_bitgen(bitgen_type: Any, seed: int, key: tuple[int, ...]) -> BitGenSnapshot:
    seq = sequence(seed, key)
    return BitGenSnapshot((access.bitgen_get(bitgen_type(seq)), seq), 0)


class _BitGenAdapter(Adapter):
    """A BitGenerator, alone or behind a Generator (``bit_generator`` picks it)."""

    def __init__(self, kind: str, behind_generator: bool) -> None:
        self.kind = kind
        self._behind = behind_generator

    def _bitgen(self, obj: Any) -> Any:
        return obj.bit_generator if self._behind else obj

    def type_name(self, obj: Any, info: Any) -> str:
        return type(self._bitgen(obj)).__name__

    def get(self, obj: Any, info: Any) -> object:
        return self.get_many((obj,), (info,))[0]

    def set(self, obj: Any, info: Any, snapshot: BitGenSnapshot) -> None:
        self.set_many((obj,), (info,), (snapshot,))

    # One loop over many generators (a scope's registered ones): NumPy's
    # accessors and the lock are most of what is left per generator. The
    # lock (when _numpy_state's table says NumPy does not take it) is taken
    # with acquire/release, half the cost of a with block.

    def get_many(self, objs: Sequence[Any], infos: Sequence[Any]) -> list[object]:
        out: list[object] = []
        append, behind, lock = out.append, self._behind, _TAKE_LOCK
        for obj in objs:
            bitgen = obj.bit_generator if behind else obj
            if lock:
                held = bitgen.lock
                held.acquire()
                try:
                    pair = bitgen.__getstate__()
                finally:
                    held.release()
            else:
                pair = bitgen.__getstate__()
            if not _WITH_SEQUENCE:  # NumPy < 2.0 pickles the state alone
                pair = (pair, bitgen.seed_seq)
            if pair[0]["bit_generator"] == "MT19937":
                access.settable(pair[0])  # in place: the key as a list
            # tuple.__new__: half the cost of the NamedTuple's own __new__
            append(_new_tuple(BitGenSnapshot, (
                pair, getattr(pair[1], "n_children_spawned", None))))
        return out

    def set_many(self, objs: Sequence[Any], infos: Sequence[Any], states: Sequence[Any]) -> None:
        behind, lock = self._behind, _TAKE_LOCK
        for obj, (pair, spawned) in zip(objs, states):
            if spawned is not None and pair[1].n_children_spawned != spawned:
                pair = (pair[0], access.respawned(pair[1], spawned))
            bitgen = obj.bit_generator if behind else obj
            if not _WITH_SEQUENCE:  # NumPy < 2.0: no spawn counter to restore
                access.bitgen_set(bitgen, pair[0])
            elif lock:
                held = bitgen.lock
                held.acquire()
                try:
                    bitgen.__setstate__(pair)
                finally:
                    held.release()
            else:
                bitgen.__setstate__(pair)

    def seeded(self, obj: Any, info: Any, seed: int, key: tuple[int, ...]) -> BitGenSnapshot:
        bitgen_type: Any = type(self._bitgen(obj))
        return _seeded_bitgen(bitgen_type, seed, key)

    def to_plain(self, obj: Any, info: Any, snapshot: BitGenSnapshot) -> Plain:
        return access.listed(snapshot.state)

    def check(self, data: Plain, where: str) -> None:
        check_numpy_dict(data, where)

    def from_plain(self, obj: Any, info: Any, data: Plain) -> BitGenSnapshot:
        bitgen = self._bitgen(obj)
        scratch = copy.deepcopy(bitgen)
        round_trip(lambda d: setattr(scratch, "state", d),
                   lambda: access.listed(scratch.state), data, "state")
        # a checkpoint holds the stream, not the spawn history: keep the live SeedSequence
        seq, spawned = access.seed_sequence(bitgen)
        return BitGenSnapshot((data, seq), spawned)


@lru_cache(maxsize=256)
def _seeded_legacy(bitgen_type: Any, seed: int, key: tuple[int, ...]) -> dict[str, Any]:
    rs = np.random.RandomState(bitgen_type(sequence(seed, key)))
    state: dict[str, Any] = access.listed(rs.get_state(legacy=False))
    return state


class _RandomStateAdapter(Adapter):
    kind = "numpy.random.RandomState"

    def prepare(self, obj: Any) -> Any:
        """Its bit generator: the lock to hold, and the type seeded states are built with."""
        return access.bit_generator_of(obj)

    def type_name(self, obj: Any, info: Any) -> str:
        return type(info).__name__

    def get(self, obj: Any, info: Any) -> object:
        return access.legacy_get(obj, info)

    def set(self, obj: Any, info: Any, snapshot: Any) -> None:
        access.legacy_set(obj, info, snapshot)

    def seeded(self, obj: Any, info: Any, seed: int, key: tuple[int, ...]) -> object:
        bitgen_type: Any = type(info)
        return _seeded_legacy(bitgen_type, seed, key)

    def to_plain(self, obj: Any, info: Any, snapshot: Any) -> Plain:
        return access.listed(snapshot)

    def check(self, data: Plain, where: str) -> None:
        check_numpy_dict(data, where)

    def from_plain(self, obj: Any, info: Any, data: Plain) -> object:
        scratch = copy.deepcopy(obj)
        round_trip(scratch.set_state, lambda: access.listed(scratch.get_state(legacy=False)),
                   data, "state")
        return data




def numpy_adapters() -> tuple[Adapter, ...]:
    return (
        _BitGenAdapter("numpy.random.Generator", behind_generator=True),
        _BitGenAdapter("numpy.random.BitGenerator", behind_generator=False),
        _RandomStateAdapter(),
    )
