"""capture() and RNGState: exact restore, plain state dicts, fingerprints, diffs, mismatches."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import repro_ctx
from repro_ctx import (
    RNGState,
    capture,
    deterministic,
    register,
    registered,
    unregister,
)
from repro_ctx.sources import accelerators as _accelerators
from repro_ctx.sources import default_set as _sources
from repro_ctx.sources.default_set import default_sources
from repro_ctx.sources.numpy_access import listed as numpy_plain
from repro_ctx.state.snapshot import StateMismatchError
from tests import resume_training
from tests.global_state import (
    HAS_FP32_PRECISION,
    INDUCTOR_FLAG,
    draws,
    env_state,
    flag_state,
    full_state,
    rng_state,
    scramble,
)
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _inductor_config() -> None:
    """Inductor's config reads None until imported, and scramble() imports it: do it first.

    (In a fixture, not at import, so that collecting this module imports nothing.)
    """
    import torch._inductor.config  # noqa: F401


@pytest.fixture
def unscoped() -> None:
    """Requested by tests that must not run inside ``_isolate_rng``'s scope (threads)."""


@pytest.fixture(autouse=True)
def _isolate_rng(request: pytest.FixtureRequest) -> Iterator[None]:
    """These tests move every RNG on purpose; a scope puts them back afterwards."""
    if "unscoped" in request.fixturenames:
        yield
        return
    with deterministic(None, algorithms=None, benchmark=None, tf32=None):
        yield


def _loaded(state: RNGState) -> RNGState:
    """``state`` as another process would see it: saved and loaded with weights_only."""
    buffer = io.BytesIO()
    torch.save(state.state_dict(), buffer)
    buffer.seek(0)
    return RNGState.from_state_dict(torch.load(buffer, weights_only=True))


def _edited(state: RNGState, edit: Callable[[dict[str, Any]], None]) -> RNGState:
    data = state.state_dict()
    edit(data["sources"])
    return RNGState.from_state_dict(data)


def _assert_plain(value: object) -> None:
    if isinstance(value, dict):
        assert all(isinstance(key, str) for key in value)
        for item in value.values():
            _assert_plain(item)
    elif isinstance(value, list):
        for item in value:
            _assert_plain(item)
    else:
        assert value is None or type(value) in (bool, int, float, str, torch.Tensor), value


# --------------------------------------------------------------------------
# Capture and restore
# --------------------------------------------------------------------------


def test_capture_covers_every_source_a_scope_covers() -> None:
    assert capture().sources == tuple(source.name for source in default_sources())


def test_restore_puts_every_rng_flag_and_variable_back() -> None:
    np.random.randn(1)  # a cached Gaussian
    random.gauss(0, 1)  # a cached gauss_next
    before = full_state()
    state = capture()
    scramble(random.Random(1))
    assert full_state() != before
    assert state.restore() == []
    assert full_state() == before
    expected = draws()
    state.restore()
    assert draws() == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_loaded_state_restores_the_streams_and_leaves_the_machine(seed: int) -> None:
    scramble(random.Random(seed))
    rngs = rng_state()
    loaded = _loaded(capture())
    expected = draws()
    scramble(random.Random(seed + 10))
    torch.set_num_threads(1 if torch.get_num_threads() > 1 else 2)
    machine = {**flag_state(), **env_state(), "threads": torch.get_num_threads()}
    assert loaded.restore() == []
    assert rng_state() == rngs
    assert {**flag_state(), **env_state(), "threads": torch.get_num_threads()} == machine
    assert draws() == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_loaded_state_restores_its_flags_when_asked(seed: int) -> None:
    scramble(random.Random(seed))

    def streams_and_flags() -> dict[str, Any]:
        out = {**rng_state(), **flag_state()}
        del out["torch.get_num_threads"]
        return out

    before = streams_and_flags()
    loaded = _loaded(capture())
    scramble(random.Random(seed + 10))
    threads = torch.get_num_threads()
    environment = env_state()
    torch.set_num_threads(1 if threads > 1 else 2)
    threads = torch.get_num_threads()
    assert loaded.restore(flags=True) == []
    assert streams_and_flags() == before
    assert torch.get_num_threads() == threads  # a machine setting: never from a checkpoint
    assert env_state() == environment


