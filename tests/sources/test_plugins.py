"""Source plugins in this process: registration, seeding, restore, checkpoints, failures.

A plugin here is a ``Toy``: a library's module-level ``random.Random`` and its
source in one object, so a test reads the library's state through
``toy.rng.getstate()``, never through repro_ctx. Entry points and DataLoader
workers, which need a fresh interpreter, are in ``test_plugin_entry_points``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import repro_ctx
from repro_ctx import (
    RNGState,
    Source,
    SourcePluginWarning,
    capture,
    deterministic,
    register_source,
    reproducible,
    unregister_source,
)
from repro_ctx.diagnose.leaks import capture as leak_capture
from repro_ctx.diagnose.leaks import changes
from repro_ctx.sources import plugin_registry as registry
from repro_ctx.sources.default_set import default_sources, describe_sources
from repro_ctx.sources.plugins import plugin_seed
from repro_ctx.state.snapshot import StateMismatchError
from tests.global_state import full_state
from tests.plugin_site import registry_preserved


class Toy:
    """A library's module-level RNG, and its source."""

    def __init__(self, name: str = "toy", seed: int = 1) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.seeds: list[int] = []

    def capture(self) -> object:
        return self.rng.getstate()

    def seed(self, seed: int) -> None:
        self.seeds.append(seed)
        self.rng.seed(seed)

    def restore(self, snapshot: Any) -> None:
        self.rng.setstate(snapshot)


class PlainToy(Toy):
    """A toy that checkpoints."""

    def to_plain(self, snapshot: Any) -> object:
        version, internal, gauss = snapshot
        return {"version": version, "state": list(internal), "gauss": gauss}

    def from_plain(self, data: Any) -> object:
        return (data["version"], tuple(data["state"]), data["gauss"])


def seeded(seed: int, name: str = "toy") -> object:
    """The toy's state in a scope seeded with ``seed``: what its seed() call leaves."""
    return random.Random(plugin_seed(seed, name)).getstate()


