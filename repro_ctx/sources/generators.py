"""Generator objects a user hands to a scope: NumPy, ``random.Random`` and torch.

Each supported type has one adapter that reads, writes and derives a seeded
state through the type's public API, and converts its states to plain data
and back. Seeded states come from NumPy's ``SeedSequence`` with a spawn key
per generator, so every generator gets its own independent stream, and they
are cached: reseeding on every scope entry is a plain state write.

An adapter never holds the object: the registry must not keep it alive. What
an adapter needs to know about one object (a ``RandomState``'s bit
generator, for its lock) is computed once by ``prepare`` and kept beside it.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from ..core.plain import Malformed, Plain, byte_tensor
from ..core.source import Plan, swap_by_restore
from .generator_adapter import Adapter, sequence
from .python_random import check_random, random_plain, random_state
from .torch_cpu import check_cpu_state, rejected_state

SUPPORTED = (
    "numpy.random.Generator, numpy.random.BitGenerator, numpy.random.RandomState, "
    "random.Random (not SystemRandom) or torch.Generator"
)


# -- random.Random ------------------------------------------------------------------


@lru_cache(maxsize=256)
def _seeded_python(seed: int, key: tuple[int, ...]) -> tuple[Any, ...]:
    return random.Random(_python_seed(seed, key)).getstate()


def _python_seed(seed: int, key: tuple[int, ...]) -> int:
    words = sequence(seed, key).generate_state(4)
    return int.from_bytes(words.tobytes(), "little")


def _standard_random_state(state: object) -> bool:
    """Whether ``state`` has the layout ``random.Random.getstate()`` returns."""
    return (
        isinstance(state, tuple) and len(state) == 3 and isinstance(state[0], int)
        and isinstance(state[1], tuple) and all(isinstance(x, int) for x in state[1])
        and (state[2] is None or isinstance(state[2], float))
    )


def encode_value(value: object, where: str) -> Plain:
    """A ``getstate()`` value of a ``random.Random`` subclass as tagged plain data."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        tag = "tuple" if isinstance(value, tuple) else "list"
        return {tag: [encode_value(item, where) for item in value]}
    raise TypeError(
        f"{where}: cannot save a {type(value).__name__} in a state_dict; a random.Random "
        "subclass's getstate() must return None, bools, ints, floats, strings, tuples and lists"
    )


def decode_value(data: Plain, where: str) -> object:
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, dict) and len(data) == 1:
        ((tag, items),) = data.items()
        if tag in ("tuple", "list") and isinstance(items, list):
            decoded = [decode_value(item, where) for item in items]
            return tuple(decoded) if tag == "tuple" else decoded
    raise Malformed(f"{where}: expected tagged getstate() data, got {data!r:.60}")


class _PythonRandomAdapter(Adapter):
    """``random.Random`` and subclasses, through their own getstate/setstate/seed."""

    kind = "random.Random"

    def type_name(self, obj: Any, info: Any) -> str:
        return f"{type(obj).__module__}.{type(obj).__qualname__}"

    def get(self, obj: Any, info: Any) -> object:
        return obj.getstate()

    def set(self, obj: Any, info: Any, snapshot: Any) -> None:
        obj.setstate(snapshot)

    def seeded(self, obj: Any, info: Any, seed: int, key: tuple[int, ...]) -> object:
        if type(obj) is random.Random:
            return _seeded_python(seed, key)
        obj.seed(_python_seed(seed, key))  # a subclass seeds (and keeps) its own way
        return obj.getstate()

    def to_plain(self, obj: Any, info: Any, snapshot: Any) -> Plain:
        if _standard_random_state(snapshot):
            return random_plain(snapshot)
        return {"getstate": encode_value(snapshot, "random.Random state")}

    def check(self, data: Plain, where: str) -> None:
        if isinstance(data, dict) and "getstate" in data:
            decode_value(data["getstate"], where)
        else:
            check_random(data, where)

    def from_plain(self, obj: Any, info: Any, data: Plain) -> object:
        if "getstate" in data:
            return decode_value(data["getstate"], "state")
        return random_state(data)


# -- torch.Generator ------------------------------------------------------------------


@lru_cache(maxsize=256)
def _seeded_torch(device: str, seed: int, key: tuple[int, ...]) -> object:
    import numpy as np
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(int(sequence(seed, key).generate_state(1, np.uint64)[0]))
    return generator.get_state()


class _TorchAdapter(Adapter):
    kind = "torch.Generator"

    def type_name(self, obj: Any, info: Any) -> str:
        return str(obj.device)

    def get(self, obj: Any, info: Any) -> object:
        return obj.get_state()

    def set(self, obj: Any, info: Any, snapshot: Any) -> None:
        obj.set_state(snapshot)

    def seeded(self, obj: Any, info: Any, seed: int, key: tuple[int, ...]) -> object:
        return _seeded_torch(str(obj.device), seed, key)

    def to_plain(self, obj: Any, info: Any, snapshot: Any) -> Plain:
        return snapshot.clone()

    def check(self, data: Plain, where: str) -> None:
        check_cpu_state(byte_tensor(data, where), where)

    def from_plain(self, obj: Any, info: Any, data: Plain) -> object:
        current = obj.get_state()
        if data.numel() != current.numel():
            raise Malformed(f"the state has {data.numel()} bytes, a generator here has "
                            f"{current.numel()}")
        problem = rejected_state(data, obj.device)  # a CUDA state is checked only here
        if problem is not None:
            raise Malformed(problem)
        return data.clone()