def test_a_state_captured_here_restores_everything_unless_told() -> None:
    scramble(random.Random(3))
    before = full_state()
    state = capture()
    scramble(random.Random(4))
    after_scramble = flag_state()
    state.restore(flags=False)
    assert rng_state() == {k: v for k, v in before.items() if k in rng_state()}
    assert flag_state() == after_scramble
    state.restore()
    assert full_state() == before


def test_restore_rejects_a_flags_value_that_is_not_a_bool() -> None:
    with pytest.raises(TypeError, match="flags must be True, False or None"):
        capture().restore(flags="yes")  # type: ignore[arg-type]


def test_a_flag_unreadable_on_one_side_blocks_nothing_and_diff_says_so() -> None:
    """Import order: inductor's config imported in one process, not in the other."""
    state = capture()

    def unreadable(sources: dict[str, Any]) -> None:
        sources["torch flags"]["state"][INDUCTOR_FLAG] = None

    elsewhere = _edited(state, unreadable)
    assert elsewhere.restore(flags=True) == []
    (entry,) = [item for item in elsewhere.diff(state) if "inductor" in item]
    assert "reads None in the first state" in entry
    assert "a restore leaves it as it is" in entry


def test_the_cached_gaussians_survive_a_state_dict() -> None:
    np.random.seed(0)  # no Gaussian cached yet, whatever ran before
    random.seed(0)
    np.random.randn(3)
    random.gauss(0, 1)
    data = capture().state_dict()["sources"]
    assert data["numpy.random (global)"]["state"]["has_gauss"] == 1
    assert data["random"]["state"]["gauss_next"] is not None
    loaded = RNGState.from_state_dict(capture().state_dict())
    expected = (np.random.randn(), random.gauss(0, 1))
    np.random.randn(2)
    random.random()
    loaded.restore()
    assert (np.random.randn(), random.gauss(0, 1)) == expected


def test_restore_inside_a_scope_is_undone_when_it_exits() -> None:
    state = capture()
    expected = draws()
    before = full_state()
    with deterministic(3):
        state.restore()
        assert draws() == expected
    assert full_state() == before


def test_an_enum_flag_round_trips_by_name() -> None:
    # Ck (torch >= 2.9) is the one non-default BLAS a CPU build accepts; the older
    # torches are tested as CUDA builds, which take cuBLASLt without a GPU. Their
    # default is Cublas (2.4 has no member named Default).
    members = torch._C._BlasBackend.__members__
    ck = members.get("Ck", members["Cublaslt"])
    default = members.get("Default", members["Cublas"])
    torch._C._set_blas_preferred_backend(ck)
    data = capture().state_dict()
    name = "torch.backends.cuda.preferred_blas_library"
    assert data["sources"]["torch flags"]["state"][name] == ck.name
    torch._C._set_blas_preferred_backend(default)
    assert torch._C._get_blas_preferred_backend() != ck
    RNGState.from_state_dict(data).restore(flags=True)
    assert torch._C._get_blas_preferred_backend() == ck


def test_a_failed_restore_is_rolled_back(monkeypatch: pytest.MonkeyPatch) -> None:
    state = capture()
    scramble(random.Random(4))
    before = full_state()
    source = next(s for s in default_sources() if s.name == "random")
    original = source.restore
    calls = []

    def fail_once(snapshot: object) -> None:
        calls.append(snapshot)
        if len(calls) == 1:
            raise OSError("boom")
        original(snapshot)

    monkeypatch.setattr(source, "restore", fail_once)
    with pytest.raises(OSError, match="boom"):
        state.restore()
    assert full_state() == before  # numpy and torch, restored before `random`, rolled back


@pytest.mark.usefixtures("unscoped")
def test_restore_waits_for_a_scope_open_in_another_thread() -> None:
    state = capture()
    expected = draws()
    inside, release = threading.Event(), threading.Event()
    seen: list[object] = []

    def hold_a_scope() -> None:
        with deterministic(0):
            inside.set()
            release.wait(HANG_TIMEOUT)
            seen.append(draws())

    thread = threading.Thread(target=hold_a_scope)
    thread.start()
    assert inside.wait(HANG_TIMEOUT)
    restorer = threading.Thread(target=lambda: seen.append(state.restore()))
    restorer.start()
    release.set()
    thread.join(HANG_TIMEOUT)
    restorer.join(HANG_TIMEOUT)
    assert seen[1] == []  # the restore ran after the scope closed...
    assert draws() == expected  # ...and was not undone by it


# --------------------------------------------------------------------------
# The state dict
# --------------------------------------------------------------------------


