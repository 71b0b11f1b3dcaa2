"""Where two op streams part, why, and how that is shown: ``DivergenceReport``.

Pure data and formatting (the records are in ``records``): no torch here,
so ``compare`` of two files works on a machine without the GPU that wrote
them, and matplotlib is imported only by ``DivergenceReport.plot``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .records import (
    Cause,
    Kind,
    OpRecord,
    compare_ops,
    first_difference,
    norm_difference,
)

# The flags the table shows; the report keeps every flag in ``flags``.
_SHOWN_FLAGS = (
    "torch.use_deterministic_algorithms (mode, warn_only)",
    "torch.utils.deterministic.fill_uninitialized_memory",
    "torch.backends.cudnn.deterministic",
    "torch.backends.cudnn.benchmark",
    "torch.get_float32_matmul_precision",
    "torch.backends.cudnn.allow_tf32",
    "CUBLAS_WORKSPACE_CONFIG",
)
_TABLE_CONTEXT = 2  # ops shown on each side of the divergent one
_CELL_WIDTH = 44
ALGORITHMS_FLAG = "torch.use_deterministic_algorithms (mode, warn_only)"
FILL_FLAG = "torch.utils.deterministic.fill_uninitialized_memory"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _shape(shapes: Sequence[tuple[int, ...]]) -> str:
    return ", ".join("(" + ", ".join(map(str, shape)) + ")" for shape in shapes) or "-"


def _cell(text: str) -> str:
    return text if len(text) <= _CELL_WIDTH else "..." + text[-(_CELL_WIDTH - 3) :]


def _short_source(op: OpRecord) -> str:
    return f"{os.path.basename(op.file)}:{op.line}" if op.file else "(unknown)"


@dataclass(frozen=True, eq=False)
class DivergenceReport:
    """Where two runs of the same program part: the first op whose outputs differ bitwise.

    ``kind`` is ``"matched"`` (every op gave the same bytes), ``"values"``
    (the same ops ran, and op ``index`` gave different bytes) or
    ``"stream"`` (at ``index`` a different op, or the same op with other
    shapes or dtypes, ran, or one run had stopped). ``op`` and ``other_op``
    are the two runs' ops at ``index``. ``max_abs_diff`` and
    ``max_rel_diff`` (``|a-b| / max(|a|, |b|)``) are measured on that op's
    outputs; ``values_note`` says between which runs. ``flags`` are the
    determinism flags in effect in the first run (``flags_b``: the second).
    ``cause`` is the likely cause and its fix (``None`` when matched).

    Only ops with a hashed output can be seen to differ: views, uninitialised
    memory and unreadable tensors are shown as "not compared", never "equal".
    """

    kind: Kind
    """``"matched"``, ``"values"`` (op ``index`` gave other bytes) or ``"stream"`` (others ran)."""
    index: int | None
    """The first op (0-based, in run order) where the runs part; ``None`` when matched."""
    labels: tuple[str, str]
    """The two runs' names in the report: ``"run 1"`` and ``"run 2"``, or the files compared."""
    stream_a: tuple[OpRecord, ...]
    """Every op the first run executed, in order."""
    stream_b: tuple[OpRecord, ...]
    """Every op the second run executed, in order."""
    max_abs_diff: float | None = None
    """The largest ``|a-b|`` over the divergent op's outputs; ``None`` where not measured."""
    max_rel_diff: float | None = None
    """The largest ``|a-b| / max(|a|, |b|)`` over the divergent op's outputs."""
    values_note: str = ""
    """Between which runs (or files) the differences were measured; empty when matched."""
    flags: Mapping[str, str] = field(default_factory=dict)
    """The determinism flags and variables in effect in the first run, by name."""
    flags_b: Mapping[str, str] = field(default_factory=dict)
    """The same for the second run (``compare`` of two files: they may differ)."""
    title: str = "divergence report"
    """The first line of ``str(report)``."""
    cause: Cause | None = None
    """The likely cause and its fix (see ``Cause``); ``None`` when matched."""

    @property
    def matched(self) -> bool:
        """Whether every op gave the same bytes in both runs (``kind == "matched"``)."""
        return self.kind == "matched"

    @property
    def op(self) -> OpRecord | None:
        """The first run's op at the divergence (``None`` if matched or that run had stopped)."""
        return at(self.stream_a, self.index)

    @property
    def other_op(self) -> OpRecord | None:
        """The second run's op at the divergence (``None`` if matched or that run had stopped)."""
        return at(self.stream_b, self.index)

    @property
    def stream_index(self) -> int | None:
        """Where the op streams themselves part (at or after ``index``); ``None``: never."""
        found = first_difference(self.stream_a, self.stream_b, self.index or 0, stream_only=True)
        return None if found is None else found[1]

    @property
    def op_differences(self) -> tuple[float, ...]:
        """Per op, up to where the streams part: relative change of output norm (0: equal bytes)."""
        end = self.stream_index
        common = min(len(self.stream_a), len(self.stream_b)) if end is None else end
        pairs = zip(self.stream_a[:common], self.stream_b[:common], strict=True)
        return tuple(norm_difference(a, b) for a, b in pairs)

    @property
    def detail(self) -> str:
        """One sentence: what happened at the divergence."""
        a_label, b_label = self.labels
        if self.kind == "matched":
            return f"all {len(self.stream_a)} ops matched bitwise"
        op, other = self.op, self.other_op
        if self.kind == "values":
            assert op is not None
            return f"op #{self.index} {op.name} gave different bytes ({self._before()})"
        if op is None or other is None:
            ended, went_on = (a_label, other) if op is None else (b_label, op)
            assert went_on is not None
            return (
                f"the op streams differ: {ended} stopped after {self.index} ops, "
                f"the other went on with {went_on.name}"
            )
        if op.name != other.name:
            return f"the op streams differ: {op.name} ({a_label}) vs {other.name} ({b_label})"
        if op.shapes != other.shapes:
            return (
                f"the op streams differ: {op.name} gave shapes {_shape(op.shapes)} ({a_label}) "
                f"vs {_shape(other.shapes)} ({b_label})"
            )
        return (
            f"the op streams differ: {op.name} gave dtypes {', '.join(op.dtypes)} ({a_label}) "
            f"vs {', '.join(other.dtypes)} ({b_label})"
        )

    def _before(self) -> str:
        """What is known of the ops before the divergence: only hashed ones were compared."""
        before = self.stream_a[: self.index or 0]
        compared = sum(1 for op in before if op.compared)
        skipped = len(before) - compared
        if not before:
            return "it is the first op"
        unseen = (f"{_ops(skipped)} before it gave views or uninitialised memory and "
                  f"{'was' if skipped == 1 else 'were'} not compared")
        if not compared:
            return f"nothing before it was compared: {unseen}"
        matched = f"{_ops(compared)} before it matched"
        return matched if not skipped else f"{matched}; {unseen}"

    def __str__(self) -> str:
        a_label, b_label = self.labels
        rows: list[tuple[str, str]] = [("result", self.detail)]
        if self.cause is not None:
            rows += [("cause", self.cause.reason), ("fix", self.cause.fix)]
        op = self.op if self.op is not None else self.other_op
        if op is not None:
            node = f", autograd node {op.grad_fn}" if op.grad_fn else ""
            where = f"{op.name} ({op.phase}{node})"
            rows += [
                ("op", f"#{op.index} {where}"),
                ("module", op.module or "(none)"),
                ("source", op.source),
                ("shapes", _shape(op.shapes)),
                ("dtypes", ", ".join(op.dtypes) or "-"),
            ]
        if self.kind == "values":
            rows += [
                ("max abs diff", _fmt(self.max_abs_diff)),
                ("max rel diff", _fmt(self.max_rel_diff) + "  (|a-b| / max(|a|,|b|))"),
                ("values", self.values_note),
            ]
            later = self.stream_index
            if later is not None:
                rows.append(("later", f"the op streams also part at op #{later}"))
        rows.append(("ops", f"{len(self.stream_a)} ({a_label}), {len(self.stream_b)} ({b_label})"))
        for name in _SHOWN_FLAGS:
            if name in self.flags or name in self.flags_b:
                mine, theirs = self.flags.get(name, "?"), self.flags_b.get(name, "?")
                shown = mine if mine == theirs else f"{mine} ({a_label}) vs {theirs} ({b_label})"
                rows.append(("flag", f"{name} = {shown}"))
        width = max(len(key) for key, _ in rows)
        lines = [self.title, *(f"  {key.ljust(width)}  {value}" for key, value in rows)]
        if self.index is not None:
            lines += ["", *self._neighbours()]
        return "\n".join(lines)

    def _neighbours(self) -> list[str]:
        """A table of the ops around the divergence, as both runs saw them."""
        assert self.index is not None
        a_label, b_label = self.labels
        header = ("#", "phase", "op", "module", "source", "shapes", f"{a_label} vs {b_label}")
        table = [header]
        end = self.index + _TABLE_CONTEXT + 1
        for i in range(max(0, self.index - _TABLE_CONTEXT), end):
            a, b = at(self.stream_a, i), at(self.stream_b, i)
            shown = a if a is not None else b
            if shown is None:
                continue
            status = "missing" if a is None or b is None else _status(a, b)
            same = a is None or b is None or a.name == b.name
            name = shown.name if same else f"{a.name} / {b.name}"  # type: ignore[union-attr]
            table.append((
                str(i), shown.phase, _cell(name), _cell(shown.module or "-"),
                _cell(_short_source(shown)), _cell(_shape(shown.shapes)), status,
            ))
        widths = [max(len(row[col]) for row in table) for col in range(len(header))]
        return [
            ("> " if row[0] == str(self.index) else "  ")
            + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in table
        ]

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Write a PNG of the per-op difference along the op stream, the divergence marked.

        Needs matplotlib (``pip install repro-ctx[plot]``); it is imported only here,
        and drawn without pyplot, so no global backend or figure is touched.
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError(
                "DivergenceReport.plot needs matplotlib: pip install repro-ctx[plot]"
            ) from exc
        differences = self.op_differences
        nonzero = [d for d in differences if 0.0 < d < math.inf]
        floor = min(nonzero) / 10 if nonzero else 1e-12
        equal_x, unknown_x, differ_x = self.op_classes()
        differ_y = [
            differences[i] if 0.0 < differences[i] < math.inf
            else (max(nonzero, default=1.0) * 10 if differences[i] == math.inf else floor)
            for i in differ_x
        ]
        figure = Figure(figsize=(10, 4), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.set_yscale("log")
        axes.scatter(equal_x, [floor] * len(equal_x), s=4, color="0.6",
                     label="equal bytes (at the floor)")
        axes.scatter(unknown_x, [floor] * len(unknown_x), s=14, marker="|", color="tab:blue",
                     label="not compared: views, uninitialised memory")
        axes.scatter(differ_x, differ_y, s=10, color="tab:red", label="different bytes")
        backward = next((op.index for op in self.stream_a if op.phase == "backward"), None)
        if backward is not None:
            axes.axvline(backward, color="0.4", linestyle=":", label="backward starts")
        stream = self.stream_index
        longest = max(len(self.stream_a), len(self.stream_b))
        if stream is not None:
            axes.axvspan(stream, max(longest, stream + 1), color="tab:orange", alpha=0.2,
                         label="op streams differ")
        if self.index is not None:
            op = self.op or self.other_op
            assert op is not None
            axes.axvline(self.index, color="tab:red", linestyle="--",
                         label=f"first divergence: #{self.index} {op.name}")
        axes.set_xlim(-0.5, max(longest, 1) - 0.5)
        axes.set_xlabel("op index (forward and backward, in execution order)")
        axes.set_ylabel("relative change of output norm")
        axes.set_title(f"{self.title}: {self.detail}", fontsize=9)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=8)
        figure.tight_layout()
        out = Path(path)
        figure.savefig(out, format="png")
        return out

    def op_classes(self) -> tuple[list[int], list[int], list[int]]:
        """The op indices up to where the streams part: equal, not compared, different bytes."""
        equal: list[int] = []
        unknown: list[int] = []
        differ: list[int] = []
        for i in range(len(self.op_differences)):
            a, b = self.stream_a[i], self.stream_b[i]
            if compare_ops(a, b) is not None:
                differ.append(i)
            elif a.compared and b.compared:
                equal.append(i)
            else:
                unknown.append(i)
        return equal, unknown, differ


