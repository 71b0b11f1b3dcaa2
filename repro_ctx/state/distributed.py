"""How ranks' RNG states are compared, gathered and saved (public as ``repro_ctx.distributed``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from ..core.seed import current_rank
from .snapshot import RNGState, capture
from .state_dict import LAZY_FLAGS, differences, unread

FORMAT: Final = "repro_ctx.distributed"
VERSION: Final = 1


class NotSynchronizedError(AssertionError):
    """The ranks' RNG states differ (raised on every rank)."""


def _dist() -> Any:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "torch.distributed is not initialised: call "
            "torch.distributed.init_process_group() first"
        )
    return dist


def _payload(state: RNGState | None, rank: int) -> dict[str, Any]:
    """What each rank contributes: digests, or why it could not compute them."""
    try:
        if state is None:
            state = capture()
        elif not isinstance(state, RNGState):
            raise TypeError(f"state must be an RNGState or None, got {type(state).__name__}")
        return {"rank": rank, "items": state._item_digests()}
    except Exception as exc:  # reported on every rank, after the collective
        return {"rank": rank, "error": f"{type(exc).__name__}: {exc}"}


def _ranks_differ(ranks: list[int]) -> str:
    if len(ranks) == 1:
        return f"rank {ranks[0]} differs"
    return "ranks " + ", ".join(str(r) for r in ranks) + " differ"


def _compare(payloads: list[dict[str, Any]]) -> str | None:
    """The error message for gathered payloads, or ``None`` when every rank agrees.

    Ranks agree when no field that two of them can read differs, as ``==``
    says: a flag whose module a rank has not imported (inductor's config) is
    compared among the ranks that did, with the first of them.
    """
    errors = [f"rank {p['rank']} could not capture its state: {p['error']}"
              for p in payloads if "error" in p]
    if errors:
        return "repro_ctx.distributed.assert_synchronized failed:\n" + "\n".join(errors)
    first = payloads[0]
    reference = {name: dict(items) for name, items in first["items"].items()}
    compared_with: dict[str, int] = {}  # entry -> the rank whose value stands in for the first's
    none = unread()
    for payload in payloads[1:]:
        for name, items in reference.items():
            theirs = payload["items"].get(name, {})
            for flag in LAZY_FLAGS & items.keys() & theirs.keys():
                if items[flag] == none and theirs[flag] != none:
                    items[flag] = theirs[flag]
                    compared_with[f"{name}: {flag}"] = payload["rank"]
    groups: dict[tuple[str, ...], list[int]] = {}
    for payload in payloads[1:]:
        found = differences(reference, payload["items"])
        if found:
            groups.setdefault(tuple(found), []).append(payload["rank"])
    if not groups:
        return None
    lines = []
    for entries, ranks in groups.items():
        named = [entry if entry not in compared_with else
                 f"{entry} (rank {first['rank']} has not imported its module: compared with "
                 f"rank {compared_with[entry]})" for entry in entries]
        lines.append(f"{_ranks_differ(ranks)} from rank {first['rank']} in: "
                     + "; ".join(named))
    return "RNG state is not synchronized across ranks:\n" + "\n".join(lines)


def assert_synchronized(group: Any = None, *, state: RNGState | None = None) -> None:
    """Raise ``NotSynchronizedError`` on every rank unless all ranks' states are equal.

    Call it on every rank of ``group`` (default: the world). Each rank takes
    part in one ``all_gather_object`` of its state's digests, whatever its
    state, so a rank that differs, or fails to capture, never leaves the
    others waiting. ``state`` checks a given ``RNGState`` instead of the
    current one. The message names the ranks and the sources (and flags,
    devices, generators) that differ from the group's first rank. States are
    equal as ``==`` says: a flag whose module only some ranks have imported
    (inductor's config, which ``torch.compile`` imports) is compared among
    those ranks alone.
    """
    payload = _payload(state, int(_dist().get_rank()))
    message = _compare(gather_objects(payload, group))
    if message is not None:
        raise NotSynchronizedError(message)


def gather_objects(obj: Any, group: Any = None) -> list[Any]:
    """Every rank's ``obj``, in rank order, through one ``all_gather_object``.

    A collective: every rank of ``group`` (default: the world) must call it.
    """
    dist = _dist()
    gathered: list[Any] = [None] * int(dist.get_world_size(group))
    dist.all_gather_object(gathered, obj, group=group)
    return gathered


def rank_and_world() -> tuple[int, int]:
    """This rank and the world size: the process group's, else ``RANK``, ``WORLD_SIZE`` or 0, 1."""
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        world = int(raw)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer, got {raw!r}") from None
    return current_rank(), world