def test_the_state_dict_holds_only_plain_types_and_loads_with_weights_only() -> None:
    generators = [np.random.default_rng(1), random.Random(2), torch.Generator(),
                  np.random.RandomState(3), np.random.Philox(4)]
    for obj in generators:
        register(obj)
    try:
        data = capture().state_dict()
        _assert_plain(data)
        buffer = io.BytesIO()
        torch.save(data, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)
        assert RNGState.from_state_dict(loaded) == RNGState.from_state_dict(data)
    finally:
        for obj in generators:
            unregister(obj)


def test_state_dicts_are_private_copies() -> None:
    state = capture()
    fingerprint = state.fingerprint()
    data = state.state_dict()
    data["sources"]["torch (cpu)"]["state"]["state"].zero_()
    data["sources"]["random"]["state"]["state"][0] += 1
    assert state.fingerprint() == fingerprint
    loaded = RNGState.from_state_dict(state.state_dict())
    again = state.state_dict()
    loaded_fingerprint = loaded.fingerprint()
    again["sources"]["torch (cpu)"]["state"]["state"].zero_()
    assert loaded.fingerprint() == loaded_fingerprint == fingerprint


def test_a_state_dict_round_trips_unchanged() -> None:
    data = capture().state_dict()
    again = RNGState.from_state_dict(data).state_dict()
    assert RNGState.from_state_dict(again).fingerprint() == RNGState.from_state_dict(
        data
    ).fingerprint()
    assert again["sources"].keys() == data["sources"].keys()


class TrackedGenerator(np.random.Generator):
    """A Generator subclass: types are matched by the bit generator, not the wrapper."""


class MyRandom(random.Random):
    pass


def test_registered_generators_are_matched_by_order_and_type() -> None:
    makers: list[Callable[[int], object]] = [
        lambda s: TrackedGenerator(np.random.SFC64(s)),
        np.random.PCG64,
        lambda s: np.random.RandomState(np.random.MT19937(s)),
        MyRandom,
        lambda s: torch.Generator().manual_seed(s),
    ]
    saved = [make(1) for make in makers]
    for obj in saved:
        register(obj)
    np_draw = saved[2].randn  # type: ignore[attr-defined]
    np_draw(1)  # cached Gaussian on the RandomState
    data = capture().state_dict()
    expected = [_draw(obj) for obj in saved]
    for obj in saved:
        unregister(obj)
    fresh = [make(99) for make in makers]  # "another process": other objects, other states
    for obj in fresh:
        register(obj)
    try:
        assert RNGState.from_state_dict(data).restore() == []
        assert [_draw(obj) for obj in fresh] == expected
    finally:
        for obj in fresh:
            unregister(obj)


def _draw(obj: object) -> object:
    if isinstance(obj, np.random.Generator):
        return obj.random(3).tolist()
    if isinstance(obj, np.random.RandomState):
        return obj.randn(3).tolist()
    if isinstance(obj, np.random.BitGenerator):
        return obj.random_raw(3).tolist()
    if isinstance(obj, random.Random):
        return [obj.random(), obj.gauss(0, 1)]
    assert isinstance(obj, torch.Generator)
    return torch.rand(3, generator=obj).tolist()


# --------------------------------------------------------------------------
# End to end: stop, save, load in a fresh process, resume
# --------------------------------------------------------------------------


