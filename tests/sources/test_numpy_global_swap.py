"""The NumPy global source's swap: one read, the cached Gaussian and the bit generator kept.

Compared through NumPy's public getters, never through the source's snapshots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from repro_ctx.sources.numpy_global import GlobalSnapshot, NumPyGlobalSource


def public() -> tuple[object, ...]:
    """The global bit generator object and every field of the state, arrays as bytes."""
    state = np.random.get_state(legacy=False)
    inner = {key: value.tobytes() if isinstance(value, np.ndarray) else value
             for key, value in state["state"].items()}
    return (np.random.get_bit_generator(), state["bit_generator"],  # type: ignore[attr-defined]
            sorted(inner.items()), state.get("has_uint32"), state.get("uinteger"),
            state["has_gauss"], state["gauss"])


@pytest.fixture
def source() -> Any:
    saved_bit_generator = np.random.get_bit_generator()  # type: ignore[attr-defined]
    saved = np.random.get_state(legacy=False)
    yield NumPyGlobalSource()
    np.random.set_bit_generator(saved_bit_generator)  # type: ignore[attr-defined]
    np.random.set_state(saved)


def test_a_swap_puts_the_snapshot_in_and_returns_what_was_there(source: Any) -> None:
    np.random.seed(1)
    np.random.standard_normal()  # a cached Gaussian on this side
    outside = public()
    np.random.seed(2)
    np.random.randn(3)  # and on that one
    inside = source.capture()
    inside_public = public()
    np.random.seed(1)
    np.random.standard_normal()
    assert public() == outside
    back = source.swap(inside)
    assert public() == inside_public
    source.swap(back)
    assert public() == outside
    assert np.random.standard_normal() == np.random.RandomState(1).standard_normal(2)[1]


def test_alternating_keys_reuse_their_lists(source: Any) -> None:
    """A generator step swaps two keys back and forth: neither is converted again."""
    np.random.seed(5)
    caller = source.capture()
    np.random.seed(6)
    inside = source.capture()
    first = source.swap(caller)  # reads the inside key
    second = source.swap(first)  # reads the caller's
    third = source.swap(second)
    assert third.state["state"]["key"] is inside.state["state"]["key"]
    assert source.swap(third).state["state"]["key"] is caller.state["state"]["key"]


def test_a_swap_to_another_bit_generator_swaps_the_object(source: Any) -> None:
    pcg = np.random.PCG64(3)
    np.random.set_bit_generator(pcg)  # type: ignore[attr-defined]
    np.random.standard_normal()
    other_side = source.capture()
    pcg_public = public()
    mt = np.random.MT19937(4)
    np.random.set_bit_generator(mt)  # type: ignore[attr-defined]
    mt_public = public()
    back = source.swap(other_side)
    assert public() == pcg_public
    assert np.random.get_bit_generator() is pcg  # type: ignore[attr-defined]
    source.swap(back)
    assert public() == mt_public


def test_a_swap_that_cannot_set_the_state_leaves_the_state_as_it_found_it(source: Any) -> None:
    np.random.seed(8)
    np.random.standard_normal()
    before = public()
    broken = GlobalSnapshot(np.random.get_bit_generator(),  # type: ignore[attr-defined]
                            {"bit_generator": "MT19937", "state": {"key": [1, 2], "pos": 0}})
    with pytest.raises((ValueError, IndexError)):  # NumPy's own error, by version
        source.swap(broken)
    assert public() == before
