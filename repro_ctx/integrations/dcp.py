"""Every rank's RNG streams in a ``torch.distributed.checkpoint`` (DCP) checkpoint.

``RNGStateful(seed)`` goes into the state dict given to plain ``dcp.save`` and
``dcp.load``::

    dcp.save({"model": model.state_dict(), "rng": RNGStateful(seed=0)}, checkpoint_id=path)
    dcp.load({"model": model.state_dict(), "rng": RNGStateful(seed=0)}, checkpoint_id=path)

DCP writes an entry that every rank holds under the same key once, and on
load gives each rank that one copy: per-rank RNG states under one key come
back as one rank's streams on every rank (RLinf PR #1570). So ``state_dict()``
gathers every rank's state (``all_gather_object``) into one entry that is
identical on every rank, kept as one opaque ``bytes`` value: whatever DCP
keeps of it holds every rank. A key per rank would not do: on load DCP
raises on a key the checkpoint lacks before any ``load_state_dict`` runs,
so a new rank asking for its own key could not get a clear error.

``load_state_dict()`` restores this rank's entry. The entry records the
world size: loading it with another one raises ``ValueError`` naming both,
unless ``on_resize="derive"``: then the ranks that existed keep their
streams, and each new rank gets the streams ``deterministic(seed,
per_rank=True)`` starts with (seeded from ``rank_seed(seed, rank)``, with
the seed saved in the checkpoint), and a ``RuntimeWarning`` says which
ranks got which. Flags and environment variables are not restored, as with
any loaded state (see ``RNGState.restore``).

``state_dict()`` is a collective when a process group is initialised: DCP
calls it on every rank, in ``dcp.load`` too (for its in-place template).
"""

from __future__ import annotations

import io
import warnings
from typing import Any, Final, Literal

import torch
import torch.distributed as dist

from ..core import scope as _scope
from ..core.seed import check_seed, rank_seed
from ..core.source import Plan
from ..sources.default_set import default_sources
from ..sources.environment import EnvironmentSource
from ..sources.flags import FlagsSource
from ..sources.tf32 import TF32Source
from ..state.snapshot import RNGState, capture

FORMAT: Final = "repro_ctx.integrations.dcp"
VERSION: Final = 1
KEY: Final = "repro_ctx_rng_states"
"""The one key of ``state_dict()``: the same on every rank."""

OnResize = Literal["raise", "derive"]


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    return 0, 1


def _ranks(ranks: list[int]) -> str:
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}-{ranks[-1]}"
    return "ranks " + ", ".join(str(rank) for rank in ranks)


class RNGStateful:
    """Every rank's RNG state for ``dcp.save``/``dcp.load`` (a DCP ``Stateful``).

    ``seed`` (an int in ``[0, 2**64)``) is saved with the states: with
    ``on_resize="derive"``, a rank the checkpoint has no state for gets
    streams derived from the saved seed and its rank. ``on_resize="raise"``
    (the default) refuses a checkpoint of another world size.
    """

    def __init__(self, seed: int = 0, *, on_resize: OnResize = "raise") -> None:
        if on_resize not in ("raise", "derive"):
            raise ValueError(f"on_resize must be 'raise' or 'derive', got {on_resize!r}")
        self.seed = check_seed(seed)
        self.on_resize: OnResize = on_resize

    def state_dict(self) -> dict[str, Any]:
        """``{KEY: bytes}``: every rank's state, gathered; equal on every rank."""
        rank, world = _rank_world()
        mine = {"rank": rank, "state": capture().state_dict()}
        if world > 1:
            states: list[Any] = [None] * world
            dist.all_gather_object(states, mine)
        else:
            states = [mine]
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "version": VERSION, "world_size": world,
                    "seed": self.seed, "ranks": states}, buffer)
        return {KEY: buffer.getvalue()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore this rank's streams from what ``state_dict()`` saved (see the module)."""
        saved = _read(state_dict)
        rank, world = _rank_world()
        saved_world = saved["world_size"]
        if saved_world != world and self.on_resize == "raise":
            raise ValueError(
                f"this checkpoint holds the RNG streams of {saved_world} ranks; this run has "
                f"world size {world}. Per-rank streams cannot be mapped onto another number "
                "of ranks: pass RNGStateful(on_resize='derive') to keep the saved ranks' "
                "streams and derive the others'")
        if saved_world != world:
            warnings.warn(_resize_message(saved_world, world, saved["seed"]), RuntimeWarning,
                          stacklevel=2)
        if rank >= saved_world:
            _derive(saved["seed"], rank)
            return
        entry = saved["ranks"][rank]
        if entry.get("rank") != rank:
            raise ValueError(f"the checkpoint's RNG entry {rank} is rank "
                             f"{entry.get('rank')!r}'s state")
        RNGState.from_state_dict(entry["state"]).restore()


def _read(state_dict: Any) -> dict[str, Any]:
    raw = state_dict.get(KEY) if isinstance(state_dict, dict) else None
    if not isinstance(raw, bytes):
        raise ValueError(f"not an RNGStateful state dict (expected {{{KEY!r}: bytes}} as "
                         "RNGStateful.state_dict() returns)")
    saved = torch.load(io.BytesIO(raw), weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError("not an RNGStateful state dict (its payload has no "
                         f"{FORMAT!r} format mark)")
    if saved.get("version") != VERSION:
        raise ValueError(f"unsupported RNGStateful version {saved.get('version')!r}; this "
                         f"repro_ctx reads {VERSION}")
    return saved


def _resize_message(saved_world: int, world: int, seed: int) -> str:
    kept = _ranks(list(range(min(saved_world, world))))
    text = (f"RNG streams saved by {saved_world} ranks, loaded by {world}: {kept} keep "
            "their saved streams")
    if world > saved_world:
        text += (f"; {_ranks(list(range(saved_world, world)))} get new streams derived "
                 f"from the saved seed {seed} and the rank (rank_seed(seed, rank))")
    else:
        text += f"; the saved streams of {_ranks(list(range(world, saved_world)))} are dropped"
    return text


def _derive(seed: int, rank: int) -> None:
    """The streams ``deterministic(seed, per_rank=True)`` starts this rank with."""
    plan = Plan(seed=rank_seed(seed, rank), algorithms=None, benchmark=None, tf32=None,
                fill_uninitialized_memory=None)
    with _scope._lock:
        for source in default_sources():
            if not isinstance(source, (EnvironmentSource, FlagsSource, TF32Source)):
                source.seed(source.capture(), plan)
