"""Source snapshots as plain data, and back: what ``RNGState.state_dict()`` holds.

Snapshots stay the fast objects the sources produce; only here are they
turned into plain data (see ``_plain``) that ``torch.load(path,
weights_only=True)`` accepts as it is. A source that knows its own plain form
is its own codec (``kind``, ``to_plain``, ``check``, ``resolve``, ``items``:
see ``_plain.Codec``); the rest get theirs from the table below, chosen by
the live source's type when saving and by the recorded ``kind`` when loading.
A state saved by one process can so be checked against another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import torch

from ._accelerators import Initialised, LazyDeviceSource, MPSSource, Pending
from ._environment import EnvironmentSource
from ._flags import FlagsSource, plain
from ._generators import adapter_named
from ._plain import (
    Codec,
    Malformed,
    Plain,
    Resolved,
    byte_tensor,
    check_plain,
    digest,
    expect,
    field,
)
from ._registry import RegistrySource
from ._tf32 import TF32Snapshot, TF32Source
from ._torch_random import TorchCPUSource

FLAG_KINDS: Final = frozenset({"flags", "tf32"})
"""Determinism and precision flags: a loaded state restores them only when asked to."""
MACHINE_KINDS: Final = frozenset({"environment"})
"""What a loaded state never restores: it describes the machine, not the streams."""
MACHINE_FLAGS: Final = frozenset({"torch.get_num_threads"})
"""Flags that describe the machine: a loaded state leaves them as they are."""


class _TableCodec:
    """A codec kept here for a source that does not convert its own snapshots."""

    kind: str

    def __init__(self, source: Any) -> None:
        self.source = source

    def items(self, data: Plain) -> dict[str, Plain]:
        return {"": data}


class EnvironmentCodec(_TableCodec):
    """Environment variables: name -> value, ``None`` for unset."""

    kind = "environment"

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, tuple)
        return dict(zip(self.source.variables, snapshot, strict=True))

    def check(self, data: object) -> Plain:
        out = check_plain(data, "environment")
        expect(out, dict, "environment", "a dict of variable name -> str or None")
        for name, value in out.items():
            expect(value, (str, type(None)), f"environment[{name!r}]", "a str or None")
        return out

    def resolve(self, data: Plain) -> Resolved:
        source = self.source
        current = source.capture()
        mismatches = [f"{name} was not captured" for name in source.variables if name not in data]
        mismatches += [f"{name} is not covered here" for name in data
                       if name not in source.variables]
        pairs = zip(source.variables, current, strict=True)
        values = tuple(data.get(name, now) for name, now in pairs)
        return Resolved(values, tuple(mismatches))

    def items(self, data: Plain) -> dict[str, Plain]:
        return dict(data)


class _Skip(Exception):
    """One flag value that cannot be restored here."""


def _flag_value(loaded: Plain, current: object) -> object:
    """``loaded`` (plain) as a value of the kind ``current`` is, or ``_Skip``."""
    members = getattr(type(current), "__members__", None)
    if isinstance(members, Mapping):  # a torch enum: recorded by name
        if not isinstance(loaded, str) or loaded not in members:
            raise _Skip(f"{loaded!r} is not one of {sorted(members)}")
        return members[loaded]
    if isinstance(current, tuple):
        if not isinstance(loaded, list) or len(loaded) != len(current):
            raise _Skip(f"expected {len(current)} values, got {loaded!r}")
        return tuple(_flag_value(item, now) for item, now in zip(loaded, current, strict=True))
    if type(loaded) is not type(current):
        raise _Skip(
            f"captured {type(loaded).__name__} {loaded!r}, but it is "
            f"{type(current).__name__} here"
        )
    return loaded


class FlagsCodec(_TableCodec):
    """A table of torch flags: flag name -> value (enums by name, tuples as lists)."""

    kind = "flags"

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, tuple)
        flags = self.source.flags
        return {flag.name: plain(value) for flag, value in zip(flags, snapshot, strict=True)}

    def check(self, data: object) -> Plain:
        out = check_plain(data, "flags")
        expect(out, dict, "flags", "a dict of flag name -> value")
        for name, value in out.items():
            if isinstance(value, (torch.Tensor, dict)):
                raise Malformed(f"flags[{name!r}]: expected a scalar or a list, got {value!r:.60}")
        return out

    def resolve(self, data: Plain) -> Resolved:
        source = self.source
        current = source.capture()
        values: list[object] = []
        mismatches: list[str] = []
        for flag, now in zip(source.flags, current, strict=True):
            if flag.name not in data:
                mismatches.append(f"{flag.name} was not captured")
                values.append(now)
                continue
            if flag.name in MACHINE_FLAGS or now is None or data[flag.name] is None:
                # a machine setting, or unreadable on one side (a module not imported
                # yet): left as it is, which blocks no restore of the streams
                values.append(now)
                continue
            try:
                values.append(_flag_value(data[flag.name], now))
            except _Skip as skip:
                mismatches.append(f"{flag.name}: {skip}")
                values.append(now)
        names = {flag.name for flag in source.flags}
        mismatches += [f"{name} does not exist in this torch" for name in data
                       if name not in names]
        return Resolved(tuple(values), tuple(mismatches))

    def items(self, data: Plain) -> dict[str, Plain]:
        return dict(data)


_MATMUL_PRECISIONS: Final = ("highest", "high", "medium")


class TF32Codec(_TableCodec):
    """Legacy matmul precision and cuDNN ``allow_tf32``, and each ``fp32_precision`` node."""

    kind = "tf32"

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, TF32Snapshot)
        return {
            "float32_matmul_precision": snapshot.matmul_precision,
            "cudnn_allow_tf32": snapshot.cudnn_allow_tf32,
            "fp32_precision": {
                f"{backend}.{op}": value
                for (backend, op), value in zip(self.source._nodes, snapshot.nodes, strict=True)
            },
        }

    def check(self, data: object) -> Plain:
        out = check_plain(data, "tf32")
        precision = field(out, "float32_matmul_precision", "tf32")
        if precision is not None and precision not in _MATMUL_PRECISIONS:
            raise Malformed(f"tf32: float32_matmul_precision must be one of "
                            f"{_MATMUL_PRECISIONS} or None, got {precision!r}")
        expect(field(out, "cudnn_allow_tf32", "tf32"), (bool, type(None)),
               "tf32.cudnn_allow_tf32", "a bool or None")
        nodes = expect(field(out, "fp32_precision", "tf32"), dict, "tf32.fp32_precision",
                       "a dict of 'backend.op' -> str")
        for node, value in nodes.items():
            expect(value, str, f"tf32.fp32_precision[{node!r}]", "a str")
        return out

    def resolve(self, data: Plain) -> Resolved:
        current = self.source.capture()
        loaded = data["fp32_precision"]
        names = [f"{backend}.{op}" for backend, op in self.source._nodes]
        nodes = tuple(loaded.get(name, now) for name, now in zip(names, current.nodes, strict=True))
        mismatches = [f"fp32_precision[{name}] was not captured" for name in names
                      if name not in loaded]
        mismatches += [f"fp32_precision[{name}] does not exist in this torch" for name in loaded
                       if name not in names]
        snapshot = TF32Snapshot(data["float32_matmul_precision"], data["cudnn_allow_tf32"], nodes)
        return Resolved(snapshot, tuple(mismatches))

    def items(self, data: Plain) -> dict[str, Plain]:
        out = {
            "float32_matmul_precision": data["float32_matmul_precision"],
            "cudnn.allow_tf32": data["cudnn_allow_tf32"],
        }
        for node, value in data["fp32_precision"].items():
            out[f"fp32_precision[{node}]"] = value
        return out


# --- torch generators ---------------------------------------------------------


def _state_size_mismatch(loaded: torch.Tensor, current: torch.Tensor) -> str | None:
    if loaded.numel() != current.numel():
        return f"the state has {loaded.numel()} bytes, a generator here has {current.numel()}"
    return None


class TensorStateCodec(_TableCodec):
    """An eager generator whose state is one byte tensor: torch CPU, MPS."""

    kind = "tensor"

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, torch.Tensor)
        return {"state": snapshot.clone()}

    def check(self, data: object) -> Plain:
        out = check_plain(data, "generator")
        byte_tensor(field(out, "state", "generator"), "generator.state")
        return out

    def resolve(self, data: Plain) -> Resolved:
        problem = _state_size_mismatch(data["state"], self.source.capture())
        if problem is not None:
            return Resolved(None, (problem,))
        return Resolved(data["state"].clone())


_STATUSES: Final = ("initialised", "uninitialised", "unusable")


class LazyDeviceCodec(_TableCodec):
    """CUDA/XPU: one state per device once initialised, else only the status.

    An uninitialised device has no state yet (its queued seeds are not RNG
    state), and a device unusable in a forked child has none to read.
    """

    kind = "lazy-device"

    def to_plain(self, snapshot: object) -> Plain:
        if isinstance(snapshot, Initialised):
            return {"status": "initialised", "states": [s.clone() for s in snapshot.states]}
        if isinstance(snapshot, Pending):
            return {"status": "uninitialised", "states": []}
        return {"status": "unusable", "states": []}

    def check(self, data: object) -> Plain:
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
        live = self.source.capture()
        if data["status"] != "initialised":
            if isinstance(live, Initialised):
                return Resolved(None, (f"captured while {data['status']}; it is initialised "
                                       "here, so its state would not be reproduced",))
            return Resolved(None)
        states: list[torch.Tensor] = data["states"]
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
                    if (problem := _state_size_mismatch(state, now)) is not None]
        if problems:
            return Resolved(None, tuple(problems))
        return Resolved(Initialised(tuple(state.clone() for state in states)))

    def items(self, data: Plain) -> dict[str, Plain]:
        out: dict[str, Plain] = {"status": data["status"]}
        for i, state in enumerate(data["states"]):
            out[f"device {i}"] = state
        return out


def check_local_device(source: Any, snapshot: object) -> tuple[str, ...]:
    """An in-process CUDA snapshot that ``restore`` would silently not apply."""
    if isinstance(snapshot, Initialised) and not isinstance(source.capture(), Initialised):
        return ("unusable in this process (a forked child of a process that had "
                "initialised it)",)
    return ()


# --- registered generators ---------------------------------------------------


def _describe(entry: Plain) -> str:
    return f"{entry['kind']}({entry['type']})"


class RegistryCodec(_TableCodec):
    """Registered generators in registration order, each with its kind and type.

    On load they are matched to the generators registered here by position,
    and must agree in kind and type.
    """

    kind = "registry"

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, tuple)
        out = []
        for obj, entry, state in snapshot:
            adapter, info = entry.adapter, entry.info
            out.append({"kind": adapter.kind, "type": adapter.type_name(obj, info),
                        "state": adapter.to_plain(obj, info, state)})
        return {"generators": out}

    def check(self, data: object) -> Plain:
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
        live = self.source.capture()
        loaded: list[Plain] = data["generators"]
        restore: list[tuple[object, Any, object]] = []
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

    def items(self, data: Plain) -> dict[str, Plain]:
        return {f"#{i} {_describe(entry)}": entry for i, entry in enumerate(data["generators"])}


class UnknownCodec:
    """A kind this version cannot restore (say, from a newer repro_ctx): kept as data."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def to_plain(self, snapshot: object) -> Plain:  # pragma: no cover - never live
        raise TypeError(f"no live source has kind {self.kind!r}")

    def check(self, data: object) -> Plain:
        return check_plain(data, f"source of kind {self.kind!r}")

    def resolve(self, data: Plain) -> Resolved:  # pragma: no cover - never live
        raise TypeError(f"no live source has kind {self.kind!r}")

    def items(self, data: Plain) -> dict[str, Plain]:
        return {"": data}


