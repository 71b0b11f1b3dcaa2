"""A failure during entry rolls back everything already changed."""

from __future__ import annotations

import random

import pytest
import torch

from repro_ctx import deterministic, register, unregister
from repro_ctx.core.scope import open_activations
from repro_ctx.core.source import swap_by_restore
from tests.global_state import full_state, scramble


class BrokenGenerator(torch.Generator):
    """Refuses its first write (the scope's seeding); the rollback's write works."""

    failed = False

    def set_state(self, new_state: torch.Tensor) -> torch.Generator:
        if not self.failed:
            self.failed = True
            raise OSError("setter failed")
        return super().set_state(new_state)


def test_a_failing_registered_setter_rolls_back_the_entry() -> None:
    scramble(random.Random(5))
    broken = BrokenGenerator()
    broken.manual_seed(8)
    register(broken)
    before = full_state()
    generator_before = broken.get_state()
    try:
        with pytest.raises(OSError, match="setter failed"), deterministic(0):
            pytest.fail("the block must not run")
    finally:
        unregister(broken)
    assert full_state() == before
    assert torch.equal(broken.get_state(), generator_before)
    assert open_activations() == ()


def test_a_failing_passed_generator_rolls_back_and_leaves_no_scope_open() -> None:
    before = full_state()
    with pytest.raises(OSError, match="setter failed"), deterministic(
        3, generators=[BrokenGenerator()]
    ):
        pass  # pragma: no cover
    assert full_state() == before
    assert open_activations() == ()
    with deterministic(3):  # the lock was released: another scope opens fine
        pass


def test_a_failing_restore_is_reported_and_the_rest_still_restored() -> None:
    class FailsOnRestore(torch.Generator):
        armed = False

        def set_state(self, new_state: torch.Tensor) -> torch.Generator:
            if FailsOnRestore.armed:
                raise OSError("restore failed")
            return super().set_state(new_state)

    generator = FailsOnRestore()
    before = full_state()
    def arm_inside() -> None:
        with deterministic(0, generators=[generator]):
            random.random()
            FailsOnRestore.armed = True

    with pytest.raises(RuntimeError, match="could not restore OSError: restore failed"):
        arm_inside()
    assert full_state() == before
    FailsOnRestore.armed = False

    class Inside(Exception):
        pass

    def arm_and_raise() -> None:
        with deterministic(0, generators=[generator]):
            FailsOnRestore.armed = True
            raise Inside

    with pytest.raises(Inside), pytest.warns(RuntimeWarning, match="could not restore"):
        arm_and_raise()
    FailsOnRestore.armed = False
    assert full_state() == before


class _Box:
    """A minimal source over one value, whose restore can be made to fail."""

    name = "box"

    def __init__(self) -> None:
        self.value = 0
        self.fail_restores = 0

    def capture(self) -> object:
        return self.value

    def seed(self, snapshot: object, plan: object) -> None:
        self.value = 100

    def restore(self, snapshot: object) -> None:
        if self.fail_restores:
            self.fail_restores -= 1
            self.value = -1  # a half-done write
            raise OSError("restore failed")
        assert isinstance(snapshot, int)
        self.value = snapshot

    swap = swap_by_restore


def test_a_failing_swap_puts_the_captured_state_back() -> None:
    box = _Box()
    box.value = 5
    box.fail_restores = 1
    with pytest.raises(OSError, match="restore failed"):
        box.swap(7)
    assert box.value == 5


def test_a_failing_suspension_restores_every_source_and_releases_the_lock() -> None:
    from repro_ctx.core.scope import close_scope, open_scope

    first, second = _Box(), _Box()
    plan = deterministic(0).plan
    activation = open_scope("owner", plan, [first, second])  # type: ignore[list-item]
    assert (first.value, second.value) == (100, 100)
    second.fail_restores = 1  # the swap of the last source fails, then its retry works
    with pytest.raises(OSError, match="restore failed"):
        close_scope(activation, keep=True)
    assert (first.value, second.value) == (0, 0)
    assert open_activations() == ()
    with deterministic(1):  # the lock was released
        pass


def test_a_failing_resume_rolls_back() -> None:
    from repro_ctx.core.scope import close_scope, open_scope

    first, second = _Box(), _Box()
    plan = deterministic(0).plan
    activation = open_scope("owner", plan, [first, second])  # type: ignore[list-item]
    inside = close_scope(activation, keep=True)
    assert inside == [100, 100]
    first.value, second.value = 1, 2
    second.fail_restores = 1
    with pytest.raises(OSError, match="restore failed"):
        open_scope("owner", plan, [first, second], resume=inside)  # type: ignore[list-item]
    assert (first.value, second.value) == (1, 2)
    assert open_activations() == ()