def test_training_resumed_in_a_fresh_process_is_bitwise_identical(tmp_path: Path) -> None:
    total, stop = 3 * resume_training.STEPS_PER_EPOCH, resume_training.STEPS_PER_EPOCH
    with deterministic(0):
        model, optimizer, loader, generator = resume_training.build()
        try:
            resume_training.train(model, optimizer, loader, 0, total)
            straight = resume_training.weights(model)
        finally:
            unregister(generator)
    with deterministic(0):
        model, optimizer, loader, generator = resume_training.build()
        try:
            assert registered() == [generator]
            resume_training.train(model, optimizer, loader, 0, stop)
            checkpoint = tmp_path / "checkpoint.pt"
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "rng": capture().state_dict()}, checkpoint)
            at_stop = resume_training.weights(model)
        finally:
            unregister(generator)
    assert at_stop != straight
    output = tmp_path / "weights.bin"
    subprocess.run(
        [sys.executable, "-m", "tests.resume_training", str(checkpoint), str(stop), str(total),
         str(output)],
        cwd=ROOT, check=True, timeout=HANG_TIMEOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert output.read_bytes() == straight


# --------------------------------------------------------------------------
# Fingerprints and diffs
# --------------------------------------------------------------------------


def test_equal_states_have_equal_fingerprints_across_processes() -> None:
    state = capture()
    assert capture().fingerprint() == state.fingerprint() == _loaded(state).fingerprint()
    assert len(state.fingerprint()) == 16
    int(state.fingerprint(), 16)
    assert capture() == state
    assert hash(capture()) == hash(state)
    assert state.fingerprint() in repr(state)
    assert capture().diff(state) == []


def _draw_random(n: int) -> None:
    for _ in range(n):
        random.random()


def _draw_numpy(n: int) -> None:
    np.random.randn(n)


def _draw_torch(n: int) -> None:
    torch.rand(n)


def _set_benchmark(n: int) -> None:
    torch.backends.cudnn.benchmark = n % 2 == 1


def _set_algorithms(n: int) -> None:
    torch.use_deterministic_algorithms(n % 2 == 1, warn_only=n > 1)


def _set_precision(n: int) -> None:
    torch.set_float32_matmul_precision(("highest", "high", "medium")[n])


def _set_hashseed(n: int) -> None:
    if n == 0:
        os.environ.pop("PYTHONHASHSEED", None)
    else:
        os.environ["PYTHONHASHSEED"] = str(n)


# mutation -> what diff() names after applying it with amount 1
_MUTATIONS: dict[str, tuple[Callable[[int], None], list[str]]] = {
    "random": (_draw_random, ["random"]),
    "numpy": (_draw_numpy, ["numpy.random (global)"]),
    "torch": (_draw_torch, ["torch (cpu)"]),
    "benchmark": (_set_benchmark, ["torch flags: torch.backends.cudnn.benchmark"]),
    "algorithms": (_set_algorithms, [
        "torch flags: torch.use_deterministic_algorithms (mode, warn_only)",
        # torch >= 2.10 writes inductor's `deterministic` too (test_facts)
        *(["torch flags: torch._inductor.config.deterministic"]
          if INDUCTOR_FLAG.endswith(".deterministic") else []),
    ]),
    "precision": (_set_precision, [  # the legacy value and the nodes it drives (torch >= 2.9)
        "tf32: float32_matmul_precision",
        *(["tf32: fp32_precision[cuda.matmul]", "tf32: fp32_precision[mkldnn.matmul]"]
          if HAS_FP32_PRECISION else []),
    ]),
    "hashseed": (_set_hashseed, ["environment: PYTHONHASHSEED"]),
}


def _reset_flags() -> None:
    _set_benchmark(0)
    _set_algorithms(0)
    _set_precision(0)
    _set_hashseed(0)


@pytest.mark.parametrize("name", list(_MUTATIONS))
def test_diff_names_exactly_what_changed(name: str) -> None:
    _reset_flags()
    state = capture()
    mutate, expected = _MUTATIONS[name]
    mutate(1)
    changed = capture()
    assert changed.diff(state) == expected
    assert changed.fingerprint() != state.fingerprint()
    assert changed != state
    assert _loaded(changed).diff(state) == expected


def test_diff_names_a_registered_generator() -> None:
    g = np.random.default_rng(0)
    register(g)
    try:
        state = capture()
        g.random()
        assert capture().diff(state) == ["registered generators: #0 numpy.random.Generator(PCG64)"]
    finally:
        unregister(g)
    assert capture().diff(state) == [
        "registered generators: #0 numpy.random.Generator(PCG64)"
    ]


def test_diff_names_sources_present_on_one_side_only() -> None:
    state = capture()
    fewer = _edited(state, lambda sources: sources.pop("random"))
    assert state.diff(fewer) == ["random: only in the first state"]
    assert fewer.diff(state) == ["random: only in the second state"]
    with pytest.raises(TypeError, match="two RNGState"):
        state.diff(state.state_dict())  # type: ignore[arg-type]
    assert (state == "state") is False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(sorted(_MUTATIONS)), st.integers(0, 2)), max_size=4))
def test_fingerprints_are_equal_exactly_when_states_are(
    mutations: list[tuple[str, int]],
) -> None:
    _reset_flags()
    base, base_public = capture(), full_state()
    for name, amount in mutations:
        _MUTATIONS[name][0](amount)
    now = capture()
    same = full_state() == base_public
    assert (now.fingerprint() == base.fingerprint()) is same
    assert (now == base) is same
    assert (now.diff(base) == []) is same