def state_dict(state: RNGState | None = None) -> dict[str, Any]:
    """This rank's state (``capture()`` unless given), with its rank and the world size.

    Plain data, for this rank's own checkpoint file.
    """
    rank, world = rank_and_world()
    state = capture() if state is None else state
    return {"format": FORMAT, "version": VERSION, "rank": rank, "world_size": world,
            "state": state.state_dict()}


def load_state_dict(state_dict: Any, *, strict: bool = True) -> list[str]:
    """Restore this rank's state from ``state_dict()``'s output; return what was skipped.

    The recorded world size and rank must be this process's, else a
    ``ValueError`` says which; ``strict`` is ``RNGState.restore``'s.
    """
    if not isinstance(state_dict, dict) or state_dict.get("format") != FORMAT:
        raise ValueError("not a repro_ctx.distributed state dict (expected the dict "
                         "repro_ctx.distributed.state_dict() returned)")
    if state_dict.get("version") != VERSION:
        raise ValueError(f"unsupported repro_ctx.distributed state dict version "
                         f"{state_dict.get('version')!r}; this repro_ctx reads {VERSION}")
    rank, world = rank_and_world()
    saved_world, saved_rank = state_dict.get("world_size"), state_dict.get("rank")
    if saved_world != world:
        raise ValueError(f"this RNG state was saved by a run with world size {saved_world!r}; "
                         f"this run has world size {world}. Per-rank streams cannot be "
                         "mapped onto another number of ranks")
    if saved_rank != rank:
        raise ValueError(f"this is the RNG state of rank {saved_rank!r}; this process is "
                         f"rank {rank}")
    return RNGState.from_state_dict(state_dict["state"]).restore(strict=strict)


def _path(directory: str | os.PathLike[str], rank: int) -> Path:
    return Path(directory) / f"rng_state_rank{rank}.pt"


def save(directory: str | os.PathLike[str], state: RNGState | None = None) -> Path:
    """Write this rank's ``state_dict()`` to ``directory/rng_state_rank{rank}.pt``.

    Call it on every rank. The file is replaced atomically; returns its path.
    """
    import torch

    data = state_dict(state)
    path = _path(directory, data["rank"])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(data, partial)
    partial.replace(path)
    return path


def load(directory: str | os.PathLike[str], *, strict: bool = True) -> list[str]:
    """Restore this rank's state saved by ``save(directory)``; return what was skipped.

    Reads with ``torch.load(..., weights_only=True)``. A different world
    size raises ``ValueError``, also when this rank has no file.
    """
    import torch

    rank, world = rank_and_world()
    path = _path(directory, rank)
    if not path.exists():
        others = sorted(Path(directory).glob("rng_state_rank*.pt"))
        if others:
            saved = torch.load(others[0], weights_only=True)
            raise ValueError(f"no RNG state for rank {rank} in {directory}: it was saved by "
                             f"a run with world size {saved.get('world_size')!r}; this run "
                             f"has world size {world}")
        raise FileNotFoundError(f"no RNG state for rank {rank}: {path} does not exist")
    return load_state_dict(torch.load(path, weights_only=True), strict=strict)


def synchronize(src: int = 0, group: Any = None, *, strict: bool = True) -> list[str]:
    """Give every rank of ``group`` rank ``src``'s RNG streams; return what was skipped.

    Call it on every rank. Rank ``src`` (a global rank) captures its state;
    one ``broadcast_object_list`` sends it to the others, which restore it:
    ``random``, NumPy's global state, torch's CPU generator, every
    accelerator generator (device by device), registered generators and
    source plugins, where accelerate's ``synchronize_rng_states`` covers one
    source per call. Flags and environment variables stay as they are on
    each rank. ``strict`` is ``RNGState.restore``'s: a rank whose sources
    differ from ``src``'s (another number of devices, another generator
    registered) raises ``StateMismatchError`` and restores nothing. If
    ``src`` cannot capture its state, every rank raises ``RuntimeError``.
    """
    dist = _dist()
    world = int(dist.get_world_size())
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < world:
        raise ValueError(f"src must be a rank in [0, {world}), got {src!r}")
    if strict is not True and strict is not False:
        raise TypeError(f"strict must be True or False, got {strict!r}")
    payload: list[Any] = [None]
    if int(dist.get_rank()) == src:
        try:
            payload[0] = {"state": capture().state_dict()}
        except Exception as exc:  # every rank learns of it, after the collective
            payload[0] = {"error": f"{type(exc).__name__}: {exc}"}
    dist.broadcast_object_list(payload, src=src, group=group)
    sent = payload[0]
    if "error" in sent:
        raise RuntimeError(f"rank {src} could not capture its RNG state: {sent['error']}")
    if int(dist.get_rank()) == src:
        return []
    return RNGState.from_state_dict(sent["state"]).restore(strict=strict)
