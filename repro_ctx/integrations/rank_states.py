"""Every rank's RNG state in one checkpoint entry, for frameworks that save from rank 0 only.

Lightning (and accelerate's registered objects) write the checkpoint from one
process. ``gather_states()`` runs on every rank: each contributes its own
``repro_ctx.distributed.state_dict()`` (which records its rank and the world
size) and receives everyone's, through one ``all_gather_object``, so the
entry is the same on every rank, whichever of them writes it. Keys never
depend on the rank, so nothing that deduplicates equal keys across ranks can
mix their streams up. ``restore_own()`` picks this process's entry by rank and
restores it; another world size raises ``ValueError`` naming both sizes,
before anything changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..state import distributed
from ..state.distributed import rank_and_world
from ..state.snapshot import RNGState

FORMAT: Final = "repro_ctx.rank_states"
VERSION: Final = 1


def gather_states(state: RNGState | None = None) -> dict[str, Any]:
    """Every rank's state (``capture()`` unless given), as plain data equal on every rank.

    Call it on every rank at the same point: with more than one rank it is a
    collective (``torch.distributed.all_gather_object``), and a rank that
    does not take part leaves the others waiting. One process returns its
    own state alone.
    """
    own = distributed.state_dict(state)
    world = int(own["world_size"])
    if world == 1:
        entries = [own]
    else:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                f"WORLD_SIZE is {world} but torch.distributed is not initialised: every rank's "
                "state is gathered through the process group, so call "
                "torch.distributed.init_process_group() first"
            )
        entries = distributed.gather_objects(own)
    ranks = [entry["rank"] for entry in entries]
    if ranks != list(range(world)):  # pragma: no cover - all_gather_object orders by rank
        raise RuntimeError(f"gathered RNG states of ranks {ranks}, expected 0..{world - 1}")
    return {"format": FORMAT, "version": VERSION, "world_size": world, "ranks": entries}


def check_states(data: object) -> dict[str, Any]:
    """``gather_states()``'s output, checked; a ``ValueError`` says what is wrong with it."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise ValueError("not a repro_ctx rank-states entry (expected the dict "
                         "gather_states() returned)")
    if data.get("version") != VERSION:
        raise ValueError(f"unsupported repro_ctx rank-states version {data.get('version')!r}; "
                         f"this repro_ctx reads {VERSION}")
    world, entries = data.get("world_size"), data.get("ranks")
    if (isinstance(world, bool) or not isinstance(world, int) or world < 1
            or not isinstance(entries, list) or len(entries) != world):
        raise ValueError("malformed repro_ctx rank-states entry: 'ranks' must hold one state "
                         "per rank of 'world_size'")
    return dict(data)


def restore_own(data: object, *, strict: bool = True) -> list[str]:
    """Restore this rank's streams from ``gather_states()``'s output; return what was skipped.

    The saved world size must be this run's, else a ``ValueError`` names
    both and nothing is restored. ``strict`` is ``RNGState.restore``'s.
    """
    checked = check_states(data)
    rank, world = rank_and_world()
    saved = checked["world_size"]
    if saved != world:
        raise ValueError(f"these RNG states were saved by a run with world size {saved}; this "
                         f"run has world size {world}. Per-rank streams cannot be mapped onto "
                         "another number of ranks")
    return distributed.load_state_dict(checked["ranks"][rank], strict=strict)
