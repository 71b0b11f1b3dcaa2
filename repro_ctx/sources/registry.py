"""Generators registered with ``register()``: captured, seeded and restored by every scope.

The registry must never be what keeps a generator alive. ``random.Random`` and
``torch.Generator`` are held through weak references. NumPy's Generator,
BitGenerator and RandomState cannot be weakly referenced, so they are held
strongly and released as soon as the registry is their only owner, which is
checked by reference count on every scope entry, on every registry call and
at every full garbage collection (``gc.callbacks``): ``del gen; gc.collect()``
releases the object.
"""

from __future__ import annotations

import functools
import gc
import itertools
import sys
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from ..core.fork import renew_after_fork
from ..core.plain import Malformed, Plain, Resolved, check_plain, expect, field
from ..core.seed import REGISTERED_GENERATORS_KEY
from ..core.source import Plan, swap_by_restore
from .generator_adapter import Adapter
from .generators import (
    adapter_for,
    adapter_named,
    adapter_runs,
    read_runs,
    write_runs,
)


class _Entry:
    __slots__ = ("adapter", "info", "key", "ref", "seeded", "strong")

    def __init__(self, obj: object, adapter: Adapter, info: Any, key: int) -> None:
        self.adapter = adapter
        self.info = info
        self.key = key
        self.seeded: tuple[int, object] | None = None  # (seed, state) of the last seeding
        self.strong: object | None = None
        self.ref: weakref.ref[Any] | None = None
        try:
            self.ref = weakref.ref(obj)
        except TypeError:
            self.strong = obj

    def get(self) -> object | None:
        ref = self.ref
        return ref() if ref is not None else self.strong


def _sole_owner_refcount() -> int:
    """``sys.getrefcount(entry.strong)`` when the entry holds the only reference."""
    entry = _Entry.__new__(_Entry)
    entry.strong = object()
    return sys.getrefcount(entry.strong)


_SOLE_OWNER = _sole_owner_refcount()
_lock = threading.RLock()
renew_after_fork(globals(), "_lock")
_entries: dict[int, _Entry] = {}  # id(obj) -> entry, in registration order
_counter = itertools.count()


def _remove(key: int) -> None:
    """Drop an entry, and the kept layout, which may still list it (and so hold its object).

    An open scope's capture keeps what it needs to restore (the objects and
    its own layout); nothing else may keep a dropped generator alive.
    """
    global _last_layout
    del _entries[key]
    _last_layout = None


def _prune() -> None:
    """Release every strongly held object that only the registry still references."""
    dead = [
        key for key, entry in _entries.items()
        if (entry.strong is not None and sys.getrefcount(entry.strong) <= _SOLE_OWNER)
        or (entry.ref is not None and entry.ref() is None)
    ]
    for key in dead:
        _remove(key)


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    # full collections only (``gc.collect()``): a scope's own allocations trigger
    # young ones every few scopes, and every scope entry prunes anyway
    if phase == "stop" and info.get("generation") == 2 and _entries and _lock.acquire(
        blocking=False
    ):
        try:
            _prune()
        finally:
            _lock.release()


gc.callbacks.append(_on_gc)


def register(obj: object) -> None:
    """Have every scope capture, seed and restore ``obj`` (a no-op if already registered).

    Each registered generator is seeded with its own stream, derived from the
    scope seed and the order of registration.
    """
    adapter = adapter_for(obj)
    with _lock:
        _prune()
        if id(obj) in _entries:
            return
        entry = _Entry(obj, adapter, adapter.prepare(obj), next(_counter))
        if entry.ref is not None:
            entry.ref = weakref.ref(obj, functools.partial(_discard, id(obj)))
        _entries[id(obj)] = entry


def _discard(key: int, ref: weakref.ref[Any]) -> None:
    with _lock:
        entry = _entries.get(key)
        if entry is not None and entry.ref is ref:
            _remove(key)


def unregister(obj: object) -> None:
    """Stop scoping ``obj``; a ``ValueError`` if it was not registered."""
    with _lock:
        _prune()
        entry = _entries.get(id(obj))
        if entry is None or entry.get() is not obj:
            raise ValueError(f"{type(obj).__qualname__} object at {id(obj):#x} is not registered")
        _remove(id(obj))


def registered() -> list[object]:
    """The live registered objects, in registration order."""
    with _lock:
        _prune()
        return [obj for obj in (entry.get() for entry in _entries.values()) if obj is not None]


def _describe(entry: Plain) -> str:
    return f"{entry['kind']}({entry['type']})"


class _Layout:
    """The registered entries one capture found alive, and what follows from them alone.

    The runs of consecutive entries that share an adapter (each run is read
    and written by one adapter call) and the seeded states of the last seed.
    Kept between captures while the same entries are alive: it holds no
    generator object beyond what the entries hold.
    """

    __slots__ = ("entries", "infos", "runs", "seeded")

    def __init__(self, entries: tuple[_Entry, ...]) -> None:
        self.entries = entries
        self.infos = tuple([entry.info for entry in entries])
        self.runs = adapter_runs([entry.adapter for entry in entries])
        self.seeded: tuple[int, tuple[object, ...]] | None = None


