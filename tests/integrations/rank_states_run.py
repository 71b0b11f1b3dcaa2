"""One rank of a gloo group, for tests/integrations/test_rank_states.py.

``python -m tests.integrations.rank_states_run FOLDER`` with ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set: every rank gathers
all ranks' states (each its own stream, ``per_rank=True``), rank 0 writes the
entry, then every rank draws on, reads it back and restores its own streams.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from repro_ctx import deterministic
from repro_ctx.integrations.rank_states import gather_states, restore_own
from tests.rank_processes import destroy_group

folder = Path(sys.argv[1])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
with deterministic(seed=0, per_rank=True):
    torch.rand(3)
    entry = gather_states()
    own = torch.get_rng_state()
    assert [e["rank"] for e in entry["ranks"]] == list(range(world))
    if rank == 0:
        torch.save(entry, folder / "states.pt")
    dist.barrier()
    torch.rand(5)
    assert restore_own(torch.load(folder / "states.pt", weights_only=True)) == []
    assert torch.equal(torch.get_rng_state(), own)
    draw = torch.rand(1).item()
gathered: list[float] = [0.0] * world
dist.all_gather_object(gathered, draw)
assert len(set(gathered)) == world, f"ranks share a stream: {gathered}"
dist.barrier()
print(f"rank {rank}: ok", flush=True)
destroy_group()  # torch 2.4 may hang in destroy_process_group (tests/rank_processes.py)