# --------------------------------------------------------------------------
# Immutability and bad input
# --------------------------------------------------------------------------


def test_rng_state_is_immutable() -> None:
    state = capture()
    with pytest.raises(AttributeError, match="immutable"):
        state._parts = ()  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del state._parts
    with pytest.raises(TypeError, match="capture"):
        RNGState()
    with pytest.raises(TypeError, match="strict must be True or False"):
        state.restore(strict="no")  # type: ignore[arg-type]


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="other"), "'format' must be"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.update(sources=[]), "'sources' must be a dict"),
        (lambda d: d["sources"].update(random=[1]), r"sources\['random'\] must be a dict"),
        (lambda d: d["sources"]["random"].pop("kind"), "with 'kind' and 'state'"),
        (lambda d: d["sources"]["random"]["state"].update(state=[1, 2]), "not a valid state"),
        (lambda d: d["sources"]["random"]["state"].update(gauss_next="x"), "a float or None"),
        (lambda d: d["sources"]["random"]["state"].update(state="x"), "a list of ints"),
        (lambda d: d["sources"]["random"]["state"]["state"].__setitem__(0, 1.5),
         "a list of ints"),
        (lambda d: d["sources"]["random"]["state"].pop("version"), "missing 'version'"),
        (lambda d: d["sources"]["numpy.random (global)"]["state"]["state"].update(key=[1]),
         "not a valid state"),
        (lambda d: d["sources"]["numpy.random (global)"]["state"].update(gauss=1),
         "expected a float"),
        (lambda d: d["sources"]["numpy.random (global)"]["state"]["state"]["key"].append(5),
         "does not read back unchanged"),
        (lambda d: d["sources"]["numpy.random (global)"]["state"]["state"].update(pos=700),
         r"pos must be an int in \[0, 624\]"),
        (lambda d: d["sources"]["numpy.random (global)"]["state"].update(bit_generator="Nope"),
         "'Nope' is not a numpy.random BitGenerator"),
        (lambda d: d["sources"].update({"torch (cuda)": {"kind": "lazy-device", "state": {
            "status": "broken", "states": []}}}), "device.status must be one of"),
        (lambda d: d["sources"].update({"torch (cuda)": {"kind": "lazy-device", "state": {
            "status": "initialised", "states": []}}}), "an initialised device has states"),
        (lambda d: d["sources"].update({"torch (cuda)": {"kind": "lazy-device", "state": {
            "status": "unusable", "states": [torch.zeros(2, dtype=torch.uint8)]}}}),
         "an initialised device has states"),
        (lambda d: d["sources"]["torch (cpu)"]["state"].update(state=torch.zeros(3)),
         "torch.uint8"),
        (lambda d: d["sources"]["torch (cpu)"]["state"].update(state=np.zeros(3)),
         "got ndarray"),
        (lambda d: d["sources"]["torch flags"]["state"].update(x={"a": 1}),
         "a scalar or a list"),
        (lambda d: d["sources"]["torch flags"].update(state=[]), "a dict of flag name"),
        (lambda d: d["sources"]["tf32"]["state"].update(float32_matmul_precision="low"),
         "must be one of"),
        (lambda d: d["sources"]["tf32"]["state"].update(cudnn_allow_tf32="yes"),
         "a bool or None"),
        (lambda d: d["sources"]["tf32"]["state"]["fp32_precision"].update(x=1), "a str"),
        (lambda d: d["sources"]["environment"]["state"].update(PYTHONHASHSEED=1),
         "a str or None"),
        (lambda d: d["sources"]["environment"]["state"].update({1: "x"}),
         "keys must be strings"),
        (lambda d: d["sources"]["registered generators"]["state"].update(generators=[
            {"kind": "other", "type": "x", "state": None}]), "kind must be a generator kind"),
        (lambda d: d["sources"]["registered generators"]["state"].update(generators=[
            {"kind": "torch.Generator", "type": "cpu", "state": [1]}]), "torch.uint8"),
        (lambda d: d["sources"]["registered generators"]["state"].update(generators=[
            {"kind": "numpy.random.Generator", "type": 1, "state": {}}]), "expected a str"),
        (lambda d: d["sources"]["registered generators"]["state"].update(generators=[
            {"kind": "random.Random", "type": "random.Random", "state": {}}]),
         "missing 'version'"),
        (lambda d: d["sources"]["registered generators"]["state"].update(generators=[
            {"kind": "numpy.random.Generator", "type": "PCG64", "state": {"state": {}}}]),
         "missing 'bit_generator'"),
    ],
)
def test_malformed_state_dicts_raise_value_error(
    edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = capture().state_dict()
    edit(data)
    with pytest.raises(ValueError, match=message):
        RNGState.from_state_dict(data)


def test_numpy_scalars_become_python_numbers() -> None:
    plain = numpy_plain({"a": np.uint32(3), "b": np.float64(0.5), "c": np.arange(2)})
    assert plain == {"a": 3, "b": 0.5, "c": [0, 1]}
    assert type(plain["a"]) is int


def test_a_state_dict_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match="expected the dict"):
        RNGState.from_state_dict([("format", "x")])  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# States captured elsewhere: strict by default, or restore what matches