@pytest.fixture(autouse=True)
def _isolate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Built-in RNGs restored around each test; the plugin registry put back as it was.

    A test whose threads open scopes runs outside that scope: scopes are
    serialised across threads, so the test would wait for itself.
    """
    with registry_preserved():
        if request.node.get_closest_marker("no_deterministic"):
            yield
        else:
            with deterministic(None, algorithms=None, benchmark=None, tf32=None):
                yield


# --------------------------------------------------------------------------
# The public protocol and registration
# --------------------------------------------------------------------------


def test_the_api_is_exported() -> None:
    for name in ("Source", "SourcePluginWarning", "register_source", "unregister_source"):
        assert name in repro_ctx.__all__
    assert isinstance(Toy(), Source)
    assert not isinstance(object(), Source)
    assert issubclass(SourcePluginWarning, RuntimeWarning)


class _NoSeed:
    name = "x"

    def capture(self) -> None: ...

    def restore(self, snapshot: object) -> None: ...


class _Unnamed(Toy):
    def __init__(self) -> None:
        super().__init__()
        self.name = 3  # type: ignore[assignment]


class _Unsaveable(Toy):
    def from_plain(self, data: object) -> object:
        return data


class _BadToPlain(Toy):
    to_plain = 5


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        (Toy, TypeError, "got the class Toy: pass an instance"),
        (object(), TypeError, "name is NoneType None, not a str, no capture"),
        (_NoSeed(), TypeError, "_NoSeed has no seed"),
        (_Unnamed(), TypeError, "name is int 3, not a str"),
        (_Unsaveable(), TypeError, "from_plain\\(\\) but no to_plain\\(\\)"),
        (_BadToPlain(), TypeError, "to_plain is int, not a method"),
        (Toy(""), ValueError, "non-empty str"),
        (Toy("random"), ValueError, "'random' is the name of a built-in"),
        (Toy("torch (cuda)"), ValueError, "built-in"),
    ],
)
def test_bad_sources_are_refused_and_change_nothing(
    source: object, error: type[Exception], message: str
) -> None:
    before = default_sources()
    with pytest.raises(error, match=message):
        register_source(source)  # type: ignore[arg-type]
    assert default_sources() == before
    assert registry.active_plugins() == ()


def test_names_are_unique_and_registering_again_is_a_no_op() -> None:
    toy = Toy()
    register_source(toy)
    register_source(toy)
    with pytest.raises(ValueError, match="a source named 'toy' is already registered"):
        register_source(Toy())
    assert [plugin.plugin for plugin in registry.active_plugins()] == [toy]


def test_unregister_by_object_or_by_name() -> None:
    first, second = Toy("first"), Toy("second")
    register_source(first)
    register_source(second)
    unregister_source(first)
    unregister_source("second")
    assert registry.active_plugins() == ()
    with pytest.raises(ValueError, match="'second' is not a registered source"):
        unregister_source("second")
    with pytest.raises(ValueError, match="Toy object named 'first' is not a registered source"):
        unregister_source(first)
    with pytest.raises(TypeError, match="a source or a source's name"):
        unregister_source(42)  # type: ignore[arg-type]


def test_the_registry_names_what_is_registered_when_unregistering_fails() -> None:
    register_source(Toy("kept"))
    with pytest.raises(ValueError, match=r"registered: 'kept'"):
        unregister_source(Toy("other"))


# --------------------------------------------------------------------------
# Scopes
# --------------------------------------------------------------------------


def test_a_source_is_seeded_per_name_and_restored_exactly() -> None:
    toy, other = Toy("toy"), Toy("other")
    register_source(toy)
    register_source(other)
    before = toy.rng.getstate()
    with deterministic(5):
        assert toy.rng.getstate() == seeded(5)
        assert other.rng.getstate() == seeded(5, "other")
        inside = toy.rng.random()
    with deterministic(5):
        assert toy.rng.random() == inside
    assert toy.rng.getstate() == before
    assert toy.seeds == [plugin_seed(5, "toy")] * 2
    assert plugin_seed(5, "toy") not in (5, plugin_seed(5, "other"), plugin_seed(6, "toy"))


def test_the_derived_seed_is_stable() -> None:
    # A user's streams depend on it: a change here changes every plugin's stream.
    assert plugin_seed(0, "toy") == 12549732694900680972
    assert plugin_seed(2**64 - 1, "numpy-free library") == 8322121606513914119


def test_seed_none_isolates_without_seeding() -> None:
    toy = Toy()
    register_source(toy)
    before = toy.rng.getstate()
    with deterministic(None):
        assert toy.rng.getstate() == before
        toy.rng.random()
    assert toy.seeds == []
    assert toy.rng.getstate() == before


def test_an_existing_deterministic_object_picks_up_registrations() -> None:
    scope = deterministic(3)
    with scope:  # builds and caches its sources
        pass
    toy = Toy()
    register_source(toy)
    with scope:
        assert toy.rng.getstate() == seeded(3)
    assert "toy" in [source.name for source in scope.sources()]
    unregister_source(toy)
    with scope:
        pass
    assert len(toy.seeds) == 1
    assert "toy" not in [source.name for source in scope.sources()]


def test_an_open_scope_still_restores_a_source_unregistered_inside_it() -> None:
    toy = Toy()
    register_source(toy)
    before = toy.rng.getstate()
    with deterministic(0):
        unregister_source(toy)
        toy.rng.random()
    assert toy.rng.getstate() == before


def test_a_source_registered_inside_an_open_scope_is_covered_from_the_next_scope() -> None:
    toy = Toy()
    with deterministic(0):
        register_source(toy)
        with deterministic(1):
            assert toy.rng.getstate() == seeded(1)
        toy.rng.random()
        moved = toy.rng.getstate()
    assert toy.rng.getstate() == moved  # the outer scope never captured it


def test_nested_scopes_restore_each_level() -> None:
    toy = PlainToy()
    register_source(toy)
    before = toy.rng.getstate()
    with deterministic(1):
        toy.rng.random()
        middle = toy.rng.getstate()
        with deterministic(2):
            assert toy.rng.getstate() == seeded(2)
            toy.rng.random()
        assert toy.rng.getstate() == middle
    assert toy.rng.getstate() == before


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("enter"), st.integers(0, 3)),
        st.tuples(st.just("exit"), st.none()),
        st.tuples(st.just("draw"), st.none()),
        st.tuples(st.just("register"), st.none()),
        st.tuples(st.just("unregister"), st.none()),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
def test_registration_interleaved_with_nested_scopes_matches_a_model(
    ops: list[tuple[str, int | None]],
) -> None:
    """Every scope restores exactly the sources registered when it was entered."""
    toy = Toy()
    scopes = {seed: deterministic(seed, algorithms=None) for seed in range(4)}
    registered = False
    model = toy.rng.getstate()
    stack: list[tuple[Any, object | None]] = []  # (activation owner, state captured or None)
    try:
        for op, seed in ops:
            if op == "enter":
                assert seed is not None
                stack.append((scopes[seed], model if registered else None))
                scopes[seed].__enter__()
                if registered:
                    model = seeded(seed)
            elif op == "exit" and stack:
                scope, captured = stack.pop()
                scope.__exit__(None, None, None)
                if captured is not None:
                    model = captured
            elif op == "draw":
                toy.rng.random()
                model = toy.rng.getstate()
            elif op == "register" and not registered:
                register_source(toy)
                registered = True
            elif op == "unregister" and registered:
                unregister_source(toy)
                registered = False
            assert toy.rng.getstate() == model, (op, seed)
    finally:
        while stack:
            stack.pop()[0].__exit__(None, None, None)
        if registered:
            unregister_source(toy)


def test_reproducible_generators_swap_the_source_at_every_step() -> None:
    toy = Toy()
    register_source(toy)

    @reproducible(seed=4)
    def stream() -> Iterator[float]:
        for _ in range(3):
            yield toy.rng.random()

    with deterministic(4):
        straight = [toy.rng.random() for _ in range(3)]
    outside = random.Random()
    outside.setstate(toy.rng.getstate())
    expected_outside = [outside.random() for _ in range(3)]

    got, between = [], []
    for value in stream():
        got.append(value)
        between.append(toy.rng.random())  # the caller's stream, unaffected by the generator
    assert got == straight
    assert between == expected_outside


def test_reproducible_coroutines_swap_the_source_at_every_await() -> None:
    toy = Toy()
    register_source(toy)

    @reproducible(seed=6)
    async def draws(count: int) -> list[float]:
        out = []
        for _ in range(count):
            out.append(toy.rng.random())
            await asyncio.sleep(0)
        return out

    async def both() -> tuple[list[float], list[float]]:
        return await asyncio.gather(draws(3), draws(3))

    first, second = asyncio.run(both())
    with deterministic(6):
        straight = [toy.rng.random() for _ in range(3)]
    assert first == second == straight


@pytest.mark.no_deterministic
def test_registration_from_many_threads_while_scopes_run() -> None:
    toys = [Toy(f"thread-{i}", seed=i) for i in range(4)]
    starts = [toy.rng.getstate() for toy in toys]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(toys) + 1)

    def churn(toy: Toy) -> None:
        try:
            barrier.wait()
            for _ in range(30):
                register_source(toy)
                with deterministic(1):
                    toy.rng.random()
                unregister_source(toy)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def scopes() -> None:
        barrier.wait()
        scope = deterministic(2)
        for _ in range(60):
            with scope:
                pass

    threads = [threading.Thread(target=churn, args=(toy,)) for toy in toys]
    threads.append(threading.Thread(target=scopes))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert registry.active_plugins() == ()
    assert [toy.rng.getstate() for toy in toys] == starts  # every scope restored its toy
    assert all(len(toy.seeds) >= 30 for toy in toys)


def test_one_name_registered_from_two_threads_at_once_wins_once() -> None:
    toys = [Toy("same"), Toy("same")]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def register(toy: Toy) -> None:
        barrier.wait()
        try:
            register_source(toy)
            outcomes.append("registered")
        except ValueError:
            outcomes.append("refused")

    threads = [threading.Thread(target=register, args=(toy,)) for toy in toys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "registered"]
    assert len(registry.active_plugins()) == 1


# --------------------------------------------------------------------------
# Checkpoints: capture, state_dict, fingerprint, diff
# --------------------------------------------------------------------------


def _through_torch_save(data: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(data, buffer)
    buffer.seek(0)
    loaded: dict[str, Any] = torch.load(buffer, weights_only=True)
    return loaded


def test_a_source_with_to_plain_is_checkpointed_and_restored() -> None:
    toy = PlainToy()
    register_source(toy)
    state = capture()
    saved = toy.rng.getstate()
    data = state.state_dict()
    assert data["sources"]["toy"]["kind"] == "plugin:toy"
    loaded = RNGState.from_state_dict(_through_torch_save(data))
    assert loaded == state
    toy.rng.random()
    assert "toy" in capture().diff(state)
    assert capture().fingerprint() != state.fingerprint()
    assert loaded.restore() == []
    assert toy.rng.getstate() == saved


def test_a_source_without_to_plain_is_left_out_and_diff_says_so() -> None:
    toy = Toy()
    register_source(toy)
    state = capture()
    assert "toy" in state.sources
    assert "toy" not in state.state_dict()["sources"]
    fingerprint = state.fingerprint()
    saved = toy.rng.getstate()
    toy.rng.random()
    later = capture()
    assert later.fingerprint() == fingerprint  # it cannot show in a fingerprint
    assert later.diff(state) == ["toy: not compared (its source has no to_plain, so "
                                 "state_dict() and fingerprint() leave it out)"]
    state.restore()  # a state captured here still restores it
    assert toy.rng.getstate() == saved
    loaded = RNGState.from_state_dict(state.state_dict())
    with pytest.raises(StateMismatchError, match=r"toy: not in this state \(its source has "
                                                 "no to_plain"):
        loaded.restore()
    assert loaded.restore(strict=False) == [
        "toy: not in this state (its source has no to_plain, so state_dict() and "
        "fingerprint() leave it out)"]


class _ArrayToy(Toy):
    def to_plain(self, snapshot: Any) -> object:
        return np.zeros(2)


def test_to_plain_that_returns_no_plain_data_warns_and_is_left_out() -> None:
    register_source(_ArrayToy())
    state = capture()
    with pytest.warns(SourcePluginWarning, match=r"'toy'.*got ndarray.*leave it out"):
        data = state.state_dict()
    assert "toy" not in data["sources"]
    assert any(entry.startswith("toy: not compared (toy.to_plain()") for entry in
               state.diff(state))


class _FromPlainRaises(PlainToy):
    def from_plain(self, data: Any) -> object:
        raise ValueError("not my format")


def test_from_plain_that_raises_is_a_mismatch_and_nothing_is_restored() -> None:
    register_source(_FromPlainRaises())
    loaded = RNGState.from_state_dict(capture().state_dict())
    random.random()
    before = full_state()
    with pytest.raises(StateMismatchError, match="toy: from_plain raised ValueError: not my "
                                                 "format"):
        loaded.restore()
    assert full_state() == before


def test_a_plugin_state_saved_elsewhere_is_kept_as_data_here() -> None:
    register_source(PlainToy("elsewhere"))
    data = capture().state_dict()
    unregister_source("elsewhere")
    loaded = RNGState.from_state_dict(data)
    assert loaded.state_dict()["sources"]["elsewhere"] == data["sources"]["elsewhere"]
    assert loaded.restore(strict=False) == ["elsewhere: no such source in this process"]


class _ToPlainOnly(Toy):
    def to_plain(self, snapshot: Any) -> object:
        return list(snapshot[1])


def test_a_source_with_to_plain_only_is_compared_but_not_restored_from_data() -> None:
    register_source(_ToPlainOnly())
    state = capture()
    assert "toy" in state.state_dict()["sources"]
    loaded = RNGState.from_state_dict(state.state_dict())
    assert loaded == state
    assert loaded.restore(strict=False) == [
        "toy: its source has no from_plain, so it cannot be restored from a state_dict"]


# --------------------------------------------------------------------------
# Leak checks and doctor
# --------------------------------------------------------------------------


class _Opaque:
    """A snapshot type without ``==``."""

    def __init__(self, state: object) -> None:
        self.state = state


class _OpaqueToy(PlainToy):
    def capture(self) -> object:
        return _Opaque(self.rng.getstate())

    def restore(self, snapshot: Any) -> None:
        self.rng.setstate(snapshot.state)

    def to_plain(self, snapshot: Any) -> object:
        return super().to_plain(snapshot.state)


class _ArraySnapshotToy(Toy):
    """Snapshots whose ``==`` raises (NumPy arrays in a dict): compared by their plain form."""

    def capture(self) -> object:
        return {"key": np.array(self.rng.getstate()[1])}

    def restore(self, snapshot: Any) -> None:
        pass

    def to_plain(self, snapshot: Any) -> object:
        return snapshot["key"].tolist()


@pytest.mark.parametrize("toy_type", [Toy, _OpaqueToy, _ArraySnapshotToy])
def test_leak_checks_name_a_changed_source_and_only_a_changed_one(toy_type: type[Toy]) -> None:
    toy = toy_type()
    register_source(toy)
    sources = default_sources()
    before = leak_capture(sources)
    assert changes(sources, before, leak_capture(sources)) == []
    toy.rng.random()
    found = changes(sources, before, leak_capture(sources))
    assert [str(change) for change in found] == [
        "toy: state changed (drawn from or reseeded outside a scope)"]


def test_describe_lists_plugins_with_where_they_came_from() -> None:
    class Described(Toy):
        def describe(self) -> dict[str, object]:
            return {"backend": "pure Python"}

    register_source(Described())
    register_source(PlainToy("saved"))
    described = describe_sources()
    assert described["toy"] == {"from": "register_source()",
                                "type": f"{__name__}.{Described.__qualname__}",
                                "state_dict": "no (no to_plain)", "backend": "pure Python"}
    assert described["saved"]["state_dict"] == "yes"  # type: ignore[index]
    assert registry.plugin_report()["saved"] == {
        "from": "register_source()", "status": "active", "state_dict": "yes"}


# --------------------------------------------------------------------------
# Failures: a warning names the plugin, it is dropped, built-ins stay exact
# --------------------------------------------------------------------------


class _Breaks(Toy):
    """Raises in one method; ``partial`` moves its state first (a half-done seeding)."""

    def __init__(self, where: str, partial: bool = False) -> None:
        super().__init__("breaks")
        self.where = where
        self.partial = partial
        self.calls = 0

    def _maybe_raise(self, where: str) -> None:
        self.calls += 1
        if where == self.where:
            if self.partial:
                self.rng.random()
            raise RuntimeError(f"broken {where}")

    def capture(self) -> object:
        self._maybe_raise("capture")
        return super().capture()

    def seed(self, seed: int) -> None:
        self._maybe_raise("seed")
        super().seed(seed)

    def restore(self, snapshot: Any) -> None:
        self._maybe_raise("restore")
        super().restore(snapshot)


@contextlib.contextmanager
def plugin_warnings() -> Iterator[list[str]]:
    """The messages of the ``SourcePluginWarning``s raised inside the block."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    messages.extend(str(w.message) for w in caught if w.category is SourcePluginWarning)


