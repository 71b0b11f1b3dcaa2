"""Source snapshots as plain data, and back: what ``RNGState.state_dict()`` holds.

Snapshots stay the fast, opaque objects the sources produce; only here are they
turned into plain data (tensors, ints, floats, strings, ``None``, bools, lists
and dicts) that ``torch.load(path, weights_only=True)`` accepts as it is. Each
kind of source has one *codec*, chosen by the type of the live source when
saving and by the recorded ``kind`` when loading, so sources stay small and a
state saved by one process can be checked against another:

* ``to_plain(source, snapshot)``: fresh plain data for a snapshot;
* ``check(data)``: validate loaded data and return a private copy (a
  ``ValueError`` names what is malformed);
* ``resolve(source, data)``: the snapshot to hand to the live source's
  ``restore``, plus every reason part of it cannot be restored here;
* ``items(data)``: the parts ``diff`` names (one flag, one device, ...).

The opaque raw states of ``_rawstate`` are converted through scratch objects:
set the raw state on a scratch generator and read its public state, or the
reverse.
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Protocol

import numpy as np
import torch

from . import _rawstate
from ._accelerators import Initialised, LazyDeviceSource, MPSSource, Pending
from ._environment import EnvironmentSource
from ._flags import FlagsSource, plain
from ._numpy_random import NumPyGlobalSource, global_random_state
from ._python_random import PythonRandomSource
from ._registry import RegistrySource
from ._tf32 import TF32Snapshot, TF32Source
from ._torch_random import TorchCPUSource

Plain = Any
"""None, bool, int, float, str, torch.Tensor, or lists and str-keyed dicts of them."""

FINGERPRINT_CHARS: Final = 16


class Malformed(ValueError):
    """Loaded data that no codec can read: raised by ``check``."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """What restoring one source's loaded data means in this process."""

    snapshot: object | None
    """The snapshot to pass to ``source.restore``; ``None``: nothing to restore."""
    mismatches: tuple[str, ...] = ()
    """Why (part of) the data cannot be restored here; each one is skipped."""


class Codec(Protocol):
    kind: str

    def to_plain(self, source: Any, snapshot: object) -> Plain: ...

    def check(self, data: object) -> Plain: ...

    def resolve(self, source: Any, data: Plain) -> Resolved: ...

    def items(self, data: Plain) -> dict[str, Plain]: ...


# --------------------------------------------------------------------------
# Plain-data helpers
# --------------------------------------------------------------------------


