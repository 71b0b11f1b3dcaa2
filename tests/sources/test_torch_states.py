"""torch generator states of the right size but invalid content: refused at load or skipped.

torch checks a state's content only in ``set_state``; repro_ctx tries a loaded
state on a scratch generator, so a checkpoint that torch would refuse raises
a ``ValueError`` naming its key path in ``from_state_dict``, as ``random``'s
and NumPy's do, instead of a bare ``RuntimeError`` from ``restore``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import torch

from repro_ctx import RNGState, capture, deterministic, register, unregister
from repro_ctx.sources import generators as _generators
from repro_ctx.sources.torch_cpu import TorchCPUSource, cpu_state_bytes, rejected_state
from repro_ctx.state.snapshot import StateMismatchError

CPU_STATE_BYTES = 5056  # torch 2.x: a CPUGeneratorImplState


@pytest.fixture(autouse=True)
def _isolate_rng() -> Iterator[None]:
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        yield


def _junk_high_words(state: torch.Tensor) -> torch.Tensor:
    """``state`` with junk in the high 32 bits of each of the 624 64-bit words of mt19937."""
    junk = state.clone()
    words = junk[24:24 + 624 * 8].view(624, 8)
    words[:, 4:] = 0xAB
    return junk


# -- what torch does (the facts the check relies on) ------------------------------------------


def test_torch_refuses_an_all_zero_cpu_state_in_set_state_only() -> None:
    generator = torch.Generator().manual_seed(1)
    before = generator.get_state()
    assert before.numel() == CPU_STATE_BYTES == cpu_state_bytes()
    zeros = torch.zeros(CPU_STATE_BYTES, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="Invalid mt19937 state"):
        generator.set_state(zeros)
    assert torch.equal(generator.get_state(), before)  # a refused CPU state changes nothing
    with pytest.raises(RuntimeError, match="size"):
        generator.set_state(before[:-1].clone())


def test_torch_takes_a_cpu_state_with_junk_it_drops() -> None:
    """So reading a state back proves nothing: the check is whether set_state takes it."""
    generator = torch.Generator().manual_seed(1)
    state = generator.get_state()
    junk = _junk_high_words(state)
    scratch = torch.Generator()
    scratch.set_state(junk)
    assert not torch.equal(scratch.get_state(), junk)
    assert torch.equal(torch.rand(8, generator=scratch), torch.rand(8, generator=generator))


def test_rejected_state_names_what_torch_says() -> None:
    state = torch.Generator().manual_seed(2).get_state()
    assert rejected_state(state) is None
    assert rejected_state(_junk_high_words(state)) is None
    problem = rejected_state(torch.zeros(CPU_STATE_BYTES, dtype=torch.uint8))
    assert problem == ("not a valid state: a torch.Generator refuses it "
                       "(Invalid mt19937 state)")


# -- at load: from_state_dict ------------------------------------------------------------------


def _zeros() -> torch.Tensor:
    return torch.zeros(CPU_STATE_BYTES, dtype=torch.uint8)


def test_an_invalid_cpu_state_is_refused_at_load_naming_its_key_path() -> None:
    data = capture().state_dict()
    data["sources"]["torch (cpu)"]["state"]["state"] = _zeros()
    with pytest.raises(ValueError, match=(
        r"^malformed RNGState state dict: sources\['torch \(cpu\)'\]: generator.state: "
        r"not a valid state: a torch.Generator refuses it \(Invalid mt19937 state\)$"
    )):
        RNGState.from_state_dict(data)
    with pytest.raises(ValueError, match=r"generator\.state: not a valid state"):
        TorchCPUSource.check({"state": _zeros()})


def test_an_invalid_registered_generator_state_is_refused_at_load() -> None:
    generator = torch.Generator().manual_seed(3)
    register(generator)
    try:
        data = capture().state_dict()
    finally:
        unregister(generator)
    data["sources"]["registered generators"]["state"]["generators"][0]["state"] = _zeros()
    with pytest.raises(ValueError, match=(
        r"sources\['registered generators'\]: registered generators\[0\].state: "
        r"not a valid state: a torch.Generator refuses it \(Invalid mt19937 state\)"
    )):
        RNGState.from_state_dict(data)


def test_a_valid_state_with_bytes_torch_drops_loads_and_restores_the_stream() -> None:
    generator = torch.Generator().manual_seed(4)
    register(generator)
    try:
        torch.manual_seed(5)
        state = capture()
        expected = (torch.rand(4), torch.rand(4, generator=generator))
        data = state.state_dict()
        cpu = data["sources"]["torch (cpu)"]["state"]
        cpu["state"] = _junk_high_words(cpu["state"])
        entry = data["sources"]["registered generators"]["state"]["generators"][0]
        entry["state"] = _junk_high_words(entry["state"])
        loaded = RNGState.from_state_dict(data)
        assert loaded.restore() == []
        assert all(torch.equal(a, b) for a, b in zip(
            (torch.rand(4), torch.rand(4, generator=generator)), expected, strict=True))
    finally:
        unregister(generator)


def test_a_state_of_another_size_is_left_to_restore() -> None:
    """Not a CPU state here (another torch's, an MPS one): restore names the size."""
    data = capture().state_dict()
    data["sources"]["torch (cpu)"]["state"]["state"] = torch.zeros(16, dtype=torch.uint8)
    loaded = RNGState.from_state_dict(data)
    assert loaded.restore(strict=False) == [
        f"torch (cpu): the state has 16 bytes, a generator here has {CPU_STATE_BYTES}"]


# -- at restore: a state the load could not judge -------------------------------------------


def test_a_registered_state_refused_at_restore_is_a_mismatch_strict_false_skips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CUDA generator's state is judged only by the live device's generator, at restore.

    Here the load-time check is switched off, so that a CPU generator's
    refused state reaches restore as a CUDA one would on a GPU machine.
    """
    generator = torch.Generator().manual_seed(6)
    register(generator)
    try:
        data = capture().state_dict()
        data["sources"]["registered generators"]["state"]["generators"][0]["state"] = _zeros()
        monkeypatch.setattr(_generators, "check_cpu_state", lambda state, where: None)
        loaded = RNGState.from_state_dict(data)
        expected = random.random()  # the next draw after the captured state
        random.seed(8)
        torch.rand(3, generator=generator)
        before = generator.get_state()
        skipped = loaded.restore(strict=False)
        assert skipped == [
            "registered generators: #0 torch.Generator(cpu): not a valid state: "
            "a torch.Generator refuses it (Invalid mt19937 state)"]
        assert torch.equal(generator.get_state(), before)  # skipped, untouched
        assert random.random() == expected  # the rest restored
        with pytest.raises(StateMismatchError, match="refuses it"):
            loaded.restore()
    finally:
        unregister(generator)
