"""Lazily initialised accelerators (CUDA, XPU), on a faithful CPU stand-in of torch.cuda."""

from __future__ import annotations

import types

import pytest
import torch

from repro_ctx.core.scope import close_scope, open_scope
from repro_ctx.scopes.deterministic import deterministic
from repro_ctx.sources import default_set as _sources
from repro_ctx.sources.accelerators import LazyDeviceSource, MPSSource, build_accelerator_sources
from tests.fake_device import UNSEEDED_BASE, FakeLazyDevice, expected


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> FakeLazyDevice:
    """A fake device whose source every new scope includes."""
    fake = FakeLazyDevice()
    source = LazyDeviceSource(torch, fake, "torch (fake)")
    monkeypatch.setattr(_sources, "_default", (*_sources.default_sources(), source))
    return fake


def test_entering_and_leaving_never_initialises(device: FakeLazyDevice) -> None:
    tracker = device._lazy_seed_tracker
    with deterministic(3):
        assert not device.is_initialized()
    assert not device.is_initialized()
    assert device._lazy_seed_tracker is tracker
    assert device._queued_calls == []


def test_first_initialised_inside_a_scope_gets_the_scope_seed(device: FakeLazyDevice) -> None:
    with deterministic(3):
        assert device.rand(0) == expected(3)
        assert device.rand(1) == expected(3)
    # after exit: as if the scope had never run (never-seeded devices)
    assert device.rand(0) == expected(UNSEEDED_BASE)
    assert device.rand(1) == expected(UNSEEDED_BASE + 1)


def test_seeds_pending_before_the_scope_survive_it(device: FakeLazyDevice) -> None:
    device.manual_seed_all(11)
    device.manual_seed(12)  # device 0 only, queued after seed_all
    with deterministic(3):
        assert device.rand(0) == expected(3)
    assert device.rand(0) == expected(12)
    assert device.rand(1) == expected(11)


def test_pending_seeds_still_apply_when_cuda_initialises_after_the_scope(
    device: FakeLazyDevice,
) -> None:
    device.manual_seed_all(11)
    with deterministic(3):
        pass
    assert device.rand(1) == expected(11)


def test_seeding_inside_an_uninitialised_scope_is_dropped_at_exit(
    device: FakeLazyDevice,
) -> None:
    log: list[str] = []
    with deterministic(3):
        device.manual_seed_all(50)
        device.set_rng_state(torch.Generator().manual_seed(60).get_state(), device=1)
        device.queue_other(log)
    assert len(device._queued_calls) == 1  # the RNG call is gone, the other call stays
    assert device.rand(0) == expected(UNSEEDED_BASE)
    assert device.rand(1) == expected(UNSEEDED_BASE + 1)
    assert log == ["other ran"]


def test_user_seeds_inside_the_scope_apply_inside_when_it_initialises_there(
    device: FakeLazyDevice,
) -> None:
    with deterministic(3):
        device.manual_seed(70)
        assert device.rand(0) == expected(70)
        assert device.rand(1) == expected(3)
    assert device.rand(0) == expected(UNSEEDED_BASE)


def test_nested_scopes_with_initialisation_in_the_inner_one(device: FakeLazyDevice) -> None:
    device.manual_seed_all(5)
    with deterministic(1):
        with deterministic(2):
            assert device.rand(0) == expected(2)
        assert device.rand(0) == expected(1)  # the outer scope's fresh seeded state
    assert device.rand(0) == expected(5)


def test_initialised_devices_are_captured_seeded_and_restored(device: FakeLazyDevice) -> None:
    device.init()
    device.rand(0)
    states = [g.get_state() for g in device.default_generators]
    with deterministic(4):
        assert device.rand(0) == expected(4)
        assert device.rand(1) == expected(4)
    assert all(torch.equal(g.get_state(), s) for g, s in zip(device.default_generators, states))


def test_seed_none_isolates_an_initialised_device(device: FakeLazyDevice) -> None:
    device.init()
    state = device.default_generators[0].get_state()
    with deterministic(None):
        device.rand(0)
    assert torch.equal(device.default_generators[0].get_state(), state)


def test_a_bad_fork_is_never_touched(device: FakeLazyDevice) -> None:
    device.init()
    device.bad_fork = True
    device.default_generators = ()  # any access would now fail loudly
    tracker = device._lazy_seed_tracker
    with deterministic(4):
        pass
    assert device._lazy_seed_tracker is tracker


def test_suspended_scope_resumes_with_its_seed_after_the_caller_initialised(
    device: FakeLazyDevice,
) -> None:
    """The generator-swap path: a scope suspended before CUDA init, resumed after."""
    scope = deterministic(8)
    plan, sources = scope.effective_plan(), scope.sources()
    activation = open_scope(scope, plan, sources)
    inside = close_scope(activation, keep=True)  # suspend before any CUDA use
    assert inside is not None
    assert device.rand(0) == expected(UNSEEDED_BASE)  # the caller initialises CUDA
    after_caller = device.default_generators[0].get_state()
    activation = open_scope(scope, plan, sources, resume=inside)
    assert device.rand(0) == expected(8)  # the scope's own, never-used stream
    inside = close_scope(activation, keep=True)
    assert torch.equal(device.default_generators[0].get_state(), after_caller)


def test_suspended_scope_that_initialised_hands_back_the_callers_pending_state(
    device: FakeLazyDevice,
) -> None:
    device.manual_seed_all(21)
    scope = deterministic(8)
    plan, sources = scope.effective_plan(), scope.sources()
    activation = open_scope(scope, plan, sources)
    assert device.rand(0) == expected(8)  # initialises inside
    close_scope(activation, keep=True)
    assert device.rand(0) == expected(21)  # the caller's pending seed, as if no scope


def test_build_accelerator_sources_on_this_build() -> None:
    names = [source.name for source in build_accelerator_sources(torch)]
    assert names == (["torch (cuda)"] if torch.cuda.is_available() else [])


def test_build_accelerator_sources_detects_devices() -> None:
    class Broken(FakeLazyDevice):
        def is_available(self) -> bool:
            raise RuntimeError("driver exploded")

    mps = types.SimpleNamespace(
        get_rng_state=lambda: torch.Generator().get_state(),
        set_rng_state=lambda state: None,
        manual_seed=lambda seed: None,
    )
    fake_torch = types.SimpleNamespace(
        cuda=FakeLazyDevice(),
        xpu=Broken(),
        backends=types.SimpleNamespace(mps=types.SimpleNamespace(is_available=lambda: True)),
        mps=mps,
        _utils=torch._utils,
    )
    names = [source.name for source in build_accelerator_sources(fake_torch)]
    assert names == ["torch (cuda)", "torch (mps)"]


def test_mps_source_round_trip() -> None:
    generator = torch.Generator()
    mps = types.SimpleNamespace(
        get_rng_state=generator.get_state,
        set_rng_state=generator.set_state,
        manual_seed=generator.manual_seed,
    )
    source = MPSSource(types.SimpleNamespace(mps=mps))
    snapshot = source.capture()
    source.seed(snapshot, deterministic(6).plan)
    assert torch.rand(3, generator=generator).tolist() == expected(6)
    source.restore(snapshot)
    assert torch.equal(generator.get_state(), snapshot)
    source.seed(snapshot, deterministic(None).plan)
    assert torch.equal(generator.get_state(), snapshot)
    assert source.describe() == {"devices": 1}


def test_describe_lazy_device(device: FakeLazyDevice) -> None:
    source = LazyDeviceSource(torch, device, "x")
    assert source.describe() == {"initialised": False, "devices": 2, "in bad fork": False}
