"""One rank of a gloo process group, for tests/state/test_distributed.py.

``python -m tests.distributed_script SCENARIO RANK WORLD PORT DIRECTORY`` runs
SCENARIO on this rank and writes what it saw to ``DIRECTORY/SCENARIO-RANK.json``.
"""

from __future__ import annotations

import datetime
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from repro_ctx import deterministic, distributed
from repro_ctx.core.seed import rank_seed
from tests.global_state import INDUCTOR_ENTRY
from tests.rank_processes import destroy_group
from tests.waits import HANG_TIMEOUT


def _draws() -> list[float]:
    return [random.random(), float(np.random.rand()), float(torch.rand(()))]


def _gather(value: object) -> list[Any]:
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def _divergence(diverge: Any) -> str | None:
    """Run ``diverge`` on rank 1 only, then check on every rank; return the error message."""
    with deterministic(5):
        if dist.get_rank() == 1:
            diverge()
        try:
            distributed.assert_synchronized()
        except distributed.NotSynchronizedError as exc:
            return str(exc)
    return None


def streams(rank: int, directory: Path) -> dict[str, Any]:
    with deterministic(5):
        shared = _gather(_draws())
        distributed.assert_synchronized()  # agreement passes
    with deterministic(5, per_rank=True):
        per_rank = _gather(_draws())
    with deterministic(rank_seed(5, rank)):
        derived = _draws()
    with deterministic(5, per_rank=True):
        _draws()
        distributed.save(directory / "checkpoint")
        after_save = _draws()

    def set_benchmark() -> None:
        torch.backends.cudnn.benchmark = True

    return {
        "shared": shared,
        "per_rank": per_rank,
        "derived": derived,
        "after_save": after_save,
        "random_divergence": _divergence(random.random),
        "flag_divergence": _divergence(set_benchmark),
        "agreement_after_divergence": _divergence(lambda: None),
    }


ENTRY = INDUCTOR_ENTRY  # the lazily read inductor entry this torch has


def import_order(rank: int, directory: Path) -> dict[str, Any]:
    """Only rank 1 imports inductor's config (as ``torch.compile`` would); then rank 0 too."""
    if rank == 1:
        import torch._inductor.config  # noqa: F401
    imported = "torch._inductor.config" in sys.modules
    one_imported = _divergence(lambda: None)  # in a scope, which sets it where imported
    import torch._inductor.config as config

    def flip() -> None:
        setattr(config, ENTRY, not getattr(config, ENTRY))

    return {
        "imported": imported,
        "one_imported": one_imported,
        "both_imported": _divergence(lambda: None),
        "both_differ": _divergence(flip),
    }


def resume(rank: int, directory: Path) -> dict[str, Any]:
    skipped = distributed.load(directory / "checkpoint")
    return {"skipped": skipped, "after_load": _draws()}


def main() -> None:
    scenario, rank, world, port, directory = sys.argv[1:6]
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=int(rank), world_size=int(world),
        timeout=datetime.timedelta(seconds=HANG_TIMEOUT),
    )
    result = {"streams": streams, "resume": resume,
              "import_order": import_order}[scenario](int(rank), Path(directory))
    (Path(directory) / f"{scenario}-{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    destroy_group()  # torch 2.4 may hang in it (tests/rank_processes.py)


if __name__ == "__main__":
    main()
