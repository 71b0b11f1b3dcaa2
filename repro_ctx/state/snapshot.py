"""``capture()`` and ``RNGState``: the state a scope covers, as a value you can keep.

A captured state holds the sources' own snapshots (fast and exact) and
restores them through the sources. It becomes plain data only when asked
(``state_dict()``, ``fingerprint()``, ``diff()``), through ``state_dict``.
A state loaded with ``from_state_dict()`` is matched against this process's
sources when it is restored: every mismatch is found before anything changes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from ..core import scope as _scope
from ..core.plain import LeftOut, Malformed, copy_plain, digest
from ..core.source import Source
from ..sources.accelerators import check_local_device
from ..sources.default_set import default_sources
from .environment_diff import restore_warning, summary_in, summary_lines
from .environment_record import environment_summary
from .state_dict import (
    FLAG_KINDS,
    MACHINE_KINDS,
    codec_for,
    codec_named,
    covered,
    diff_digests,
    differences,
    item_digests,
    none_flags,
    unread_flags,
)

FORMAT: Final = "repro_ctx.RNGState"
VERSION: Final = 1


class StateMismatchError(ValueError):
    """A state cannot be fully restored here; nothing was restored.

    ``mismatches`` lists every reason. ``restore(strict=False)`` restores what
    matches instead and returns the same list.
    """

    def __init__(self, mismatches: list[str]) -> None:
        self.mismatches = mismatches
        lines = "\n".join(f"  - {item}" for item in mismatches)
        super().__init__(
            f"this RNG state does not match this process, so nothing was restored "
            f"({len(mismatches)} mismatch(es)); restore(strict=False) restores what "
            f"matches and returns what it skipped:\n{lines}"
        )


@dataclass(frozen=True, slots=True, eq=False)
class _Part:
    """One source's share of a state: a live snapshot, or loaded plain data."""

    name: str
    source: Source | None
    """The source that took ``snapshot`` in this process; ``None`` when loaded."""
    snapshot: object
    """The source's snapshot, or (loaded) the checked plain data."""
    kind: str | None = None
    """The codec kind of loaded data; ``None`` for a live snapshot."""