# --------------------------------------------------------------------------


def test_a_missing_source_is_a_mismatch_and_nothing_is_restored() -> None:
    state = capture()
    expected = draws()
    without_random = _edited(state, lambda sources: sources.pop("random"))
    scramble(random.Random(5))
    before = full_state()
    with pytest.raises(StateMismatchError, match="random: not in this state") as info:
        without_random.restore()
    assert info.value.mismatches == ["random: not in this state"]
    assert full_state() == before  # nothing restored
    random_state = random.getstate()
    assert without_random.restore(strict=False) == ["random: not in this state"]
    assert random.getstate() == random_state  # skipped
    assert draws()[1:] == expected[1:]  # the rest restored


def _flag_reading_none() -> str | None:
    """A flag that reads None in this torch (cuDNN's benchmark limit on a CPU build).

    A CUDA build reads 10 there even without a GPU, and may have no such flag:
    then the edit below that gives it a value is left out.
    """
    flags: Any = next(s for s in default_sources() if s.name == "torch flags")
    return next((flag.name for flag, value in zip(flags.flags, flags.capture(), strict=True)
                 if value is None and "inductor" not in flag.name), None)


_NONE_FLAG = _flag_reading_none()


def test_every_mismatch_is_listed_in_one_error() -> None:
    state = capture()

    def edit(sources: dict[str, Any]) -> None:
        sources["torch (cuda)"] = {"kind": "lazy-device",
                                   "state": {"status": "initialised",
                                             "states": [torch.zeros(16, dtype=torch.uint8)] * 2}}
        sources["torch (future)"] = {"kind": "from-a-newer-version", "state": {"x": [1.5]}}
        flags = sources["torch flags"]["state"]
        flags.pop("torch.backends.cudnn.benchmark")
        flags["torch.backends.imaginary"] = True
        flags["torch.backends.cudnn.enabled"] = "yes"
        flags["torch.backends.cuda.preferred_linalg_library"] = "Abacus"
        flags["torch.use_deterministic_algorithms (mode, warn_only)"] = [True]
        if _NONE_FLAG is not None:  # a value where this torch reads None is no mismatch
            flags[_NONE_FLAG] = 10
        nodes = sources["tf32"]["state"]["fp32_precision"]
        if HAS_FP32_PRECISION:
            nodes.pop("cuda.matmul")
        nodes["tpu.all"] = "ieee"
        environment = sources["environment"]["state"]
        environment.pop("PYTHONHASHSEED")
        environment["OTHER"] = "1"
        sources["torch (cpu)"]["state"]["state"] = torch.zeros(7, dtype=torch.uint8)
        pcg = np.random.RandomState(np.random.PCG64(0)).get_state(legacy=False)
        sources["numpy.random (global)"]["state"] = numpy_plain(pcg)
        sources["random"]["kind"] = "tensor"
        sources["random"]["state"] = {"state": torch.zeros(7, dtype=torch.uint8)}

    elsewhere = _edited(state, edit)
    assert _loaded(elsewhere) == elsewhere  # an unknown kind is kept as data
    with pytest.raises(StateMismatchError) as info:
        elsewhere.restore(flags=True)
    mismatches = info.value.mismatches
    expected = [
        "torch (cuda): no such source in this process",
        "torch (future): no such source in this process",
        "torch flags: torch.backends.cudnn.benchmark was not captured",
        "torch flags: torch.backends.imaginary does not exist in this torch",
        "torch flags: torch.backends.cudnn.enabled: captured str 'yes', but it is bool here",
        "torch flags: torch.backends.cuda.preferred_linalg_library: 'Abacus' is not one of",
        "torch flags: torch.use_deterministic_algorithms (mode, warn_only): expected 2 values",
        *(["tf32: fp32_precision[cuda.matmul] was not captured"] if HAS_FP32_PRECISION else []),
        "tf32: fp32_precision[tpu.all] does not exist in this torch",
        "torch (cpu): the state has 7 bytes",
        "numpy.random (global): captured with a PCG64 bit generator",
        "random: captured as 'tensor', but it is 'random' here",
    ]
    for needle in expected:
        assert any(needle in item for item in mismatches), needle
    assert len(mismatches) == len(expected)
    assert "nothing was restored" in str(info.value)