def _ops(count: int) -> str:
    return "1 op" if count == 1 else f"{count} ops"


def _status(a: OpRecord, b: OpRecord) -> str:
    kind = compare_ops(a, b)
    if kind == "values":
        return "DIFFERENT bytes"
    if kind == "stream":
        return "DIFFERENT op"
    return "equal" if a.compared and b.compared else "not compared"


def at(stream: Sequence[OpRecord], index: int | None) -> OpRecord | None:
    """The op at ``index``, or ``None`` past the end (a run that stopped early)."""
    return stream[index] if index is not None and index < len(stream) else None


def build_report(
    labels: tuple[str, str],
    stream_a: Sequence[OpRecord],
    stream_b: Sequence[OpRecord],
    *,
    values: tuple[float | None, float | None, str] = (None, None, ""),
    flags: Mapping[str, str],
    flags_b: Mapping[str, str],
    title: str,
    cause: Cause | None = None,
) -> DivergenceReport:
    """The report for two streams; ``values`` are the max diffs measured at the divergence."""
    found = first_difference(stream_a, stream_b)
    kind: Kind = "matched" if found is None else found[0]
    max_abs, max_rel, note = values if kind == "values" else (None, None, "")
    return DivergenceReport(
        kind=kind,
        index=None if found is None else found[1],
        labels=labels,
        stream_a=tuple(stream_a),
        stream_b=tuple(stream_b),
        max_abs_diff=max_abs,
        max_rel_diff=max_rel,
        values_note=note,
        flags=dict(flags),
        flags_b=dict(flags_b),
        title=title,
        cause=None if found is None else cause,
    )