class RNGState:
    """An immutable snapshot of every RNG and flag a scope covers.

    Get one from ``capture()`` or ``RNGState.from_state_dict()``.
    """

    __slots__ = ("_digests", "_environment", "_left_out", "_parts", "_plain")

    _parts: tuple[_Part, ...]
    _plain: dict[str, tuple[str, Any]] | None
    _left_out: dict[str, str]
    """name -> why a source has no plain data (a plugin without ``to_plain``)."""
    _digests: dict[str, dict[str, str]] | None
    _environment: dict[str, Any] | None
    """The environment summary (``environment_summary()``) where it was captured."""

    def __init__(self) -> None:
        raise TypeError("RNGState objects come from capture() or RNGState.from_state_dict()")

    @classmethod
    def _create(
        cls, parts: tuple[_Part, ...], environment: dict[str, Any] | None = None
    ) -> RNGState:
        state = object.__new__(cls)
        object.__setattr__(state, "_environment", environment)
        object.__setattr__(state, "_parts", parts)
        object.__setattr__(state, "_plain", None)
        object.__setattr__(state, "_left_out", {})
        object.__setattr__(state, "_digests", None)
        return state

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("RNGState is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("RNGState is immutable")

    @property
    def sources(self) -> tuple[str, ...]:
        """The names of the sources this state holds, in capture order."""
        return tuple(part.name for part in self._parts)

    # -- plain data -------------------------------------------------------

    def _plain_sources(self) -> dict[str, tuple[str, Any]]:
        """name -> (kind, plain data), converted once and kept private.

        A source whose snapshot has no plain form is left out, and the reason
        kept in ``_left_out`` for ``diff``.
        """
        if self._plain is None:

            out: dict[str, tuple[str, Any]] = {}
            for part in self._parts:
                if part.kind is not None:
                    out[part.name] = (part.kind, part.snapshot)
                    continue
                codec = codec_for(part.source)
                try:
                    out[part.name] = (codec.kind, codec.to_plain(part.snapshot))
                except LeftOut as why:
                    self._left_out[part.name] = str(why)
            object.__setattr__(self, "_plain", out)
            return out
        return self._plain

    def _item_digests(self) -> dict[str, dict[str, str]]:
        if self._digests is None:
            plain = self._plain_sources()
            sources = default_sources()
            codecs = {part.name: codec_for(part.source) if part.source is not None
                      else codec_named(part.kind or "", sources)
                      for part in self._parts if part.name in plain}
            digests = {name: item_digests(kind, codecs[name], data)
                       for name, (kind, data) in plain.items()}
            object.__setattr__(self, "_digests", digests)
            return digests
        return self._digests

    def state_dict(self) -> dict[str, Any]:
        """Plain data for ``torch.save``: ``torch.load(..., weights_only=True)`` reads it.

        It holds only tensors, ints, floats, strings, ``None``, bools, lists and
        dicts, and is a fresh copy on every call. ``environment`` is a short
        summary of where it was captured (torch, CPU capability, threads,
        BLAS, ...): a restore elsewhere warns where they differ.
        """
        out: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "sources": {
                name: {"kind": kind, "state": copy_plain(data)}
                for name, (kind, data) in self._plain_sources().items()
            },
        }
        if self._environment is not None:
            out["environment"] = dict(self._environment)
        return out

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any]) -> RNGState:
        """Read what ``state_dict()`` produced, in this or another process.

        Malformed data raises ``ValueError`` (``TypeError`` if it is not a
        mapping). Whether it matches this process is checked by ``restore``.
        """

        live = default_sources()

        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"expected the dict RNGState.state_dict() returned, got "
                f"{type(state_dict).__name__}"
            )
        if state_dict.get("format") != FORMAT:
            raise ValueError(f"not an RNGState state dict: 'format' must be {FORMAT!r}, got "
                             f"{state_dict.get('format')!r}")
        if state_dict.get("version") != VERSION:
            raise ValueError(f"unsupported RNGState state dict version "
                             f"{state_dict.get('version')!r}; this repro_ctx reads {VERSION}")
        sources = state_dict.get("sources")
        if not isinstance(sources, Mapping):
            raise ValueError("malformed RNGState state dict: 'sources' must be a dict")
        parts: list[_Part] = []
        for name, entry in sources.items():
            if not isinstance(name, str) or not isinstance(entry, Mapping):
                raise ValueError(f"malformed RNGState state dict: sources[{name!r}] must be "
                                 "a dict with 'kind' and 'state'")
            kind = entry.get("kind")
            if not isinstance(kind, str) or "state" not in entry:
                raise ValueError(f"malformed RNGState state dict: sources[{name!r}] must be "
                                 "a dict with 'kind' and 'state'")
            try:
                data = codec_named(kind, live).check(entry["state"])
            except Malformed as exc:
                raise ValueError(f"malformed RNGState state dict: sources[{name!r}]: "
                                 f"{exc}") from None
            parts.append(_Part(name, None, data, kind))
        return cls._create(tuple(parts), summary_in(state_dict))

    # -- comparing ------------------------------------------------------------

    def fingerprint(self) -> str:
        """A short, stable hex digest of every field but the lazily imported configs.

        Equal states have equal fingerprints, and states whose fingerprints
        differ are not equal. It covers every source, flag, device and
        generator except ``torch._inductor.config.deterministic``, which
        reads ``None`` until the program imports inductor's config
        (``torch.compile`` does): a state captured before that import
        equals one captured after, so the fingerprint cannot depend on it.
        Two states that differ only there have the same fingerprint; ``==``
        and ``diff()`` tell them apart.

        Stable across processes, machines and repro_ctx releases that keep
        this state dict version.
        """
        plain = self._plain_sources()
        return digest(sorted(
            [name, covered(plain[name][0], digests)]
            for name, digests in self._item_digests().items()
        ))

    def diff(self, other: RNGState) -> list[str]:
        """Name every source, and flag, device or generator within one, that differs.

        A source that neither state can compare (a source plugin without
        ``to_plain``) is named too, with the reason: a difference there would
        not show. So is a flag that one state cannot read because its module
        was not imported there (inductor's config), with "not compared":
        ``==`` skips both. So is each way the environments they were captured
        in differ that can change results (``environment summary: ...``),
        which equality leaves out too.
        """
        if not isinstance(other, RNGState):
            raise TypeError(f"diff() compares two RNGState objects, got {type(other).__name__}")

        mine, theirs = self._item_digests(), other._item_digests()
        found = diff_digests(mine, theirs)
        notes = {**none_flags(self._plain_sources(), other._plain_sources()),
                 **unread_flags(mine, theirs)}
        out = [f"{entry} ({notes[entry]})" if entry in notes else entry for entry in found]
        left_out = {**other._left_out, **self._left_out}
        out += [f"{name}: not compared ({why})" for name, why in left_out.items()]
        if self._environment is not None and other._environment is not None:
            out += summary_lines(self._environment, other._environment)
        return out

    def __eq__(self, other: object) -> bool:
        """Equal when no field that both states can read differs (see ``diff``)."""
        if not isinstance(other, RNGState):
            return NotImplemented
        return not differences(self._item_digests(), other._item_digests())

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        return f"<RNGState {self.fingerprint()} of {len(self._parts)} sources>"

    # -- restoring --------------------------------------------------------------

    def restore(self, *, strict: bool = True, flags: bool | None = None) -> list[str]:
        """Put this state back into the process's RNGs, flags and environment.

        Every mismatch with this process (a source or flag missing on either
        side, another number of devices, another generator type, ...) is
        found first. With ``strict=True`` any mismatch raises
        ``StateMismatchError`` (a ``ValueError``) listing them all, and
        nothing is restored; with ``strict=False`` what matches is restored
        and the list of what was skipped is returned. If a restore fails,
        what was already restored is rolled back before the error propagates.

        A state loaded with ``from_state_dict()`` carries streams, not the
        machine: it restores every RNG, and the torch determinism and
        precision flags only with ``flags=True``; it never changes the
        environment or the thread count of this process. A state captured in
        this process restores everything (``flags=False`` leaves its flags).
        A flag that reads ``None`` on either side (inductor's config before
        it is imported) is left as it is, and is no mismatch. A loaded state
        saved in an environment that differs from this one in a way that can
        change results (another torch, CPU capability, thread count, ...)
        gives one ``UserWarning`` listing the differences, and is restored.
        """
        if strict is not True and strict is not False:
            raise TypeError(f"strict must be True or False, got {strict!r}")
        if flags is not None and flags is not True and flags is not False:
            raise TypeError(f"flags must be True, False or None, got {flags!r}")
        with _scope._lock:
            actions, mismatches = self._plan_restore(flags)
            if mismatches and strict:
                raise StateMismatchError(mismatches)
            _apply(actions)
        loaded = any(part.source is None for part in self._parts)
        if loaded and self._environment is not None:
            warning = restore_warning(self._environment, environment_summary())
            if warning is not None:
                warnings.warn(warning, UserWarning, stacklevel=2)
        return mismatches

    def _plan_restore(
        self, flags: bool | None
    ) -> tuple[list[tuple[Source, object]], list[str]]:

        def restored(kind: str, loaded: bool) -> bool:
            if kind in MACHINE_KINDS:
                return not loaded
            if kind in FLAG_KINDS:
                return (not loaded) if flags is None else flags
            return True

        live = {source.name: source for source in default_sources()}
        actions: list[tuple[Source, object]] = []
        mismatches: list[str] = []
        for part in self._parts:
            loaded = part.source is None
            kind = part.kind if loaded else _kind_of(part.source)
            if not restored(kind or "", loaded):
                continue
            if part.source is not None:
                problems = check_local_device(part.source, part.snapshot)
                mismatches += [f"{part.name}: {problem}" for problem in problems]
                if not problems:
                    actions.append((part.source, part.snapshot))
                continue
            source = live.get(part.name)
            if source is None:
                mismatches.append(f"{part.name}: no such source in this process")
                continue
            codec = codec_for(source)
            if codec.kind != part.kind:
                mismatches.append(f"{part.name}: captured as {part.kind!r}, "
                                  f"but it is {codec.kind!r} here")
                continue
            resolved = codec.resolve(part.snapshot)
            mismatches += [f"{part.name}: {problem}" for problem in resolved.mismatches]
            if resolved.snapshot is not None:
                actions.append((source, resolved.snapshot))
        names = {part.name for part in self._parts}
        loaded_state = any(part.source is None for part in self._parts)
        mismatches += [_not_in_state(name, source) for name, source in live.items()
                       if name not in names and restored(_kind_of(source), loaded_state)]
        return actions, mismatches


def _not_in_state(name: str, source: object) -> str:
    why = getattr(source, "not_saved", None)  # a source plugin that no state dict holds
    return f"{name}: not in this state" + (f" ({why})" if why else "")


def _kind_of(source: object) -> str:
    """The plain-data kind of a live source; ``""`` for one that has none."""
    try:
        return codec_for(source).kind
    except TypeError:
        return ""


def _apply(actions: list[tuple[Source, object]]) -> None:
    """Restore in reverse capture order, as a scope does; undo everything on failure."""
    done: list[Source] = []
    before: list[object] = []
    try:
        for source, snapshot in reversed(actions):
            before.append(source.capture())
            done.append(source)
            source.restore(snapshot)
    except BaseException as exc:
        _scope._restore_all(done, before, exc)
        raise


def capture() -> RNGState:
    """Snapshot every RNG, flag and environment variable a scope covers."""
    sources = default_sources()
    with _scope._lock:
        parts = tuple(_Part(source.name, source, source.capture()) for source in sources)
    return RNGState._create(parts, environment_summary())
