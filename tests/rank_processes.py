"""Run a scenario on N gloo ranks, each a real process, and read what each rank wrote.

``run_ranks(module, scenario, world, directory)`` starts ``python -m module
SCENARIO RANK WORLD PORT DIRECTORY`` once per rank; each rank writes
``DIRECTORY/SCENARIO-RANK.json``. ``rank_main`` is the other end: it sets
up the process group, runs the scenario and writes its result. Waits only
guard against a hang.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_ranks(module: str, scenario: str, world: int, directory: Path) -> list[Any]:
    """Every rank's result; a rank that fails fails the test with its output."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", module, scenario, str(rank), str(world), str(port),
             str(directory)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in range(world)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for rank, (process, output) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, f"rank {rank} of {scenario}:\n{output}"
    return [json.loads((directory / f"{scenario}-{rank}.json").read_text())
            for rank in range(world)]


def rank_main(scenarios: dict[str, Callable[[int, int, Path], Any]]) -> None:
    """The rank side: ``python -m MODULE SCENARIO RANK WORLD PORT DIRECTORY``."""
    import torch.distributed as dist

    scenario, rank, world, port, directory = sys.argv[1:6]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=rank, WORLD_SIZE=world)
    dist.init_process_group("gloo", rank=int(rank), world_size=int(world),
                            timeout=datetime.timedelta(seconds=TIMEOUT))
    result = scenarios[scenario](int(rank), int(world), Path(directory))
    path = Path(directory) / f"{scenario}-{rank}.json"
    path.write_text(json.dumps(result))
    dist.barrier()
    destroy_group()  # only after success: a failing rank's traceback is its output


def destroy_group() -> None:
    """``dist.destroy_process_group()``; before torch 2.5, the process ends instead.

    On torch 2.4 it hangs now and then once every rank has passed the last
    barrier (pytorch/pytorch#75097; seen here in compat's Python 3.10 run),
    holding the GIL, so no timeout in Python can end it. Every rank writes
    its result before that barrier, so there a rank flushes its output and
    exits with status 0 without destroying its group.
    """
    import torch
    import torch.distributed as dist

    from repro_ctx.sources.inductor import release

    if release(torch) < (2, 5):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    dist.destroy_process_group()
