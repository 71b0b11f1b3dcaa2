"""Source snapshots as plain data, and back: what ``RNGState.state_dict()`` holds.

Snapshots stay the fast objects the sources produce; only when asked are they
turned into plain data (see ``_plain``) that ``torch.load(path,
weights_only=True)`` accepts as it is. Every source is its own codec
(``kind``, ``to_plain``, ``check``, ``resolve``, ``items``: see
``_plain.Codec``), found by the live source when saving and by the recorded
``kind`` when loading; what is here is generic: that dispatch, per-part
digests and ``diff``. A state saved by one process can so be checked against
another.

Two codecs still live in the table below, until their sources' modules take
them (``_flags.py`` and ``_environment.py``): a source added later needs no
line here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import torch

from ._environment import EnvironmentSource
from ._flags import FlagsSource, plain
from ._plain import Codec, Malformed, Plain, Resolved, check_plain, digest, expect

FLAG_KINDS: Final = frozenset({"flags", "tf32"})
"""Determinism and precision flags: a loaded state restores them only when asked to."""
MACHINE_KINDS: Final = frozenset({"environment"})
"""What a loaded state never restores: it describes the machine, not the streams."""
MACHINE_FLAGS: Final = frozenset({"torch.get_num_threads"})
"""Flags that describe the machine: a loaded state leaves them as they are."""


class _TableCodec:
    """A codec kept here for a source that does not convert its own snapshots yet.

    TODO(lead): move EnvironmentCodec into _environment.py and FlagsCodec into
    _flags.py as the sources' own methods (as every other source has them), then
    drop this class and ``_TABLE``.
    """

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


class OfflineCodec:
    """A built-in source that does not run here (CUDA on a CPU machine): its data is
    still checked and named part by part, never restored."""

    def __init__(self, source_type: Any) -> None:
        self.kind: str = source_type.kind
        self._check = source_type.check  # check and items read only the data
        self._items = source_type.items

    def to_plain(self, snapshot: object) -> Plain:  # pragma: no cover - never live
        raise TypeError(f"no live source has kind {self.kind!r}")

    def check(self, data: object) -> Plain:
        out: Plain = self._check(data)
        return out

    def resolve(self, data: Plain) -> Resolved:  # pragma: no cover - never live
        raise TypeError(f"no live source has kind {self.kind!r}")

    def items(self, data: Plain) -> dict[str, Plain]:
        out: dict[str, Plain] = self._items(data)
        return out


class UnknownCodec:
    """A kind this version cannot restore (a newer repro_ctx, a plugin not
    installed here): kept as data."""

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
    # no such source here (the environment and flags sources always run): its
    # codec still checks the data and names its parts
    from ._sources import builtin_source_types

    for source_type in builtin_source_types():
        if getattr(source_type, "kind", None) == kind:
            return OfflineCodec(source_type)
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