def test_non_strict_restores_the_matching_flags_only() -> None:
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = True
    state = capture()
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = False

    def edit(sources: dict[str, Any]) -> None:
        sources["torch flags"]["state"].pop("torch.backends.cudnn.benchmark")

    skipped = _edited(state, edit).restore(strict=False, flags=True)
    assert skipped == ["torch flags: torch.backends.cudnn.benchmark was not captured"]
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False


def test_registered_generator_mismatches() -> None:
    a, b = np.random.default_rng(1), random.Random(2)
    register(a)
    register(b)
    try:
        state = capture()
        expected_a = a.random()
        unregister(b)
        c = torch.Generator()
        register(c)
        register(d := np.random.default_rng(3))
        try:
            with pytest.raises(StateMismatchError) as info:
                _loaded(state).restore()
            assert info.value.mismatches == [
                "registered generators: #1: captured random.Random(random.Random), "
                "registered here torch.Generator(cpu)",
                "registered generators: #2 numpy.random.Generator registered here was not "
                "captured",
            ]
            a.random()
            assert len(_loaded(state).restore(strict=False)) == 2
            assert a.random() == expected_a  # the matching generator was restored
        finally:
            unregister(c)
            unregister(d)
        unregister(a)
        with pytest.raises(StateMismatchError) as info:
            _loaded(state).restore()
        assert info.value.mismatches == [
            "registered generators: #0 numpy.random.Generator(PCG64) is not registered here",
            "registered generators: #1 random.Random(random.Random) is not registered here",
        ]
    finally:
        for obj in (a, b):
            if any(o is obj for o in registered()):
                unregister(obj)


def test_registered_generator_states_that_do_not_fit() -> None:
    g, t = np.random.default_rng(1), torch.Generator()
    register(g)
    register(t)
    try:
        def edit(sources: dict[str, Any]) -> None:
            entries = sources["registered generators"]["state"]["generators"]
            entries[0]["state"]["state"] = {"state": "x", "inc": 1}
            entries[1]["state"] = torch.zeros(3, dtype=torch.uint8)

        with pytest.raises(StateMismatchError) as info:
            _edited(capture(), edit).restore()
        first, second = info.value.mismatches
        assert first.startswith("registered generators: #0 numpy.random.Generator(PCG64): "
                                "state: not a valid state")
        assert second.startswith("registered generators: #1 torch.Generator(cpu): "
                                 "the state has 3 bytes")
    finally:
        unregister(g)
        unregister(t)


# --------------------------------------------------------------------------
# Accelerators, with a fake device module (the real ones need a GPU)
# --------------------------------------------------------------------------


class FakeDeviceModule:
    """What LazyDeviceSource reads of torch.cuda, with CPU generators as devices."""

    def __init__(self, devices: int, initialised: bool = True) -> None:
        self.default_generators = [torch.Generator().manual_seed(i) for i in range(devices)]
        self.initialised = initialised
        self.bad_fork = False
        self._lazy_seed_tracker = object()
        self._queued_calls: list[Any] = []

    def _is_in_bad_fork(self) -> bool:
        return self.bad_fork

    def is_initialized(self) -> bool:
        return self.initialised and not self.bad_fork

    def device_count(self) -> int:
        return len(self.default_generators)


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeDeviceModule:
    module = FakeDeviceModule(2)
    source = _accelerators.LazyDeviceSource(torch, module, "torch (cuda)")
    monkeypatch.setattr(_sources, "_default", (*default_sources(), source))
    return module


def _device_draws(module: FakeDeviceModule) -> list[float]:
    return [torch.rand(1, generator=g).item() for g in module.default_generators]


def test_device_states_round_trip(fake_cuda: FakeDeviceModule) -> None:
    state = capture()
    data = state.state_dict()["sources"]["torch (cuda)"]
    assert data["kind"] == "lazy-device"
    assert data["state"]["status"] == "initialised"
    assert len(data["state"]["states"]) == 2
    loaded = _loaded(state)
    expected = _device_draws(fake_cuda)
    assert loaded.restore() == []
    assert _device_draws(fake_cuda) == expected
    state.restore()
    assert _device_draws(fake_cuda) == expected