# --------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------

_TABLE: Final[tuple[tuple[type, type[_TableCodec]], ...]] = (
    (EnvironmentSource, EnvironmentCodec),
    (FlagsSource, FlagsCodec),
    (TF32Source, TF32Codec),
    (TorchCPUSource, TensorStateCodec),
    (MPSSource, TensorStateCodec),
    (LazyDeviceSource, LazyDeviceCodec),
    (RegistrySource, RegistryCodec),
)


def _owns_plain_form(source: object) -> bool:
    return all(hasattr(source, attr) for attr in ("kind", "to_plain", "check", "resolve", "items"))


def codec_for(source: object) -> Codec:
    """The codec of a live source, or a ``TypeError`` naming it."""
    if _owns_plain_form(source):
        return source  # type: ignore[return-value]
    for source_type, codec_type in _TABLE:
        if isinstance(source, source_type):
            return codec_type(source)  # type: ignore[return-value]
    raise TypeError(
        f"cannot convert the state of source {getattr(source, 'name', source)!r} "
        f"({type(source).__qualname__}) to plain data"
    )


def codec_named(kind: str, sources: Iterable[object]) -> Codec:
    """The codec that reads data recorded with ``kind``: a live source's, or ``UnknownCodec``."""
    for source in sources:
        try:
            codec = codec_for(source)
        except TypeError:
            continue
        if codec.kind == kind:
            return codec
    for _source_type, codec_type in _TABLE:
        if codec_type.kind == kind:  # no such source here: the codec still checks the data
            return codec_type(None)  # type: ignore[return-value]
    return UnknownCodec(kind)