def _seeded_builtins(seed: int) -> tuple[float, float, float]:
    with deterministic(seed):
        return (random.random(), float(np.random.rand()), float(torch.rand(1)))


@pytest.mark.parametrize("where", ["capture", "seed", "restore"])
def test_a_plugin_that_raises_is_named_dropped_and_leaves_builtins_exact(where: str) -> None:
    expected = _seeded_builtins(0)
    broken = _Breaks(where, partial=True)
    register_source(broken)
    before, plugin_before = full_state(), broken.rng.getstate()
    with plugin_warnings() as messages, deterministic(0):
        inside = (random.random(), float(np.random.rand()), float(torch.rand(1)))
        if where == "seed":  # its half-done seeding was rolled back
            assert broken.rng.getstate() == plugin_before
    assert messages == [
        f"repro_ctx source plugin 'breaks' (register_source()): {where} raised RuntimeError: "
        f"broken {where}. It is left out of every later scope; the other sources are not "
        "affected (fix the plugin and register it again)."]
    assert inside == expected
    assert full_state() == before
    assert "breaks" not in [source.name for source in default_sources()]
    assert registry.plugin_report()["breaks"]["status"] == (
        f"dropped: {where} raised RuntimeError: broken {where}")
    calls = broken.calls
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with deterministic(0):
            pass
    assert broken.calls == calls  # later scopes leave it out
    unregister_source(broken)  # a dropped plugin can still be unregistered
    assert "breaks" not in registry.plugin_report()