ADAPTERS: dict[str, Adapter] = {
    adapter.kind: adapter for adapter in (_PythonRandomAdapter(), _TorchAdapter())
}


def adapter_named(kind: str) -> Adapter | None:
    """The adapter that reads checkpoint data recorded with ``kind``."""
    if kind.startswith("numpy.") and kind not in ADAPTERS:
        _add_numpy_adapters()
    return ADAPTERS.get(kind)


def _add_numpy_adapters() -> None:
    """NumPy's adapters, added at first use so that ``import repro_ctx`` imports no NumPy."""
    from .numpy_generators import numpy_adapters

    for adapter in numpy_adapters():
        ADAPTERS.setdefault(adapter.kind, adapter)


def adapter_for(obj: object) -> Adapter:
    """The adapter for ``obj``, or a ``TypeError`` that lists what is supported."""
    # the type, not isinstance(): an object whose ``__class__`` claims a generator type
    # must not reach that type's state accessors
    cls = type(obj)
    if issubclass(cls, random.Random):
        if issubclass(cls, random.SystemRandom):
            raise TypeError(
                "random.SystemRandom draws from the OS and has no state to capture or seed; "
                f"expected {SUPPORTED}"
            )
        return ADAPTERS["random.Random"]
    np = sys.modules.get("numpy")
    if np is not None:
        for np_cls, kind in ((np.random.Generator, "numpy.random.Generator"),
                          (np.random.RandomState, "numpy.random.RandomState"),
                          (np.random.BitGenerator, "numpy.random.BitGenerator")):
            if issubclass(cls, np_cls):
                adapter = adapter_named(kind)
                assert adapter is not None
                return adapter
    torch = sys.modules.get("torch")
    if torch is not None and issubclass(cls, torch.Generator):
        return ADAPTERS["torch.Generator"]
    raise TypeError(f"cannot scope a {type(obj).__qualname__} object; expected {SUPPORTED}")


class Tracked(NamedTuple):
    """One generator a scope covers, its adapter, and what the adapter prepared for it."""

    obj: Any
    adapter: Adapter
    info: Any


def check_generators(objects: Iterable[object]) -> tuple[Tracked, ...]:
    """Validate ``generators=`` up front, so a bad one changes nothing."""
    if isinstance(objects, (str, bytes)) or not isinstance(objects, Iterable):
        raise TypeError(
            f"generators must be an iterable of generator objects, got {type(objects).__name__}"
        )
    tracked: list[Tracked] = []
    seen: set[int] = set()
    for obj in objects:
        adapter = adapter_for(obj)
        if id(obj) not in seen:
            seen.add(id(obj))
            tracked.append(Tracked(obj, adapter, adapter.prepare(obj)))
    return tuple(tracked)


Run = tuple[Adapter, int, int]
"""Positions ``start:end`` of consecutive generators that share one adapter."""


def adapter_runs(adapters: Sequence[Adapter]) -> tuple[Run, ...]:
    """The runs of ``adapters``: each run is read and written by one adapter call."""
    runs: list[Run] = []
    start, count = 0, len(adapters)
    while start < count:
        adapter = adapters[start]
        end = start + 1
        while end < count and adapters[end] is adapter:
            end += 1
        runs.append((adapter, start, end))
        start = end
    return tuple(runs)


def read_runs(
    runs: tuple[Run, ...], objs: tuple[object, ...], infos: tuple[object, ...]
) -> tuple[object, ...]:
    """Every generator's state, in order, one ``get_many`` per run."""
    if len(runs) == 1:  # the usual case: no slicing
        return tuple(runs[0][0].get_many(objs, infos))
    states: list[object] = []
    for adapter, start, end in runs:
        states += adapter.get_many(objs[start:end], infos[start:end])
    return tuple(states)


def write_runs(
    runs: tuple[Run, ...], objs: tuple[object, ...], infos: tuple[object, ...],
    states: Sequence[object],
) -> None:
    """Write ``states`` (one per generator, in order), one ``set_many`` per run."""
    if len(runs) == 1:
        runs[0][0].set_many(objs, infos, states)
        return
    for adapter, start, end in runs:
        adapter.set_many(objs[start:end], infos[start:end], states[start:end])


class GeneratorsSource:
    """The generators passed to one scope, each seeded from its position."""

    name = "generators"

    __slots__ = ("_infos", "_key_space", "_objs", "_runs", "_seeded", "_tracked")

    def __init__(self, tracked: tuple[Tracked, ...], key_space: int) -> None:
        self._tracked = tracked
        self._key_space = key_space
        self._objs = tuple(t.obj for t in tracked)
        self._infos = tuple(t.info for t in tracked)
        self._runs = adapter_runs([t.adapter for t in tracked])
        self._seeded: tuple[int, tuple[object, ...]] | None = None
        """The seeded states of the last seed."""

    def capture(self) -> tuple[object, ...]:
        return read_runs(self._runs, self._objs, self._infos)

    def seed(self, snapshot: object, plan: Plan) -> None:
        seed = plan.seed
        if seed is None:
            return
        seeded = self._seeded
        if seeded is None or seeded[0] != seed:
            space = self._key_space
            seeded = self._seeded = (seed, tuple(
                adapter.seeded(obj, info, seed, (space, index))
                for index, (obj, adapter, info) in enumerate(self._tracked)
            ))
        write_runs(self._runs, self._objs, self._infos, seeded[1])

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, tuple)
        write_runs(self._runs, self._objs, self._infos, snapshot)

    swap = swap_by_restore
