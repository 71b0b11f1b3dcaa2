"""register(): captured by every scope, and never what keeps an object alive."""

from __future__ import annotations

import gc
import random
import weakref
from typing import Any

import numpy as np
import pytest
import torch

from repro_ctx import deterministic, register, registered, unregister


class TrackedGenerator(np.random.Generator):
    """A Generator subclass, only so the test can hold a weak reference to it."""


def test_registered_generators_are_seeded_restored_and_independent() -> None:
    a = np.random.default_rng(10)
    b = np.random.default_rng(10)
    register(a)
    register(b)
    try:
        state_a = a.bit_generator.state
        with deterministic(0):
            xa, xb = a.random(), b.random()
        assert xa != xb
        assert a.bit_generator.state == state_a
        with deterministic(0):
            assert (a.random(), b.random()) == (xa, xb)
    finally:
        unregister(a)
        unregister(b)


def test_registering_twice_does_nothing() -> None:
    g = random.Random(1)
    register(g)
    register(g)
    try:
        assert [obj for obj in registered() if obj is g] == [g]
    finally:
        unregister(g)
    assert all(obj is not g for obj in registered())


def test_unregistered_objects_are_no_longer_scoped() -> None:
    g = np.random.default_rng(3)
    register(g)
    unregister(g)
    with deterministic(0):
        x = g.random()
    assert x == np.random.default_rng(3).random()  # not seeded by the scope...
    assert g.random() != x  # ...and not restored either


@pytest.mark.parametrize(
    "make",
    [
        lambda: TrackedGenerator(np.random.PCG64(1)),
        lambda: random.Random(1),
        lambda: torch.Generator(),
    ],
    ids=["numpy-generator", "random", "torch"],
)
def test_the_registry_does_not_keep_objects_alive(make: object) -> None:
    obj = make()  # type: ignore[operator]
    count = len(registered())
    register(obj)
    try:
        ref: weakref.ref[Any] | None = weakref.ref(obj)
    except TypeError:  # torch.Generator before 2.13 (test_facts): the registry counts references
        ref = None
    assert len(registered()) == count + 1
    del obj
    gc.collect()
    assert ref is None or ref() is None
    assert len(registered()) == count
    assert all(type(o).__name__ not in ("TrackedGenerator",) for o in registered())


def test_plain_numpy_objects_are_released() -> None:
    """Plain Generator/RandomState cannot be weakly referenced: watch their bit generator lock."""
    for make in (np.random.default_rng, np.random.RandomState, np.random.PCG64):
        obj = make(1)
        if isinstance(obj, np.random.BitGenerator):
            lock = obj.lock
        elif isinstance(obj, np.random.Generator):
            lock = obj.bit_generator.lock
        else:
            lock = obj._bit_generator.lock
        lock_ref = weakref.ref(lock)
        del lock
        register(obj)
        count = len(registered())
        del obj
        gc.collect()
        assert lock_ref() is None, make
        assert len(registered()) == count - 1


def test_dead_objects_are_released_at_scope_entry_without_gc() -> None:
    obj = TrackedGenerator(np.random.PCG64(1))
    register(obj)
    ref = weakref.ref(obj)
    gc.disable()
    try:
        del obj
        with deterministic(0):
            pass
        assert ref() is None
    finally:
        gc.enable()


def test_plain_numpy_objects_are_released_at_scope_entry_without_gc() -> None:
    """Held strongly (no weak references): the scope's capture drops what only it holds."""
    obj = np.random.default_rng(1)
    lock_ref = weakref.ref(obj.bit_generator.lock)
    kept = np.random.default_rng(2)
    register(obj)
    register(kept)
    state = kept.bit_generator.state
    gc.disable()
    try:
        del obj
        with deterministic(0):
            inside = kept.random()
        assert lock_ref() is None
    finally:
        gc.enable()
        unregister(kept)
    assert kept.bit_generator.state == state  # the live one was captured and restored
    assert inside != np.random.default_rng(2).random()  # ...and seeded


def test_each_seed_seeds_registered_generators_anew() -> None:
    """Seeded states are cached per seed: a scope with another seed must not reuse them."""
    g = np.random.default_rng(5)
    r = random.Random(5)
    register(g)
    register(r)  # two adapters: two runs of one adapter call each
    try:
        draws = {}
        for seed in (1, 2, 1, 3, 2):
            with deterministic(seed):
                draw = (g.random(), r.random())
            assert draws.setdefault(seed, draw) == draw, seed
        assert len(set(draws.values())) == 3
    finally:
        unregister(g)
        unregister(r)


@pytest.mark.parametrize("how", ["gc", "unregister"])
def test_a_generator_a_scope_has_seen_is_released_once_dropped(how: str) -> None:
    """What a capture keeps between scopes (its layout) must not hold a dropped generator."""
    for make in (np.random.default_rng, np.random.RandomState):
        obj = make(1)  # watched through its bit generator's lock (neither is weakly referable)
        bitgen = obj.bit_generator if isinstance(obj, np.random.Generator) else obj._bit_generator
        lock_ref = weakref.ref(bitgen.lock)
        del bitgen
        register(obj)
        with deterministic(0):
            pass
        if how == "unregister":
            unregister(obj)
        del obj
        gc.collect()
        assert lock_ref() is None, make


def test_object_alive_elsewhere_stays_registered() -> None:
    obj = np.random.default_rng(1)
    holder = [obj]
    register(obj)
    del obj
    gc.collect()
    assert holder[0] in registered()
    unregister(holder[0])


def test_objects_captured_by_an_open_scope_are_restored_even_if_unregistered_inside() -> None:
    g = np.random.default_rng(4)
    register(g)
    state = g.bit_generator.state
    with deterministic(0):
        unregister(g)
        g.random(10)
    assert g.bit_generator.state == state
