"""Accelerator generators: CUDA and XPU (lazily initialised) and MPS.

CUDA's rules, which XPU shares (see shared FACTS):

* Reading a CUDA generator initialises CUDA, so an uninitialised device is
  never read. Its seeding is *queued* instead: torch keeps pending seeds in
  ``_lazy_seed_tracker`` and runs them when CUDA first initialises.
* A scope entered while CUDA is uninitialised installs its own tracker in
  front of the one it found. If CUDA first initialises inside the scope, that
  tracker runs the displaced pending seeds, records the resulting state (what
  the program would have had without the scope), then applies the scope's
  seed. Exit restores the recorded state. If CUDA is still uninitialised at
  exit, the displaced tracker goes back, so nothing of the scope stays queued.
* In a forked child of a CUDA parent, CUDA is unusable and nothing is touched.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Final

from ..core.plain import Malformed, Plain, Resolved, byte_tensor, check_plain, expect, field
from ..core.source import Plan, swap_by_restore
from .torch_cpu import TensorStatePlain, state_size_mismatch

_UNUSABLE: Final = "unusable"
_STATUSES: Final = ("initialised", "uninitialised", "unusable")


def _tracker_base(torch: Any) -> type:
    base = getattr(getattr(torch, "_utils", None), "_LazySeedTracker", None)
    return base if isinstance(base, type) else object


@dataclass(frozen=True, eq=False)
class Pending:
    """Snapshot of an uninitialised device: the tracker installed at capture."""

    tracker: Any
    queued: int


@dataclass(frozen=True, eq=False)
class Initialised:
    """Snapshot of an initialised device: one state per device."""

    states: tuple[Any, ...]


class LazyDeviceSource:
    """``torch.cuda`` or ``torch.xpu`` generators, one per device."""

    kind = "lazy-device"

    def __init__(self, torch: Any, module: Any, name: str) -> None:
        self.name = name
        self._module = module
        # tracker -> the device states its pending calls produce, recorded when
        # one of our trackers ran them during initialisation.
        self._results: weakref.WeakKeyDictionary[Any, tuple[Any, ...]] = (
            weakref.WeakKeyDictionary()
        )
        self._tracker_type: Any = _make_scope_tracker(_tracker_base(torch))

    def _generators(self) -> tuple[Any, ...]:
        return tuple(self._module.default_generators)

    def capture(self) -> object:
        module = self._module
        if module._is_in_bad_fork():
            return _UNUSABLE
        if module.is_initialized():
            return Initialised(tuple([g.get_state() for g in self._generators()]))
        return Pending(module._lazy_seed_tracker, len(module._queued_calls))

    def seed(self, snapshot: object, plan: Plan) -> None:
        if plan.seed is None or snapshot is _UNUSABLE:
            return
        seed = plan.seed
        if isinstance(snapshot, Initialised):
            for generator in self._generators():
                generator.manual_seed(seed)
            return
        assert isinstance(snapshot, Pending)
        self._module._lazy_seed_tracker = self._tracker_type(self, snapshot.tracker, seed)

    def restore(self, snapshot: object) -> None:
        if snapshot is _UNUSABLE:
            return
        module = self._module
        if isinstance(snapshot, Initialised):
            if module.is_initialized():
                for generator, state in zip(self._generators(), snapshot.states):
                    generator.set_state(state)
            return
        assert isinstance(snapshot, Pending)
        if not module.is_initialized():
            module._lazy_seed_tracker = snapshot.tracker
            _drop_rng_calls_since(module._queued_calls, snapshot.queued)
            return
        states = self.states_after(snapshot.tracker)
        if states is not None:
            for generator, state in zip(self._generators(), states):
                generator.set_state(state)

    swap = swap_by_restore

    def states_after(self, tracker: Any) -> tuple[Any, ...] | None:
        """The states initialisation gives when ``tracker`` holds the pending seeds.

        Known for our own trackers (their seed overwrites every device) and
        for any tracker one of ours ran during initialisation; otherwise
        ``None``: those seeds ran outside any scope and nothing must change.
        """
        if isinstance(tracker, self._tracker_type):
            replayed: tuple[Any, ...] = tracker.replay()
            return replayed
        return self._results.get(tracker)

    def record(self, tracker: Any) -> None:
        self._results[tracker] = tuple([g.get_state() for g in self._generators()])

    def seed_all(self, seed: int) -> None:
        for generator in self._generators():
            generator.manual_seed(seed)

    def describe(self) -> dict[str, object]:
        module = self._module
        return {
            "initialised": bool(module.is_initialized()),
            "devices": int(module.device_count()),
            "in bad fork": bool(module._is_in_bad_fork()),
        }

    # -- plain data: one state per device once initialised, else only the status --
    # An uninitialised device has no state yet (its queued seeds are not RNG
    # state), and a device unusable in a forked child has none to read.

    def to_plain(self, snapshot: object) -> Plain:
        if isinstance(snapshot, Initialised):
            return {"status": "initialised", "states": [s.clone() for s in snapshot.states]}
        if isinstance(snapshot, Pending):
            return {"status": "uninitialised", "states": []}
        return {"status": "unusable", "states": []}

    @staticmethod
    def check(data: object) -> Plain:
        out = check_plain(data, "device")
        status = field(out, "status", "device")
        if status not in _STATUSES:
            raise Malformed(f"device.status must be one of {_STATUSES}, got {status!r}")
        states = expect(field(out, "states", "device"), list, "device.states", "a list")
        for i, state in enumerate(states):
            byte_tensor(state, f"device.states[{i}]")
        if (status == "initialised") != bool(states):
            raise Malformed("device.states: an initialised device has states, others have none")
        return out

    def resolve(self, data: Plain) -> Resolved:
        live = self.capture()
        if data["status"] != "initialised":
            if isinstance(live, Initialised):
                return Resolved(None, (f"captured while {data['status']}; it is initialised "
                                       "here, so its state would not be reproduced",))
            return Resolved(None)
        states: list[Any] = data["states"]
        if isinstance(live, Pending):
            return Resolved(None, (f"not initialised in this process; initialise it first "
                                   f"to restore its {len(states)} device state(s)",))
        if not isinstance(live, Initialised):
            return Resolved(None, ("unusable in this process (a forked child of a process "
                                   "that had initialised it)",))
        if len(live.states) != len(states):
            return Resolved(None, (f"{len(states)} device(s) captured, "
                                   f"{len(live.states)} here",))
        problems = [f"device {i}: {problem}"
                    for i, (state, now) in enumerate(zip(states, live.states, strict=True))
                    if (problem := state_size_mismatch(state, now)) is not None]
        if problems:
            return Resolved(None, tuple(problems))
        return Resolved(Initialised(tuple(state.clone() for state in states)))

    @staticmethod
    def items(data: Plain) -> dict[str, Plain]:
        out: dict[str, Plain] = {"status": data["status"]}
        for i, state in enumerate(data["states"]):
            out[f"device {i}"] = state
        return out


def check_local_device(source: object, snapshot: object) -> tuple[str, ...]:
    """An in-process device snapshot that ``restore`` would silently not apply."""
    if (isinstance(snapshot, Initialised) and isinstance(source, LazyDeviceSource)
            and not isinstance(source.capture(), Initialised)):
        return ("unusable in this process (a forked child of a process that had "
                "initialised it)",)
    return ()


def _drop_rng_calls_since(queued: list[Any], start: int) -> None:
    """Remove RNG calls (``torch.<device>.random``) queued at or after ``start``."""
    keep = [
        entry for entry in queued[start:]
        if not getattr(entry[0], "__module__", "").endswith(".random")
    ]
    del queued[start:]
    queued.extend(keep)


def _make_scope_tracker(base: type) -> type:
    class ScopeSeedTracker(base):  # type: ignore[misc]
        """Pending seeds of one scope, run after the seeds it displaced."""

        def __init__(self, source: LazyDeviceSource, displaced: Any, seed: int) -> None:
            if base is not object:
                super().__init__()
            self.manual_seed_all_cb: Any = getattr(self, "manual_seed_all_cb", None)
            self.manual_seed_cb: Any = getattr(self, "manual_seed_cb", None)
            self.call_order: list[Any] = getattr(self, "call_order", [])
            self.source = source
            self.displaced = displaced
            self.seed = seed

        def queue_seed_all(self, cb: Any, traceback: Any) -> None:
            self.manual_seed_all_cb = (cb, traceback)
            self.call_order = [self.manual_seed_cb, self.manual_seed_all_cb]

        def queue_seed(self, cb: Any, traceback: Any) -> None:
            self.manual_seed_cb = (cb, traceback)
            self.call_order = [self.manual_seed_all_cb, self.manual_seed_cb]

        def get_calls(self) -> list[Any]:
            return [(self.run_at_init, [])]

        def run_at_init(self) -> None:
            for call in self.displaced.get_calls():
                if call:
                    call[0]()
            self.source.record(self.displaced)
            self.replay_own()

        def replay_own(self) -> None:
            self.source.seed_all(self.seed)
            for call in self.call_order:
                if call:
                    call[0]()

        def replay(self) -> tuple[Any, ...]:
            self.replay_own()
            return tuple([g.get_state() for g in self.source._generators()])

    return ScopeSeedTracker


class MPSSource(TensorStatePlain):
    """Apple's MPS generator: eager, one device."""

    name = "torch (mps)"

    def __init__(self, torch: Any) -> None:
        self._mps = torch.mps

    def capture(self) -> object:
        return self._mps.get_rng_state()

    def seed(self, snapshot: object, plan: Plan) -> None:
        if plan.seed is not None:
            self._mps.manual_seed(plan.seed)

    def restore(self, snapshot: object) -> None:
        self._mps.set_rng_state(snapshot)

    swap = swap_by_restore

    def describe(self) -> dict[str, object]:
        return {"devices": 1}


def build_accelerator_sources(torch: Any) -> list[Any]:
    """One source per accelerator this process can use; none on a CPU-only build."""
    sources: list[Any] = []
    for name in ("cuda", "xpu"):
        module = getattr(torch, name, None)
        if module is None or not hasattr(module, "_lazy_seed_tracker"):
            continue
        try:
            available = bool(module.is_available())
        except Exception:
            available = False
        if available:
            sources.append(LazyDeviceSource(torch, module, f"torch ({name})"))
    mps_backend = getattr(torch.backends, "mps", None)
    if mps_backend is not None and mps_backend.is_available():
        sources.append(MPSSource(torch))
    return sources
