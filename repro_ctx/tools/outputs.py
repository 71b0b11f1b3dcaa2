"""Outputs of a command, captured and compared byte for byte, for ``repro-ctx check``.

Files are compared in chunks, so checkpoints of any size never have to fit in
memory; the first difference is located by byte offset, line and column.
A run's stdout is captured for comparison; its stderr still reaches the
terminal as it is written, and its last lines are kept, so that a failed run
can show how both ended.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

_CHUNK = 1 << 20
_EXCERPT = 120
_CONTEXT = 40
TAIL_LINES = 20
_TAIL_BYTES = 1 << 16  # of stderr kept while it streams through


@dataclass(frozen=True)
class Completed:
    """One finished run: its exit code, all of its stdout, and the end of its stderr."""

    returncode: int
    stdout: bytes
    stderr_tail: bytes


def run_capturing(command: Sequence[str], env: Mapping[str, str]) -> Completed:
    """Run ``command``: stdout captured, stderr passed on to ours as it comes, its end kept.

    ``FileNotFoundError`` and ``PermissionError`` from starting it propagate.
    """
    with subprocess.Popen(list(command), env=dict(env), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        tail = bytearray()
        pump = threading.Thread(target=_pass_on, args=(process.stderr, tail), daemon=True)
        pump.start()
        try:
            stdout = process.stdout.read()
            process.wait()
        except BaseException:  # an interrupt: do not leave the program running
            process.kill()
            raise
        finally:
            pump.join()
    return Completed(process.returncode, stdout, bytes(tail))


def _pass_on(stream: BinaryIO, tail: bytearray) -> None:
    sys.stderr.flush()
    sink = getattr(sys.stderr, "buffer", None)
    for chunk in iter(lambda: stream.read1(1 << 16), b""):  # type: ignore[attr-defined]
        if sink is not None:
            sink.write(chunk)
            sink.flush()
        else:
            sys.stderr.write(chunk.decode(errors="replace"))
            sys.stderr.flush()
        tail += chunk
        del tail[:-_TAIL_BYTES]


def last_lines(data: bytes, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of ``data``, decoded (undecodable bytes replaced)."""
    return data.decode(errors="replace").splitlines()[-lines:]


@dataclass(frozen=True)
class Output:
    """One output of one run: captured bytes, or a file on disk."""

    name: str
    data: bytes | None = None
    path: str | None = None

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> Output:
        return cls(name, data=data)

    @classmethod
    def from_file(cls, name: str, path: str) -> Output:
        return cls(name, path=path)

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        return os.path.getsize(self.path)

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def keep(self, directory: str) -> Output:
        """A copy that outlives the next run, which overwrites the file."""
        if self.path is None:
            return self
        copy = os.path.join(directory, f"{len(os.listdir(directory))}.out")
        shutil.copyfile(self.path, copy)
        return Output(self.name, path=copy)


@dataclass(frozen=True)
class Difference:
    """Where two outputs first differ. ``line`` and ``column`` count from 1."""

    offset: int
    line: int
    column: int
    expected: bytes
    """The reference's line around the difference (up to its end of line)."""
    actual: bytes

    def describe(self, name: str, label: str) -> str:
        def show(excerpt: bytes) -> str:
            return repr(excerpt) if excerpt else "<end of output>"

        return (
            f"  {name}: first difference at line {self.line}, column {self.column} "
            f"(byte offset {self.offset})\n"
            f"    run 1: {show(self.expected)}\n"
            f"    {label}: {show(self.actual)}"
        )


def first_difference(reference: Output, other: Output, chunk: int = _CHUNK) -> Difference | None:
    """The first byte at which ``other`` differs from ``reference`` (or ends early), or None."""
    with reference.open() as a, other.open() as b:
        offset = 0
        line = 1
        line_start = 0
        while True:
            chunk_a = a.read(chunk)
            chunk_b = b.read(chunk)
            if chunk_a == chunk_b:
                if not chunk_a:
                    return None
                line, line_start = _advance(chunk_a, len(chunk_a), offset, line, line_start)
                offset += len(chunk_a)
                continue
            index = _mismatch(chunk_a, chunk_b)
            line, line_start = _advance(chunk_a, index, offset, line, line_start)
            at = offset + index
            start = max(line_start, at - _CONTEXT)
            return Difference(at, line, at - line_start + 1, _excerpt(a, start), _excerpt(b, start))


def _mismatch(a: bytes, b: bytes) -> int:
    """Index of the first differing byte of two unequal chunks."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


def _advance(chunk: bytes, end: int, offset: int, line: int, line_start: int) -> tuple[int, int]:
    """Line number and line start after the first ``end`` bytes of ``chunk``."""
    newlines = chunk.count(b"\n", 0, end)
    if newlines:
        line += newlines
        line_start = offset + chunk.rindex(b"\n", 0, end) + 1
    return line, line_start


def _excerpt(stream: BinaryIO, offset: int) -> bytes:
    stream.seek(offset)
    return stream.read(_EXCERPT).split(b"\n", 1)[0]


@contextmanager
def set_aside(paths: Sequence[str]) -> Iterator[None]:
    """Move existing ``paths`` out of the way while a run writes them afresh.

    Whether a run wrote a file is then plain to see (it exists), whatever the
    file system's timestamp resolution. A file the run did not write gets its
    old content back; one it wrote replaces the old one, as the command would.
    """
    aside: list[tuple[str, str]] = []
    try:
        for path in paths:
            if os.path.lexists(path):
                directory, base = os.path.split(os.path.abspath(path))
                hidden = os.path.join(directory, f".{base}.repro-ctx-check-{os.getpid()}")
                os.replace(path, hidden)
                aside.append((path, hidden))
        yield
    finally:
        for path, hidden in aside:
            if os.path.lexists(path):
                os.remove(hidden)
            else:
                os.replace(hidden, path)