def test_a_dropped_plugin_can_be_registered_again() -> None:
    broken = _Breaks("seed")
    register_source(broken)
    with pytest.warns(SourcePluginWarning), deterministic(0):
        pass
    broken.where = "nowhere"
    register_source(broken)
    with deterministic(0):
        assert broken.rng.getstate() == seeded(0, "breaks")
    assert registry.plugin_report()["breaks"]["status"] == "active"


class _SeedAndRestoreBreak(Toy):
    def seed(self, seed: int) -> None:
        raise RuntimeError("no seed")

    def restore(self, snapshot: Any) -> None:
        raise RuntimeError("no restore")


def test_a_failed_roll_back_is_named_in_the_warning() -> None:
    register_source(_SeedAndRestoreBreak())
    with pytest.warns(SourcePluginWarning) as record, deterministic(0):
        pass
    assert [str(w.message).split(": ", 1)[1].split(". ")[0] for w in record] == [
        "seed raised RuntimeError: no seed (and putting its state back raised "
        "RuntimeError: no restore)",
    ]


def test_a_failing_generator_swap_leaves_the_caller_exact() -> None:
    broken = _Breaks("never")
    register_source(broken)

    @reproducible(seed=1)
    def stream() -> Iterator[float]:
        yield random.random()
        yield random.random()

    expected = [random.Random(1).random()] * 1
    steps = stream()
    first = next(steps)
    broken.where = "restore"
    caller = random.getstate()
    with plugin_warnings() as messages:
        second = next(steps)
        steps.close()
    assert len(messages) == 1  # once, though every later swap and the close fail too
    assert random.getstate() == caller
    assert first == expected[0]
    check = random.Random(1)
    check.random()
    assert second == check.random()