def copy_plain(value: Plain) -> Plain:
    """A deep copy that shares nothing mutable (tensors are cloned)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, list):
        return [copy_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: copy_plain(item) for key, item in value.items()}
    return value


def check_plain(value: object, where: str) -> Plain:
    """``value`` as a private copy of only the plain types (subclasses become the base)."""
    if value is None:
        return None
    for plain_type in (bool, int, float, str):
        if isinstance(value, plain_type):
            return plain_type(value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, (list, tuple)):
        return [check_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, Plain] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise Malformed(f"{where}: keys must be strings, got {key!r}")
            out[key] = check_plain(item, f"{where}[{key!r}]")
        return out
    raise Malformed(
        f"{where}: expected tensors, ints, floats, strings, None, bools, lists and dicts, "
        f"got {type(value).__name__}"
    )


def _field(data: Plain, key: str, where: str) -> Plain:
    if not isinstance(data, dict) or key not in data:
        raise Malformed(f"{where}: missing {key!r}")
    return data[key]


def _expect(value: Plain, types: type | tuple[type, ...], where: str, what: str) -> Plain:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise Malformed(f"{where}: expected {what}, got {type(value).__name__} {value!r:.60}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _byte_tensor(value: Plain, where: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
        raise Malformed(f"{where}: expected a 1-D torch.uint8 tensor, got {value!r:.60}")
    return value


def _update(h: Any, value: Plain) -> None:
    """Feed a canonical, type-tagged encoding of ``value`` to the hash ``h``."""
    if value is None:
        h.update(b"N")
    elif value is True or value is False:
        h.update(b"T" if value else b"F")
    elif isinstance(value, int):
        h.update(b"i%d;" % value)
    elif isinstance(value, float):
        h.update(b"f" + value.hex().encode() + b";")
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(data) + data)
    elif isinstance(value, list):
        h.update(b"l%d:" % len(value))
        for item in value:
            _update(h, item)
    elif isinstance(value, dict):
        h.update(b"d%d:" % len(value))
        for key in sorted(value):
            _update(h, key)
            _update(h, value[key])
    else:
        tensor = value.detach().cpu().contiguous().reshape(-1)
        raw = tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header = f"t{tensor.dtype}:{tuple(value.shape)}:{len(raw)}:".encode()
        h.update(header + raw)


def digest(value: Plain) -> str:
    """A short, stable hex digest of plain data, equal exactly when the data are."""
    h = hashlib.sha256()
    _update(h, value)
    return h.hexdigest()[:FINGERPRINT_CHARS]


def numpy_plain(value: object) -> Plain:
    """A NumPy public state (dicts, ndarrays, NumPy scalars) as plain data."""
    if isinstance(value, dict):
        return {str(key): numpy_plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _round_trip(scratch_set: Callable[[Plain], None], scratch_get: Callable[[], Plain],
                data: Plain, where: str) -> None:
    """Set ``data`` on a scratch object and check that reading it back gives ``data``."""
    try:
        scratch_set(data)
        back = scratch_get()
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise Malformed(f"{where}: not a valid state ({type(exc).__name__}: {exc})") from None
    if digest(back) != digest(data):
        raise Malformed(f"{where}: not a valid state (it does not read back unchanged)")


# --------------------------------------------------------------------------
# Codecs
# --------------------------------------------------------------------------


class EnvironmentCodec:
    """Environment variables: name -> value, ``None`` for unset."""

    kind = "environment"

    def to_plain(self, source: EnvironmentSource, snapshot: object) -> Plain:
        assert isinstance(snapshot, tuple)
        return dict(zip(source.variables, snapshot, strict=True))

    def check(self, data: object) -> Plain:
        out = check_plain(data, "environment")
        _expect(out, dict, "environment", "a dict of variable name -> str or None")
        for name, value in out.items():
            _expect(value, (str, type(None)), f"environment[{name!r}]", "a str or None")
        return out

    def resolve(self, source: EnvironmentSource, data: Plain) -> Resolved:
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
    if current is None and loaded is not None:
        raise _Skip(f"captured {loaded!r}, but it reads None here (not available, or its "
                    "module is not imported yet), so it cannot be set")
    if type(loaded) is not type(current):
        raise _Skip(
            f"captured {type(loaded).__name__} {loaded!r}, but it is "
            f"{type(current).__name__} here"
        )
    return loaded


class FlagsCodec:
    """A table of torch flags: flag name -> value (enums by name, tuples as lists)."""

    kind = "flags"

    def to_plain(self, source: FlagsSource, snapshot: object) -> Plain:
        assert isinstance(snapshot, tuple)
        return {flag.name: plain(value) for flag, value in zip(source.flags, snapshot, strict=True)}

    def check(self, data: object) -> Plain:
        out = check_plain(data, "flags")
        _expect(out, dict, "flags", "a dict of flag name -> value")
        for name, value in out.items():
            if isinstance(value, (torch.Tensor, dict)):
                raise Malformed(f"flags[{name!r}]: expected a scalar or a list, got {value!r:.60}")
        return out

    def resolve(self, source: FlagsSource, data: Plain) -> Resolved:
        current = source.capture()
        values: list[object] = []
        mismatches: list[str] = []
        for flag, now in zip(source.flags, current, strict=True):
            if flag.name not in data:
                mismatches.append(f"{flag.name} was not captured")
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
_MT_WORDS: Final = 624


class TF32Codec:
    """Legacy matmul precision and cuDNN ``allow_tf32``, and each ``fp32_precision`` node."""

    kind = "tf32"

    def to_plain(self, source: TF32Source, snapshot: object) -> Plain:
        assert isinstance(snapshot, TF32Snapshot)
        return {
            "float32_matmul_precision": snapshot.matmul_precision,
            "cudnn_allow_tf32": snapshot.cudnn_allow_tf32,
            "fp32_precision": {
                f"{backend}.{op}": value
                for (backend, op), value in zip(source._nodes, snapshot.nodes, strict=True)
            },
        }

    def check(self, data: object) -> Plain:
        out = check_plain(data, "tf32")
        precision = _field(out, "float32_matmul_precision", "tf32")
        if precision is not None and precision not in _MATMUL_PRECISIONS:
            raise Malformed(f"tf32: float32_matmul_precision must be one of "
                            f"{_MATMUL_PRECISIONS} or None, got {precision!r}")
        _expect(_field(out, "cudnn_allow_tf32", "tf32"), (bool, type(None)),
                "tf32.cudnn_allow_tf32", "a bool or None")
        nodes = _expect(_field(out, "fp32_precision", "tf32"), dict, "tf32.fp32_precision",
                        "a dict of 'backend.op' -> str")
        for node, value in nodes.items():
            _expect(value, str, f"tf32.fp32_precision[{node!r}]", "a str")
        return out

    def resolve(self, source: TF32Source, data: Plain) -> Resolved:
        current = source.capture()
        loaded = data["fp32_precision"]
        names = [f"{backend}.{op}" for backend, op in source._nodes]
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


# --- random.Random ---------------------------------------------------------


def random_plain(raw: object) -> Plain:
    """A ``_rawstate.random_get`` snapshot as ``{"version", "state", "gauss_next"}``."""
    scratch = random.Random()
    _rawstate.random_set(scratch, raw)
    version, internal, gauss_next = scratch.getstate()
    return {"version": version, "state": list(internal), "gauss_next": gauss_next}


def _random_set_public(scratch: random.Random, data: Plain) -> None:
    scratch.setstate((data["version"], tuple(data["state"]), data["gauss_next"]))


def random_raw(data: Plain) -> object:
    """The raw snapshot for checked ``random_plain`` data."""
    scratch = random.Random()
    _random_set_public(scratch, data)
    return _rawstate.random_get(scratch)


def check_random(data: object, where: str) -> Plain:
    out = check_plain(data, where)
    _expect(_field(out, "version", where), int, f"{where}.version", "an int")
    state = _expect(_field(out, "state", where), list, f"{where}.state", "a list of ints")
    for value in state:
        _expect(value, int, f"{where}.state", "a list of ints")
    gauss = _field(out, "gauss_next", where)
    _expect(gauss, (float, type(None)), f"{where}.gauss_next", "a float or None")
    scratch = random.Random()
    _round_trip(lambda d: _random_set_public(scratch, d),
                lambda: random_plain(_rawstate.random_get(scratch)), out, where)
    return out


class PythonRandomCodec:
    kind = "random"

    def to_plain(self, source: PythonRandomSource, snapshot: object) -> Plain:
        return random_plain(snapshot)

    def check(self, data: object) -> Plain:
        return check_random(data, "random")

    def resolve(self, source: PythonRandomSource, data: Plain) -> Resolved:
        return Resolved(random_raw(data))

    def items(self, data: Plain) -> dict[str, Plain]:
        return {"": data}


# --- NumPy -------------------------------------------------------------------


def legacy_plain(raw: object, scratch: np.random.RandomState) -> Plain:
    """A ``legacy_get`` snapshot as ``get_state(legacy=False)`` (has_gauss and gauss included)."""
    _rawstate.legacy_set(scratch, raw)
    return numpy_plain(scratch.get_state(legacy=False))


def check_numpy_dict(data: object, where: str) -> Plain:
    out = check_plain(data, where)
    _expect(out, dict, where, "a NumPy state dict")
    _expect(_field(out, "bit_generator", where), str, f"{where}.bit_generator", "a str")
    state = _expect(_field(out, "state", where), dict, f"{where}.state", "a dict")
    if out["bit_generator"] == "MT19937":
        # NumPy's setter does not check the position, and MT19937 reads its key at it
        pos = _field(state, "pos", f"{where}.state")
        if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos <= _MT_WORDS:
            raise Malformed(f"{where}.state.pos must be an int in [0, {_MT_WORDS}], got {pos!r}")
    return out


def _numpy_bit_generator(name: str, where: str) -> type[np.random.BitGenerator]:
    cls = getattr(np.random, name, None)
    if not isinstance(cls, type) or not issubclass(cls, np.random.BitGenerator):
        raise Malformed(f"{where}.bit_generator: {name!r} is not a numpy.random BitGenerator")
    return cls


def check_legacy(data: object, where: str) -> Plain:
    out = check_numpy_dict(data, where)
    _expect(_field(out, "has_gauss", where), int, f"{where}.has_gauss", "an int")
    _expect(_field(out, "gauss", where), float, f"{where}.gauss", "a float")
    scratch = np.random.RandomState(_numpy_bit_generator(out["bit_generator"], where)())
    _round_trip(scratch.set_state, lambda: numpy_plain(scratch.get_state(legacy=False)),
                out, where)
    return out


class NumPyGlobalCodec:
    """The legacy global RandomState, through ``get_state(legacy=False)``."""

    kind = "numpy-legacy"

    def to_plain(self, source: NumPyGlobalSource, snapshot: object) -> Plain:
        return legacy_plain(snapshot, np.random.RandomState())

    def check(self, data: object) -> Plain:
        return check_legacy(data, "numpy.random")

    def resolve(self, source: NumPyGlobalSource, data: Plain) -> Resolved:
        here = type(global_random_state()._bit_generator).__name__
        if data["bit_generator"] != here:
            return Resolved(None, (f"captured a {data['bit_generator']} state, but the "
                                   f"global RandomState uses {here} here",))
        scratch = np.random.RandomState()
        scratch.set_state(data)
        return Resolved(_rawstate.legacy_get(scratch))

    def items(self, data: Plain) -> dict[str, Plain]:
        return {"": data}


# --- torch generators ---------------------------------------------------------


def _state_size_mismatch(loaded: torch.Tensor, current: torch.Tensor) -> str | None:
    if loaded.numel() != current.numel():
        return f"the state has {loaded.numel()} bytes, a generator here has {current.numel()}"
    return None


class TensorStateCodec:
    """An eager generator whose state is one byte tensor: torch CPU, MPS."""

    kind = "tensor"

    def to_plain(self, source: Any, snapshot: object) -> Plain:
        assert isinstance(snapshot, torch.Tensor)
        return {"state": snapshot.clone()}

    def check(self, data: object) -> Plain:
        out = check_plain(data, "generator")
        _byte_tensor(_field(out, "state", "generator"), "generator.state")
        return out

    def resolve(self, source: Any, data: Plain) -> Resolved:
        problem = _state_size_mismatch(data["state"], source.capture())
        if problem is not None:
            return Resolved(None, (problem,))
        return Resolved(data["state"].clone())

    def items(self, data: Plain) -> dict[str, Plain]:
        return {"": data}


_STATUSES: Final = ("initialised", "uninitialised", "unusable")


class LazyDeviceCodec:
    """CUDA/XPU: one state per device once initialised, else only the status.

    An uninitialised device has no state yet (its queued seeds are not RNG
    state), and a device unusable in a forked child has none to read.
    """

    kind = "lazy-device"

    def to_plain(self, source: Any, snapshot: object) -> Plain:
        if isinstance(snapshot, Initialised):
            return {"status": "initialised", "states": [s.clone() for s in snapshot.states]}
        if isinstance(snapshot, Pending):
            return {"status": "uninitialised", "states": []}
        return {"status": "unusable", "states": []}

    def check(self, data: object) -> Plain:
        out = check_plain(data, "device")
        status = _field(out, "status", "device")
        if status not in _STATUSES:
            raise Malformed(f"device.status must be one of {_STATUSES}, got {status!r}")
        states = _expect(_field(out, "states", "device"), list, "device.states", "a list")
        for i, state in enumerate(states):
            _byte_tensor(state, f"device.states[{i}]")
        if (status == "initialised") != bool(states):
            raise Malformed("device.states: an initialised device has states, others have none")
        return out

    def resolve(self, source: Any, data: Plain) -> Resolved:
        live = source.capture()
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


def _bitgen_plain(bitgen: Any, raw: object) -> Plain:
    scratch = copy.deepcopy(bitgen)
    _rawstate.bitgen_set(scratch, raw)
    return numpy_plain(scratch.state)


def _bitgen_raw(bitgen: Any, data: Plain) -> object:
    scratch = copy.deepcopy(bitgen)
    _round_trip(lambda d: setattr(scratch, "state", d), lambda: numpy_plain(scratch.state),
                data, "state")
    return _rawstate.bitgen_get(scratch)


def _legacy_raw(rs: Any, data: Plain) -> object:
    scratch = copy.deepcopy(rs)
    _round_trip(scratch.set_state, lambda: numpy_plain(scratch.get_state(legacy=False)),
                data, "state")
    return _rawstate.legacy_get(scratch)


def _torch_raw(generator: Any, data: Plain) -> object:
    state = _byte_tensor(data, "state")
    problem = _state_size_mismatch(state, generator.get_state())
    if problem is not None:
        raise Malformed(problem)
    return state.clone()


@dataclass(frozen=True, slots=True)
class _GeneratorKind:
    type_name: Callable[[Any], str]
    to_plain: Callable[[Any, object], Plain]
    to_raw: Callable[[Any, Plain], object]
    check: Callable[[Plain, str], None]


def _check_numpy(data: Plain, where: str) -> None:
    check_numpy_dict(data, where)


def _check_torch(data: Plain, where: str) -> None:
    _byte_tensor(data, where)


def _check_random_entry(data: Plain, where: str) -> None:
    check_random(data, where)


@lru_cache(maxsize=1)
def _generator_kinds() -> dict[str, _GeneratorKind]:
    return {
        "numpy.random.Generator": _GeneratorKind(
            lambda g: type(g.bit_generator).__name__,
            lambda g, raw: _bitgen_plain(g.bit_generator, raw),
            lambda g, data: _bitgen_raw(g.bit_generator, data),
            _check_numpy,
        ),
        "numpy.random.BitGenerator": _GeneratorKind(
            lambda g: type(g).__name__, _bitgen_plain, _bitgen_raw, _check_numpy
        ),
        "numpy.random.RandomState": _GeneratorKind(
            lambda g: type(g._bit_generator).__name__,
            lambda g, raw: legacy_plain(raw, copy.deepcopy(g)),
            _legacy_raw,
            _check_numpy,
        ),
        "random.Random": _GeneratorKind(
            lambda g: f"{type(g).__module__}.{type(g).__qualname__}",
            lambda g, raw: random_plain(raw),
            lambda g, data: random_raw(data),
            _check_random_entry,
        ),
        "torch.Generator": _GeneratorKind(
            lambda g: str(g.device),
            lambda g, raw: raw.clone(),  # type: ignore[attr-defined]
            _torch_raw,
            _check_torch,
        ),
    }


def _describe(entry: Plain) -> str:
    return f"{entry['kind']}({entry['type']})"


class RegistryCodec:
    """Registered generators in registration order, each with its kind and type.

    On load they are matched to the generators registered here by position,
    and must agree in kind and type.
    """

    kind = "registry"

    def to_plain(self, source: RegistrySource, snapshot: object) -> Plain:
        assert isinstance(snapshot, tuple)
        kinds = _generator_kinds()
        out = []
        for obj, entry, raw in snapshot:
            kind = kinds[entry.adapter.kind]
            out.append({"kind": entry.adapter.kind, "type": kind.type_name(obj),
                        "state": kind.to_plain(obj, raw)})
        return {"generators": out}

    def check(self, data: object) -> Plain:
        out = check_plain(data, "registered generators")
        entries = _expect(_field(out, "generators", "registered generators"), list,
                          "registered generators.generators", "a list")
        kinds = _generator_kinds()
        for i, entry in enumerate(entries):
            where = f"registered generators[{i}]"
            kind = _field(entry, "kind", where)
            if kind not in kinds:
                raise Malformed(f"{where}.kind must be one of {sorted(kinds)}, got {kind!r}")
            _expect(_field(entry, "type", where), str, f"{where}.type", "a str")
            kinds[kind].check(_field(entry, "state", where), f"{where}.state")
        return out

    def resolve(self, source: RegistrySource, data: Plain) -> Resolved:
        live = source.capture()
        loaded: list[Plain] = data["generators"]
        kinds = _generator_kinds()
        restore: list[tuple[object, Any, object]] = []
        mismatches: list[str] = []
        for i, (obj, entry, _state) in enumerate(live[: len(loaded)]):
            saved = loaded[i]
            here = {"kind": entry.adapter.kind, "type": kinds[entry.adapter.kind].type_name(obj)}
            if (saved["kind"], saved["type"]) != (here["kind"], here["type"]):
                mismatches.append(f"#{i}: captured {_describe(saved)}, registered here "
                                  f"{_describe(here)}")
                continue
            try:
                raw = kinds[saved["kind"]].to_raw(obj, saved["state"])
            except Malformed as exc:
                mismatches.append(f"#{i} {_describe(saved)}: {exc}")
                continue
            restore.append((obj, entry, raw))
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

    def to_plain(self, source: Any, snapshot: object) -> Plain:  # pragma: no cover - never live
        raise TypeError(f"no live source has kind {self.kind!r}")

    def check(self, data: object) -> Plain:
        return check_plain(data, f"source of kind {self.kind!r}")

    def resolve(self, source: Any, data: Plain) -> Resolved:  # pragma: no cover - never live
        raise TypeError(f"no live source has kind {self.kind!r}")

    def items(self, data: Plain) -> dict[str, Plain]:
        return {"": data}


# --------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------

_CODECS: Final[tuple[tuple[type, Codec], ...]] = (
    (EnvironmentSource, EnvironmentCodec()),
    (FlagsSource, FlagsCodec()),
    (TF32Source, TF32Codec()),
    (PythonRandomSource, PythonRandomCodec()),
    (NumPyGlobalSource, NumPyGlobalCodec()),
    (TorchCPUSource, TensorStateCodec()),
    (MPSSource, TensorStateCodec()),
    (LazyDeviceSource, LazyDeviceCodec()),
    (RegistrySource, RegistryCodec()),
)
_BY_KIND: Final[dict[str, Codec]] = {codec.kind: codec for _type, codec in _CODECS}


def codec_for(source: object) -> Codec:
    """The codec of a live source, or a ``TypeError`` naming it."""
    for source_type, codec in _CODECS:
        if isinstance(source, source_type):
            return codec
    raise TypeError(
        f"cannot convert the state of source {getattr(source, 'name', source)!r} "
        f"({type(source).__qualname__}) to plain data"
    )


def codec_named(kind: str) -> Codec:
    """The codec that reads data recorded with ``kind``."""
    return _BY_KIND.get(kind) or UnknownCodec(kind)


def item_digests(kind: str, data: Plain) -> dict[str, str]:
    """A digest per part ``diff`` names; the kind is part of every digest."""
    return {item: digest([kind, value]) for item, value in codec_named(kind).items(data).items()}


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


def _union(a: Iterable[str], b: Iterable[str]) -> list[str]:
    seen = dict.fromkeys(a)
    seen.update(dict.fromkeys(b))
    return list(seen)
