"""NumPy's legacy global state (``np.random.seed``, ``np.random.rand``...).

The global ``RandomState`` is backed by MT19937 unless the program called
``np.random.set_bit_generator``, so a snapshot holds the bit generator
*object* as well as its state: a scope that swaps the bit generator gets the
program's own object back, in its exact state, cached Gaussian included.

Seeding: with MT19937, ``np.random.seed(seed)`` exactly (seeds >= 2**32 as
``numpy_legacy_seed`` documents). With any other bit generator (``PCG64``,
``Philox``...), whose state ``np.random.seed`` refuses to reseed, the state
``type(bit_generator)(seed)`` starts in (NumPy's ``SeedSequence(seed)``), with
the cached Gaussian cleared.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Final, NamedTuple

import numpy as np

from ..core.plain import Malformed, Plain, Resolved, check_plain, expect, field, round_trip
from ..core.seed import numpy_legacy_seed
from ..core.source import Plan, undo
from . import numpy_access as access

_MT_WORDS: Final = 624


class GlobalSnapshot(NamedTuple):
    bit_generator: Any
    """The object ``np.random.get_bit_generator()`` returned."""
    state: dict[str, Any]
    """``np.random.get_state(legacy=False)``, arrays as lists."""


@lru_cache(maxsize=64)
def _seeded_other(bitgen_type: Any, seed: int) -> dict[str, Any]:
    """The global state for a non-MT19937 bit generator of ``bitgen_type`` seeded with ``seed``."""
    state = access.bitgen_get(bitgen_type(seed))
    return {**state, "has_gauss": 0, "gauss": 0.0}


def check_numpy_dict(data: object, where: str) -> Plain:
    """The shape every NumPy public state dict shares (the bit generator names its state)."""
    out = check_plain(data, where)
    expect(out, dict, where, "a NumPy state dict")
    expect(field(out, "bit_generator", where), str, f"{where}.bit_generator", "a str")
    state = expect(field(out, "state", where), dict, f"{where}.state", "a dict")
    if out["bit_generator"] == "MT19937":
        # NumPy's setter does not check the position, and MT19937 reads its key at it
        pos = field(state, "pos", f"{where}.state")
        if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos <= _MT_WORDS:
            raise Malformed(f"{where}.state.pos must be an int in [0, {_MT_WORDS}], got {pos!r}")
    return out


def bit_generator_class(name: str, where: str) -> type[np.random.BitGenerator]:
    cls = getattr(np.random, name, None)
    if not isinstance(cls, type) or not issubclass(cls, np.random.BitGenerator):
        raise Malformed(f"{where}.bit_generator: {name!r} is not a numpy.random BitGenerator")
    return cls


def check_legacy(data: object, where: str) -> Plain:
    """Validate a ``RandomState`` state dict by setting it on a scratch RandomState."""
    out = check_numpy_dict(data, where)
    expect(field(out, "has_gauss", where), int, f"{where}.has_gauss", "an int")
    expect(field(out, "gauss", where), float, f"{where}.gauss", "a float")
    scratch = np.random.RandomState(bit_generator_class(out["bit_generator"], where)())
    round_trip(scratch.set_state, lambda: access.listed(scratch.get_state(legacy=False)),
               out, where)
    return out


class NumPyGlobalSource:
    """The legacy global state: its bit generator object and that generator's state."""

    name = "numpy.random (global)"
    kind = "numpy-legacy"

    def capture(self) -> GlobalSnapshot:
        bit_generator = access.global_bit_generator()
        return GlobalSnapshot(bit_generator, access.global_get())

    def seed(self, snapshot: object, plan: Plan) -> None:
        seed = plan.seed
        if seed is None:
            return
        bit_generator = access.global_bit_generator()
        if isinstance(bit_generator, np.random.MT19937):
            np.random.seed(numpy_legacy_seed(seed))  # takes the lock itself
        else:
            bitgen_type: Any = type(bit_generator)
            access.global_set(_seeded_other(bitgen_type, seed))

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, GlobalSnapshot)
        if access.global_bit_generator() is not snapshot.bit_generator:
            access.global_use(snapshot.bit_generator)
        access.global_set(snapshot.state)

    def swap(self, snapshot: object) -> GlobalSnapshot:
        """Capture, then restore ``snapshot``: one state read, the bit generator looked up once.

        The read is the cost of a step (MT19937's state getter copies its 624
        words one by one); setting a state whose key is a list costs a few us.
        Swapping bit generator objects instead would skip neither: the legacy
        Gaussian cache lives in the global RandomState, ``set_bit_generator``
        clears it, and the only public way to read it is this same
        ``get_state``.
        """
        assert isinstance(snapshot, GlobalSnapshot)
        bit_generator = access.global_bit_generator()
        current = GlobalSnapshot(bit_generator, access.global_get())
        try:
            if bit_generator is not snapshot.bit_generator:
                access.global_use(snapshot.bit_generator)
            access.global_set(snapshot.state)
        except BaseException:
            undo(self, current)
            raise
        return current

    # -- plain data ------------------------------------------------------------

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, GlobalSnapshot)
        return access.listed(snapshot.state)

    @staticmethod
    def check(data: object) -> Plain:
        return check_legacy(data, "numpy.random")

    def resolve(self, data: Plain) -> Resolved:
        bit_generator = access.global_bit_generator()
        here = type(bit_generator).__name__
        if data["bit_generator"] != here:
            return Resolved(None, (
                f"captured with a {data['bit_generator']} bit generator, but the global "
                f"RandomState uses {here} here; call np.random.set_bit_generator("
                f"np.random.{data['bit_generator']}()) first to restore it",))
        return Resolved(GlobalSnapshot(bit_generator, data))

    @staticmethod
    def items(data: Plain) -> dict[str, Plain]:
        return {"": data}