def test_diff_names_the_device_that_differs(fake_cuda: FakeDeviceModule) -> None:
    state = capture()
    torch.rand(1, generator=fake_cuda.default_generators[1])
    assert capture().diff(state) == ["torch (cuda): device 1"]


def test_another_device_count_is_a_mismatch(fake_cuda: FakeDeviceModule) -> None:
    loaded = _loaded(capture())
    fake_cuda.default_generators.pop()
    with pytest.raises(StateMismatchError, match=r"torch \(cuda\): 2 device\(s\) captured, 1 here"):
        loaded.restore()


def test_a_device_state_of_another_size_is_a_mismatch(fake_cuda: FakeDeviceModule) -> None:
    def edit(sources: dict[str, Any]) -> None:
        sources["torch (cuda)"]["state"]["states"][1] = torch.zeros(5, dtype=torch.uint8)

    with pytest.raises(StateMismatchError, match="device 1: the state has 5 bytes"):
        _edited(capture(), edit).restore()


def test_uninitialised_devices(fake_cuda: FakeDeviceModule) -> None:
    initialised = _loaded(capture())
    fake_cuda.initialised = False
    pending = capture()
    data = pending.state_dict()["sources"]["torch (cuda)"]["state"]
    assert data == {"status": "uninitialised", "states": []}
    assert _loaded(pending).restore() == []  # nothing to restore, nothing missing
    assert pending.restore() == []
    with pytest.raises(StateMismatchError, match="not initialised in this process"):
        initialised.restore()
    fake_cuda.initialised = True
    with pytest.raises(StateMismatchError, match="captured while uninitialised"):
        _loaded(pending).restore()


def test_devices_unusable_in_a_forked_child(fake_cuda: FakeDeviceModule) -> None:
    state = capture()
    loaded = _loaded(state)
    fake_cuda.bad_fork = True
    unusable = capture()
    assert unusable.state_dict()["sources"]["torch (cuda)"]["state"]["status"] == "unusable"
    assert unusable.restore() == []
    assert _loaded(unusable).restore() == []
    for candidate in (state, loaded):
        with pytest.raises(StateMismatchError, match="unusable in this process"):
            candidate.restore()
    expected = draws()
    assert state.restore(strict=False) == [
        "torch (cuda): unusable in this process (a forked child of a process that had "
        "initialised it)"
    ]
    assert draws() == expected


def test_a_cpu_state_loaded_where_cuda_is_in_use(fake_cuda: FakeDeviceModule) -> None:
    data = capture().state_dict()
    del data["sources"]["torch (cuda)"]
    with pytest.raises(StateMismatchError, match=r"torch \(cuda\): not in this state"):
        RNGState.from_state_dict(data).restore()


class FakeMPS:
    def __init__(self) -> None:
        self.generator = torch.Generator().manual_seed(7)

    def get_rng_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def manual_seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)


def test_an_eager_accelerator_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    mps = FakeMPS()
    source = _accelerators.MPSSource(type("FakeTorch", (), {"mps": mps})())
    monkeypatch.setattr(_sources, "_default", (*default_sources(), source))
    state = capture()
    assert state.state_dict()["sources"]["torch (mps)"]["kind"] == "tensor"
    expected = torch.rand(2, generator=mps.generator).tolist()
    _loaded(state).restore()
    assert torch.rand(2, generator=mps.generator).tolist() == expected


def test_a_source_without_a_codec_cannot_be_serialised(monkeypatch: pytest.MonkeyPatch) -> None:
    class Custom:
        name = "custom"

        def capture(self) -> object:
            return 1

        def seed(self, snapshot: object, plan: object) -> None: ...

        def restore(self, snapshot: object) -> None: ...

        def swap(self, snapshot: object) -> object:
            return 1

    monkeypatch.setattr(_sources, "_default", (*default_sources(), Custom()))
    state = capture()
    assert state.restore() == []
    with pytest.raises(TypeError, match="cannot convert the state of source 'custom'"):
        state.state_dict()


def test_the_public_names() -> None:
    assert repro_ctx.capture is capture
    assert repro_ctx.RNGState is RNGState
    assert issubclass(StateMismatchError, ValueError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        capture()
