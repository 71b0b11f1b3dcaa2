"""Op streams as files: what ``record`` writes and ``compare`` reads, as versioned JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .records import OpRecord, OutputRecord

FILE_FORMAT = "repro_ctx op stream"


FILE_VERSION = 2  # 2: each op row ends with the uncovered generator it drew from


READ_VERSIONS = (1, 2)


def stream_to_json(ops: Sequence[OpRecord]) -> list[list[Any]]:
    """Compact rows, one per op; the index is the row's position."""
    return [
        [op.name, op.phase, op.module, op.file, op.line, op.grad_fn,
         [[list(o.shape), o.dtype, o.digest, o.norm, list(o.sample)] for o in op.outputs],
         op.uncovered_rng]
        for op in ops
    ]


def stream_from_json(rows: object, version: int = FILE_VERSION) -> tuple[OpRecord, ...]:
    if not isinstance(rows, list):
        raise TypeError("ops must be a list")
    ops = []
    for index, row in enumerate(rows):
        if version == 1:
            name, phase, module, file, line, grad_fn, outputs = row
            uncovered = None
        else:
            name, phase, module, file, line, grad_fn, outputs, uncovered = row
        if phase not in ("forward", "backward"):
            raise ValueError(f"op #{index} has phase {phase!r}")
        ops.append(OpRecord(
            index, str(name), phase, str(module), str(file), int(line), str(grad_fn),
            tuple(
                OutputRecord(
                    tuple(int(n) for n in shape), str(dtype),
                    None if digest is None else str(digest),
                    None if norm is None else float(norm),
                    tuple(float(v) for v in sample),
                )
                for shape, dtype, digest, norm, sample in outputs
            ),
            None if uncovered is None else str(uncovered),
        ))
    return tuple(ops)


def write_stream(path: Path, header: Mapping[str, object], ops: Sequence[OpRecord]) -> None:
    """Write atomically: a reader never sees half a file, and a failure leaves none behind."""
    data = {"format": FILE_FORMAT, "version": FILE_VERSION, **header, "ops": stream_to_json(ops)}
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, separators=(",", ":"))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_stream(path: Path) -> tuple[dict[str, Any], tuple[OpRecord, ...]]:
    """The header and ops of a file written by ``record``; ``ValueError`` for anything else."""
    with path.open("rb") as handle:
        raw = handle.read()
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ValueError("no repro_ctx op stream header")
        version = data.get("version")
        if version not in READ_VERSIONS:
            raise ValueError(
                f"format version {version!r}, this repro_ctx reads "
                f"{' and '.join(map(str, READ_VERSIONS))}"
            )
        ops = stream_from_json(data.pop("ops"), version)
        flags = data.get("flags")
        if not isinstance(flags, dict):
            raise ValueError("no flags")
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(
            f"{path} is not an op stream written by repro_ctx.record: {exc}"
        ) from exc
    return data, ops