def item_digests(kind: str, codec: Codec, data: Plain) -> dict[str, str]:
    """A digest per part ``diff`` names; the kind is part of every digest."""
    return {item: digest([kind, value]) for item, value in codec.items(data).items()}


def diff_digests(
    mine: Mapping[str, Mapping[str, str]], theirs: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Name every source (and part of a source) whose digests differ."""
    out: list[str] = []
    for name in _union(mine, theirs):
        if name not in theirs:
            out.append(f"{name}: only in the first state")
        elif name not in mine:
            out.append(f"{name}: only in the second state")
        else:
            a, b = mine[name], theirs[name]
            for item in _union(a, b):
                if a.get(item) != b.get(item):
                    out.append(f"{name}: {item}" if item else name)
    return out


def unreadable_flags(
    mine: Mapping[str, tuple[str, Plain]], theirs: Mapping[str, tuple[str, Plain]]
) -> dict[str, str]:
    """``diff`` entries of flags that read ``None`` in one state: what a restore skips."""
    out: dict[str, str] = {}
    for name, (kind, data) in mine.items():
        if kind != "flags" or name not in theirs or theirs[name][0] != "flags":
            continue
        other = theirs[name][1]
        for flag in data.keys() & other.keys():
            a, b = data[flag], other[flag]
            if (a is None) != (b is None):
                side = "first" if a is None else "second"
                out[f"{name}: {flag}"] = (
                    f"reads None in the {side} state: not imported or not available there; "
                    "a restore leaves it as it is")
    return out


def _union(a: Iterable[str], b: Iterable[str]) -> list[str]:
    seen = dict.fromkeys(a)
    seen.update(dict.fromkeys(b))
    return list(seen)