class Captured:
    """What one capture saw: the live registered generators and their states.

    Parallel to its layout's entries, in registration order. Iterating
    yields ``(obj, entry, state)`` triples.
    """

    __slots__ = ("layout", "objs", "states")

    def __init__(
        self, objs: tuple[object, ...], layout: _Layout, states: tuple[object, ...]
    ) -> None:
        self.objs = objs
        self.layout = layout
        self.states = states

    @classmethod
    def of(cls, triples: Sequence[tuple[object, _Entry, object]]) -> Captured:
        """A capture made of ``(obj, entry, state)`` triples (a loaded state, a test)."""
        return cls(tuple(t[0] for t in triples), _Layout(tuple(t[1] for t in triples)),
                   tuple(t[2] for t in triples))

    def __iter__(self) -> Iterator[tuple[object, _Entry, object]]:
        return zip(self.objs, self.layout.entries, self.states)

    def __len__(self) -> int:
        return len(self.objs)

    def write(self, states: Sequence[object]) -> None:
        """Write ``states`` (one per generator, in order), one adapter call per run."""
        layout = self.layout
        write_runs(layout.runs, self.objs, layout.infos, states)


_NOTHING = Captured((), _Layout(()), ())
_last_layout: _Layout | None = None
"""The layout of the last capture, while no entry has been removed since."""


class RegistrySource:
    """Every registered generator; the snapshot holds the objects it captured.

    Its plain form lists the generators in registration order, each with its
    kind and type; on load they are matched to the generators registered
    here by position, and must agree in kind and type.
    """

    name = "registered generators"
    kind = "registry"

    def capture(self) -> Captured:
        if not _entries:
            return _NOTHING
        with _lock:
            objs: list[object] = []
            entries: list[_Entry] = []
            dead = []
            getrefcount, sole_owner = sys.getrefcount, _SOLE_OWNER
            # one pass prunes and collects: an entry only the registry holds is dropped
            for key, entry in _entries.items():
                ref = entry.ref
                if ref is None:
                    obj = entry.strong
                    if getrefcount(obj) <= sole_owner + 1:  # + 1: the local ``obj``
                        dead.append(key)
                        continue
                else:
                    obj = ref()
                    if obj is None:
                        dead.append(key)
                        continue
                objs.append(obj)
                entries.append(entry)
            for key in dead:
                _remove(key)
            global _last_layout
            layout = _last_layout
            if layout is None or layout.entries != tuple(entries):  # _Entry: by identity
                layout = _last_layout = _Layout(tuple(entries))
            found = tuple(objs)
            return Captured(found, layout, read_runs(layout.runs, found, layout.infos))

    def seed(self, snapshot: object, plan: Plan) -> None:
        assert isinstance(snapshot, Captured)
        if plan.seed is None or not snapshot.objs:
            return
        seed, layout = plan.seed, snapshot.layout
        seeded = layout.seeded
        if seeded is None or seeded[0] != seed:
            states = []
            for obj, entry in zip(snapshot.objs, layout.entries):
                mine = entry.seeded
                if mine is None or mine[0] != seed:
                    state = entry.adapter.seeded(obj, entry.info, seed,
                                                 (REGISTERED_GENERATORS_KEY, entry.key))
                    entry.seeded = mine = (seed, state)
                states.append(mine[1])
            layout.seeded = seeded = (seed, tuple(states))
        snapshot.write(seeded[1])

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, Captured)
        if snapshot.objs:
            snapshot.write(snapshot.states)

    def swap(self, snapshot: object) -> object:
        if not _entries and not snapshot:  # nothing registered, then or now
            return _NOTHING
        return swap_by_restore(self, snapshot)

    # -- plain data -------------------------------------------------------------

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, Captured)
        out = []
        for obj, entry, state in snapshot:
            adapter, info = entry.adapter, entry.info
            out.append({"kind": adapter.kind, "type": adapter.type_name(obj, info),
                        "state": adapter.to_plain(obj, info, state)})
        return {"generators": out}

    @staticmethod
    def check(data: object) -> Plain:
        out = check_plain(data, "registered generators")
        entries = expect(field(out, "generators", "registered generators"), list,
                         "registered generators.generators", "a list")
        for i, entry in enumerate(entries):
            where = f"registered generators[{i}]"
            kind = field(entry, "kind", where)
            adapter = adapter_named(kind) if isinstance(kind, str) else None
            if adapter is None:
                raise Malformed(f"{where}.kind must be a generator kind repro_ctx knows, "
                                f"got {kind!r}")
            expect(field(entry, "type", where), str, f"{where}.type", "a str")
            adapter.check(field(entry, "state", where), f"{where}.state")
        return out

    def resolve(self, data: Plain) -> Resolved:
        live = list(self.capture())
        loaded: list[Plain] = data["generators"]
        restore: list[tuple[object, _Entry, object]] = []
        mismatches: list[str] = []
        for i, (obj, entry, _state) in enumerate(live[: len(loaded)]):
            saved = loaded[i]
            adapter, info = entry.adapter, entry.info
            here = {"kind": adapter.kind, "type": adapter.type_name(obj, info)}
            if (saved["kind"], saved["type"]) != (here["kind"], here["type"]):
                mismatches.append(f"#{i}: captured {_describe(saved)}, registered here "
                                  f"{_describe(here)}")
                continue
            try:
                state = adapter.from_plain(obj, info, saved["state"])
            except Malformed as exc:
                mismatches.append(f"#{i} {_describe(saved)}: {exc}")
                continue
            restore.append((obj, entry, state))
        mismatches += [f"#{i} {_describe(saved)} is not registered here"
                       for i, saved in enumerate(loaded[len(live):], start=len(live))]
        mismatches += [f"#{i} {entry.adapter.kind} registered here was not captured"
                       for i, (_obj, entry, _state) in enumerate(live[len(loaded):],
                                                                 start=len(loaded))]
        return Resolved(Captured.of(restore), tuple(mismatches))

    @staticmethod
    def items(data: Plain) -> dict[str, Plain]:
        return {f"#{i} {_describe(entry)}": entry for i, entry in enumerate(data["generators"])}