def test_a_describe_that_raises_is_reported_not_raised() -> None:
    class BadDescribe(Toy):
        def describe(self) -> dict[str, object]:
            raise KeyError("x")

    register_source(BadDescribe())
    assert describe_sources()["toy"]["describe"] == "raised KeyError: 'x'"  # type: ignore[index]


def test_divergence_reports_list_torch_flags_not_plugin_details() -> None:
    from repro_ctx.diagnose.op_recorder import flags_in_effect

    class Described(Toy):
        def describe(self) -> dict[str, object]:
            return {"backend": "pure Python"}

    register_source(Described())
    flags = flags_in_effect()
    assert "torch.get_float32_matmul_precision" in flags
    assert not {"from", "type", "state_dict", "backend"} & set(flags)


def test_the_warning_points_at_the_code_that_entered_the_scope() -> None:
    register_source(_Breaks("capture"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with deterministic(0):
            pass
    assert [w.filename for w in caught if w.category is SourcePluginWarning] == [__file__]


def test_plugin_snapshots_compare_only_within_their_source() -> None:
    first, second = Toy("first"), Toy("second")
    register_source(first)
    register_source(second)
    a, b = (source.capture() for source in default_sources()[-2:])
    assert a != b  # equal states, but not the same source's
    assert a != first.rng.getstate()
    assert "'first'" in repr(a)
    assert "'second'" in repr(default_sources()[-1])


class _CaptureFails(PlainToy):
    def capture(self) -> object:
        raise OSError("no state")


def test_a_failed_capture_is_left_out_of_the_state_dict() -> None:
    register_source(_CaptureFails())
    with plugin_warnings():
        state = capture()
    assert "toy" not in state.state_dict()["sources"]
    assert state.diff(state) == ["toy: not compared (its capture failed)"]


class _ToPlainRaises(PlainToy):
    def to_plain(self, snapshot: Any) -> object:
        raise KeyError("version")


def test_to_plain_that_raises_warns_and_leak_checks_still_compare() -> None:
    register_source(_ToPlainRaises())
    with plugin_warnings() as messages:
        data = capture().state_dict()
    assert "toy" not in data["sources"]
    assert messages == [
        "repro_ctx source plugin 'toy' (register_source()): to_plain raised KeyError: "
        "'version'. The state_dict and fingerprint leave it out."]
    sources = default_sources()
    before = leak_capture(sources)
    assert changes(sources, before, leak_capture(sources)) == []  # == still compares


class _Incomparable(_OpaqueToy):
    def to_plain(self, snapshot: Any) -> object:
        raise KeyError("version")


def test_snapshots_that_cannot_be_compared_count_as_changed() -> None:
    register_source(_Incomparable())
    sources = default_sources()
    before = leak_capture(sources)
    assert [change.what for change in changes(sources, before, leak_capture(sources))] == [
        "toy"]


def test_a_plugin_unregistered_inside_a_scope_that_then_fails_is_not_reported_dropped() -> None:
    broken = _Breaks("restore")
    register_source(broken)
    with plugin_warnings() as messages, deterministic(0):
        unregister_source(broken)
    assert len(messages) == 1
    assert "breaks" not in registry.plugin_report()
