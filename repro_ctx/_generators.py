"""Generator objects a user hands to a scope: NumPy, ``random.Random`` and torch.

Each supported type has one adapter that reads, writes and derives a seeded
state. Seeded states come from NumPy's ``SeedSequence`` with a spawn key per
generator, so every generator gets its own independent stream, and they are
cached: reseeding on every scope entry is a plain state write.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ._source import Plan, swap_by_restore

SUPPORTED = (
    "numpy.random.Generator, numpy.random.BitGenerator, numpy.random.RandomState, "
    "random.Random (not SystemRandom) or torch.Generator"
)


@dataclass(frozen=True, slots=True)
class Adapter:
    kind: str
    get: Callable[[Any], object]
    set: Callable[[Any, object], None]
    seeded: Callable[[Any, int, tuple[int, ...]], object]


def _sequence(seed: int, key: tuple[int, ...]) -> Any:
    import numpy as np

    return np.random.SeedSequence(seed, spawn_key=key)


@lru_cache(maxsize=256)
def _seeded_bitgen(bitgen_type: Any, seed: int, key: tuple[int, ...]) -> object:
    from . import _rawstate

    return _rawstate.bitgen_get(bitgen_type(_sequence(seed, key)))


@lru_cache(maxsize=256)
def _seeded_legacy(bitgen_type: Any, seed: int, key: tuple[int, ...]) -> object:
    import numpy as np

    from . import _rawstate

    return _rawstate.legacy_get(np.random.RandomState(bitgen_type(_sequence(seed, key))))


@lru_cache(maxsize=256)
def _seeded_python(seed: int, key: tuple[int, ...]) -> object:
    from . import _rawstate

    words = _sequence(seed, key).generate_state(4)
    return _rawstate.random_get(random.Random(int.from_bytes(words.tobytes(), "little")))


@lru_cache(maxsize=256)
def _seeded_torch(device: str, seed: int, key: tuple[int, ...]) -> object:
    import numpy as np
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(int(_sequence(seed, key).generate_state(1, np.uint64)[0]))
    return generator.get_state()


def _torch_set(generator: Any, state: object) -> None:
    generator.set_state(state)


@lru_cache(maxsize=1)
def _adapters() -> dict[str, Adapter]:
    """Built at first use, so that ``import repro_ctx`` imports no NumPy."""
    from . import _rawstate

    return {
        "numpy.random.Generator": Adapter(
            "numpy.random.Generator",
            lambda g: _rawstate.bitgen_get(g.bit_generator),
            lambda g, s: _rawstate.bitgen_set(g.bit_generator, s),
            lambda g, seed, key: _seeded_bitgen(g.bit_generator.__class__, seed, key),
        ),
        "numpy.random.BitGenerator": Adapter(
            "numpy.random.BitGenerator",
            _rawstate.bitgen_get,
            _rawstate.bitgen_set,
            lambda g, seed, key: _seeded_bitgen(g.__class__, seed, key),
        ),
        "numpy.random.RandomState": Adapter(
            "numpy.random.RandomState",
            _rawstate.legacy_get,
            _rawstate.legacy_set,
            lambda g, seed, key: _seeded_legacy(g._bit_generator.__class__, seed, key),
        ),
        "random.Random": Adapter(
            "random.Random",
            _rawstate.random_get,
            _rawstate.random_set,
            lambda g, seed, key: _seeded_python(seed, key),
        ),
        "torch.Generator": Adapter(
            "torch.Generator",
            lambda g: g.get_state(),
            _torch_set,
            lambda g, seed, key: _seeded_torch(str(g.device), seed, key),
        ),
    }


def adapter_for(obj: object) -> Adapter:
    """The adapter for ``obj``, or a ``TypeError`` that lists what is supported."""
    if isinstance(obj, random.Random):
        if isinstance(obj, random.SystemRandom):
            raise TypeError(
                "random.SystemRandom draws from the OS and has no state to capture or seed; "
                f"expected {SUPPORTED}"
            )
        return _adapters()["random.Random"]
    import sys

    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.random.Generator):
            return _adapters()["numpy.random.Generator"]
        if isinstance(obj, np.random.RandomState):
            return _adapters()["numpy.random.RandomState"]
        if isinstance(obj, np.random.BitGenerator):
            return _adapters()["numpy.random.BitGenerator"]
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Generator):
        return _adapters()["torch.Generator"]
    raise TypeError(f"cannot scope a {type(obj).__qualname__} object; expected {SUPPORTED}")


def check_generators(objects: Iterable[object]) -> tuple[tuple[object, Adapter], ...]:
    """Validate ``generators=`` up front, so a bad one changes nothing."""
    if isinstance(objects, (str, bytes)) or not isinstance(objects, Iterable):
        raise TypeError(
            f"generators must be an iterable of generator objects, got {type(objects).__name__}"
        )
    pairs: list[tuple[object, Adapter]] = []
    seen: set[int] = set()
    for obj in objects:
        adapter = adapter_for(obj)
        if id(obj) not in seen:
            seen.add(id(obj))
            pairs.append((obj, adapter))
    return tuple(pairs)


class GeneratorsSource:
    """The generators passed to one scope, each seeded from its position."""

    name = "generators"

    __slots__ = ("_key_space", "_pairs")

    def __init__(self, pairs: tuple[tuple[object, Adapter], ...], key_space: int) -> None:
        self._pairs = pairs
        self._key_space = key_space

    def capture(self) -> tuple[object, ...]:
        return tuple([adapter.get(obj) for obj, adapter in self._pairs])

    def seed(self, snapshot: object, plan: Plan) -> None:
        if plan.seed is None:
            return
        seed, space = plan.seed, self._key_space
        for index, (obj, adapter) in enumerate(self._pairs):
            adapter.set(obj, adapter.seeded(obj, seed, (space, index)))

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, tuple)
        for (obj, adapter), state in zip(self._pairs, snapshot):
            adapter.set(obj, state)

    swap = swap_by_restore
