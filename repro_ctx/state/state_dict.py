"""Source snapshots as plain data, and back: what ``RNGState.state_dict()`` holds.

Snapshots stay the fast objects the sources produce; only when asked are they
turned into plain data (see ``plain``) that ``torch.load(path,
weights_only=True)`` accepts as it is. Every source is its own codec
(``kind``, ``to_plain``, ``check``, ``resolve``, ``items``: see
``plain.Codec``), found by the live source when saving and by the recorded
``kind`` when loading; what is here is generic: that dispatch, per-part
digests and ``diff``. A state saved by one process can so be checked against
another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final

from ..core.plain import Codec, Plain, Resolved, check_plain, digest
from ..sources import inductor
from ..sources.default_set import builtin_source_types

FLAG_KINDS: Final = frozenset({"flags", "tf32"})
"""Determinism and precision flags: a loaded state restores them only when asked to."""
MACHINE_KINDS: Final = frozenset({"environment"})
"""What a loaded state never restores: it describes the machine, not the streams."""


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

def _owns_plain_form(source: object) -> bool:
    return all(hasattr(source, attr) for attr in ("kind", "to_plain", "check", "resolve", "items"))


def codec_for(source: object) -> Codec:
    """The codec of a live source, or a ``TypeError`` naming it."""
    if _owns_plain_form(source):
        return source  # type: ignore[return-value]
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


LAZY_FLAGS: Final = frozenset(f"{inductor.CONFIG}.{entry}" for entry in inductor.ENTRIES)
"""Flags that read ``None`` until the program imports their module: what import order changes.

``fingerprint()`` leaves them out, and ``==``, ``diff()`` and
``distributed.assert_synchronized`` skip one that reads ``None`` on one
side only, so that a state captured before ``torch.compile`` imported
inductor's config equals one captured after.
"""

@lru_cache(maxsize=1)
def unread() -> str:
    """The item digest of a flag that reads ``None`` (computed at first use: ``digest``
    imports torch, which ``import repro_ctx`` must not)."""
    return digest(["flags", None])


def covered(kind: str, items: Mapping[str, str]) -> dict[str, str]:
    """The item digests ``fingerprint()`` covers: all but the ``LAZY_FLAGS``."""
    if kind != "flags":
        return dict(items)
    return {item: value for item, value in items.items() if item not in LAZY_FLAGS}


def unread_flags(
    mine: Mapping[str, Mapping[str, str]], theirs: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """``diff`` entry -> why it is skipped, for each lazily read flag one side cannot read.

    Only digests are needed: a flag that reads ``None`` has the digest ``unread()``.
    """
    out: dict[str, str] = {}
    for name, a in mine.items():
        b = theirs.get(name)
        if b is None:
            continue
        for flag in LAZY_FLAGS & a.keys() & b.keys():
            if (a[flag] == unread()) != (b[flag] == unread()):
                side = "first" if a[flag] == unread() else "second"
                out[f"{name}: {flag}"] = (
                    f"not compared: it reads None in the {side} state, where its module was "
                    "not imported; a restore leaves it as it is")
    return out


def differences(
    mine: Mapping[str, Mapping[str, str]], theirs: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """The ``diff_digests`` entries that count: every one but ``unread_flags``'."""
    found = diff_digests(mine, theirs)
    if not found:
        return found
    skipped = unread_flags(mine, theirs)
    return [entry for entry in found if entry not in skipped]


def none_flags(
    mine: Mapping[str, tuple[str, Plain]], theirs: Mapping[str, tuple[str, Plain]]
) -> dict[str, str]:
    """``diff`` notes for other flags that read ``None`` in one state (not available there).

    They differ: such a flag reads ``None`` in every process of that torch
    build (cuDNN's benchmark limit on a CPU build), whatever was imported.
    """
    out: dict[str, str] = {}
    for name, (kind, data) in mine.items():
        if kind != "flags" or name not in theirs or theirs[name][0] != "flags":
            continue
        other = theirs[name][1]
        for flag in (data.keys() & other.keys()) - LAZY_FLAGS:
            a, b = data[flag], other[flag]
            if (a is None) != (b is None):
                side = "first" if a is None else "second"
                out[f"{name}: {flag}"] = (
                    f"reads None in the {side} state: not available there; "
                    "a restore leaves it as it is")
    return out


def _union(a: Iterable[str], b: Iterable[str]) -> list[str]:
    seen = dict.fromkeys(a)
    seen.update(dict.fromkeys(b))
    return list(seen)
