"""Generators registered with ``register()``: captured, seeded and restored by every scope.

The registry must never be what keeps a generator alive. ``random.Random`` and
``torch.Generator`` are held through weak references. NumPy's Generator,
BitGenerator and RandomState cannot be weakly referenced, so they are held
strongly and released as soon as the registry is their only owner, which is
checked by reference count on every scope entry, on every registry call and
at every garbage-collection pass (``gc.callbacks``): ``del gen; gc.collect()``
releases the object.
"""

from __future__ import annotations

import functools
import gc
import itertools
import sys
import threading
import weakref
from typing import Any

from ._fork import renew_after_fork
from ._generators import Adapter, adapter_for, adapter_named
from ._plain import Malformed, Plain, Resolved, check_plain, expect, field
from ._seed import REGISTERED_GENERATORS_KEY
from ._source import Plan, swap_by_restore


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


def _prune() -> None:
    """Release every strongly held object that only the registry still references."""
    dead = [
        key for key, entry in _entries.items()
        if (entry.strong is not None and sys.getrefcount(entry.strong) <= _SOLE_OWNER)
        or (entry.ref is not None and entry.ref() is None)
    ]
    for key in dead:
        del _entries[key]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and _entries and _lock.acquire(blocking=False):
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
            del _entries[key]


def unregister(obj: object) -> None:
    """Stop scoping ``obj``; a ``ValueError`` if it was not registered."""
    with _lock:
        _prune()
        entry = _entries.get(id(obj))
        if entry is None or entry.get() is not obj:
            raise ValueError(f"{type(obj).__qualname__} object at {id(obj):#x} is not registered")
        del _entries[id(obj)]


def registered() -> list[object]:
    """The live registered objects, in registration order."""
    with _lock:
        _prune()
        return [obj for obj in (entry.get() for entry in _entries.values()) if obj is not None]


def _describe(entry: Plain) -> str:
    return f"{entry['kind']}({entry['type']})"


class RegistrySource:
    """Every registered generator; the snapshot holds the objects it captured.

    Its plain form lists the generators in registration order, each with its
    kind and type; on load they are matched to the generators registered
    here by position, and must agree in kind and type.
    """

    name = "registered generators"
    kind = "registry"

    def capture(self) -> tuple[tuple[object, _Entry, object], ...]:
        if not _entries:
            return ()
        with _lock:
            _prune()
            captured = []
            for entry in _entries.values():
                obj = entry.get()
                if obj is not None:
                    captured.append((obj, entry, entry.adapter.get(obj, entry.info)))
            return tuple(captured)

    def seed(self, snapshot: object, plan: Plan) -> None:
        if plan.seed is None:
            return
        assert isinstance(snapshot, tuple)
        seed = plan.seed
        for obj, entry, _state in snapshot:
            adapter, info = entry.adapter, entry.info
            seeded = entry.seeded
            if seeded is None or seeded[0] != seed:
                state = adapter.seeded(obj, info, seed, (REGISTERED_GENERATORS_KEY, entry.key))
                entry.seeded = seeded = (seed, state)
            adapter.set(obj, info, seeded[1])

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, tuple)
        for obj, entry, state in snapshot:
            entry.adapter.set(obj, entry.info, state)

    def swap(self, snapshot: object) -> object:
        if not snapshot and not _entries:  # nothing registered, then or now
            return ()
        return swap_by_restore(self, snapshot)

    # -- plain data -------------------------------------------------------------

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, tuple)
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
        live = self.capture()
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
        return Resolved(tuple(restore), tuple(mismatches))

    @staticmethod
    def items(data: Plain) -> dict[str, Plain]:
        return {f"#{i} {_describe(entry)}": entry for i, entry in enumerate(data["generators"])}
