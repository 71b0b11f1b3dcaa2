"""What ``repro-ctx check`` and ``repro-ctx env-diff`` print: differences, and what to do next.

Kept apart from ``cli`` (the parser and the runs): how a failed run ended,
the first difference of two outputs (as tensors where the file holds them),
stdout as compared (masked), the environment both runs had with the command
that finds the op, and ``env-diff``'s report of two environment records.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from ..state.environment_diff import changing, differences, record_in, verdict_line
from ..state.environment_record import environment_summary
from .outputs import TAIL_LINES, Output, first_difference, last_lines
from .tensor_outputs import NotTensors, holds_tensors, tensor_difference

PROG = "repro-ctx"


class CommandError(Exception):
    """The command could not be started: a one-line message and an exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def show_failure(run: int, status: int, stdout: bytes, stderr_tail: bytes) -> None:
    """A failed run: its exit status, and how its stdout and stderr ended."""
    print(f"{PROG} check: run {run} failed with exit status {status}", file=sys.stderr)
    for name, data in (("stdout", stdout), ("stderr", stderr_tail)):
        lines = last_lines(data)
        if not lines:
            print(f"  its {name} was empty", file=sys.stderr)
            continue
        shown = f"last {TAIL_LINES} lines" if len(lines) == TAIL_LINES else "end"
        print(f"  its {name} ({shown}):", file=sys.stderr)
        for line in lines:
            print(f"    | {line}", file=sys.stderr)


def describe_difference(reference: Any, output: Any, label: str) -> str:
    """The first difference of two outputs: as tensors where the file holds them, else bytes."""

    difference = first_difference(reference, output)
    assert difference is not None
    as_bytes = difference.describe(reference.name, label)
    if reference.path is None or not holds_tensors(reference.name):
        return as_bytes
    try:
        found = tensor_difference(reference.path, output.path, reference.name)
    except NotTensors as exc:
        return f"{as_bytes}\n    (not compared as tensors: {exc})"
    if found is None:
        return (f"{as_bytes}\n    (read as tensors the contents are equal: the bytes differ "
                "outside the tensor data)")
    return found.describe(reference.name, label)


def stdout_output(data: bytes, masks: Sequence[re.Pattern[bytes]]) -> Output:
    """A run's stdout as compared: what each mask matches replaced by ``<masked>``."""
    for mask in masks:
        data = mask.sub(b"<masked>", data)
    return Output.from_bytes("stdout", data)


def stdout_note(ignore: bool, masks_given: Sequence[re.Pattern[bytes]]) -> str:
    """How stdout is compared, for the progress line."""
    if ignore:
        return "stdout not compared (--ignore-stdout)"
    masks = ", ".join(repr(mask.pattern.decode()) for mask in masks_given)
    return f"stdout (masking {masks})" if masks else "stdout"


def next_steps(command: Sequence[str], seed: int) -> list[str]:
    """After a difference: the environment both runs had, and how to find the op."""
    summary = environment_summary()
    shared = (f"torch {summary['torch.version']}, CPU capability "
              f"{summary['torch.cpu_capability']}, {summary['torch.threads']} threads, "
              f"BLAS {summary['torch.blas']}")
    return [
        "",
        f"environment: both runs had this machine's ({shared}) and the same variables: "
        "the difference comes from the program, not the machine (another machine: "
        f"`{PROG} doctor --json > here.json` on each, then `{PROG} env-diff`)",
        "next: find the first op where the runs part. Call "
        f"`repro_ctx.find_divergence(step, seed={seed})` on the function that computes these "
        "outputs (it runs it twice in one process and names the op, the cause and the fix); "
        "or save each run's ops with `repro_ctx.record(step, path=sys.argv[1], "
        f"seed={seed})` in the program, run it twice with "
        f"`{shlex.join([PROG, 'run', '--seed', str(seed), '--', *command, 'run1.json'])}` "
        "(and run2.json), then `print(repro_ctx.compare('run1.json', 'run2.json'))`",
    ]


def read_record(path: str) -> dict[str, Any]:
    """The environment record in the JSON file ``path``; ``CommandError`` (status 2) if none."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", 2) from None
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        raise CommandError(f"{path} is not JSON: {exc}", 2) from None
    try:
        return record_in(data, path)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None


def env_diff(first_path: str, second_path: str) -> int:
    """``repro-ctx env-diff A B``: print the differences and the verdict; the exit status."""
    first, second = read_record(first_path), read_record(second_path)
    found = differences(first, second)
    print(f"{PROG} env-diff: {first_path} vs {second_path}")
    for title, rows in (("can change results", changing(found)),
                        ("does not change results",
                         [item for item in found if not item.changes_results])):
        if rows:
            print(title)
            print("\n".join(f"  {item.field}: {item.why}" for item in rows))
    print(verdict_line(found))
    return 1 if changing(found) else 0
