"""Plain data: what checkpoints hold, how it is checked, copied and digested.

Plain data is ``None``, bools, ints, floats, strings, torch tensors, and lists
and str-keyed dicts of them: what ``torch.load(path, weights_only=True)``
reads back as it is. Every source turns its snapshots into plain data and
back (``to_plain``/``from_plain``); the helpers here are what they share.
torch is imported at first use, never by ``import repro_ctx``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    import torch

Plain = Any
"""None, bool, int, float, str, torch.Tensor, or lists and str-keyed dicts of them."""

FINGERPRINT_CHARS: Final = 16


class Malformed(ValueError):
    """Loaded data that no codec can read: raised by ``check``."""


class LeftOut(Exception):
    """Raised by ``to_plain`` for a snapshot that has no plain form (a source plugin
    without ``to_plain``, or one whose ``to_plain`` failed): ``state_dict()`` and
    ``fingerprint()`` leave the source out, and ``diff()`` names it with this reason."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """What restoring one source's loaded data means in this process."""

    snapshot: object | None
    """The snapshot to pass to ``source.restore``; ``None``: nothing to restore."""
    mismatches: tuple[str, ...] = ()
    """Why (part of) the data cannot be restored here; each one is skipped."""


class Codec(Protocol):
    """The checkpoint face of a source: its snapshots as plain data, and back.

    * ``to_plain(snapshot)``: fresh plain data for a snapshot;
    * ``check(data)``: validate loaded data and return a private copy (a
      ``Malformed`` names what is wrong);
    * ``resolve(data)``: the snapshot to hand to ``restore`` here, plus every
      reason part of it cannot be restored here;
    * ``items(data)``: the parts ``diff`` names (one flag, one device, ...).
    """

    kind: str

    def to_plain(self, snapshot: object) -> Plain: ...

    def check(self, data: object) -> Plain: ...

    def resolve(self, data: Plain) -> Resolved: ...

    def items(self, data: Plain) -> dict[str, Plain]: ...


# --------------------------------------------------------------------------
# Plain-data helpers
# --------------------------------------------------------------------------


def copy_plain(value: Plain) -> Plain:
    """A deep copy that shares nothing mutable (tensors are cloned)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, list):
        return [copy_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: copy_plain(item) for key, item in value.items()}
    return value


def check_plain(value: object, where: str) -> Plain:
    """``value`` as a private copy of only the plain types (subclasses become the base)."""
    import torch

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


def field(data: Plain, key: str, where: str) -> Plain:
    if not isinstance(data, dict) or key not in data:
        raise Malformed(f"{where}: missing {key!r}")
    return data[key]


def expect(value: Plain, types: type | tuple[type, ...], where: str, what: str) -> Plain:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in as_tuple(types)):
        raise Malformed(f"{where}: expected {what}, got {type(value).__name__} {value!r:.60}")
    return value


def as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def byte_tensor(value: Plain, where: str) -> torch.Tensor:
    import torch

    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
        raise Malformed(f"{where}: expected a 1-D torch.uint8 tensor, got {value!r:.60}")
    return value


def _update(h: Any, value: Plain) -> None:
    """Feed a canonical, type-tagged encoding of ``value`` to the hash ``h``."""
    import torch

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


def round_trip(scratch_set: Callable[[Plain], None], scratch_get: Callable[[], Plain],
                data: Plain, where: str) -> None:
    """Set ``data`` on a scratch object and check that reading it back gives ``data``."""
    try:
        scratch_set(data)
        back = scratch_get()
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise Malformed(f"{where}: not a valid state ({type(exc).__name__}: {exc})") from None
    if digest(back) != digest(data):
        raise Malformed(f"{where}: not a valid state (it does not read back unchanged)")


