"""TF32 and float32 matmul precision: two torch APIs over one piece of state.

torch keeps a legacy value (``float32_matmul_precision`` and cuDNN's
``allow_tf32``) beside the per-backend ``fp32_precision`` nodes of the API added
in torch 2.9. Reading a legacy value while the two disagree raises
(pytorch#179445), and which one a program uses is the program's choice. So this
source captures both, writes through whichever API the program was using when
the scope was entered, and restores by writing the legacy value first and then
any node that still differs. That leaves exactly the captured state, and a
program that read its legacy flags before the scope can still read them after.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from ..core.plain import Malformed, Plain, Resolved, check_plain, expect, field
from ..core.source import Plan, WritesDifferences

# (backend, op) pairs of the fp32_precision API, root first.
_NODES = (
    ("generic", "all"),
    ("cuda", "matmul"),
    ("cuda", "all"),
    ("cuda", "conv"),
    ("cuda", "rnn"),
    ("mkldnn", "all"),
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("mkldnn", "rnn"),
)
_MATMUL_NODES = (("cuda", "matmul"), ("mkldnn", "matmul"))
_MATMUL_PRECISIONS: Final = ("highest", "high", "medium")
_CUDNN_NODES = (("cuda", "conv"), ("cuda", "rnn"))
_REPLAYS_KEPT: Final = 32


class TF32Snapshot(NamedTuple):
    matmul_precision: str | None
    """Legacy ``get_float32_matmul_precision()``; ``None`` when it was unreadable."""
    cudnn_allow_tf32: bool | None
    """Legacy cuDNN ``allow_tf32``; ``None`` when it was unreadable."""
    nodes: tuple[str, ...]
    """The ``fp32_precision`` values of every node this torch has."""


# Builds a snapshot from one tuple without NamedTuple's Python-level __new__:
# capture runs twice per scope and twice per generator step.
_snapshot: Callable[[tuple[str | None, bool | None, tuple[str, ...]]], TF32Snapshot] = (
    functools.partial(tuple.__new__, TF32Snapshot)
)


_Writes = tuple[tuple[Callable[..., None], tuple[object, ...]], ...]


def _readable(get: Callable[[], object]) -> bool:
    try:
        get()
    except RuntimeError:
        return False
    return True


class TF32Source(WritesDifferences):
    name = "tf32"
    kind = "tf32"

    def __init__(self, torch: Any) -> None:
        c = torch._C
        self._get_precision = getattr(
            c, "_get_float32_matmul_precision", torch.get_float32_matmul_precision
        )
        self._set_precision = getattr(
            c, "_set_float32_matmul_precision", torch.set_float32_matmul_precision
        )
        self._get_cudnn = c._get_cudnn_allow_tf32
        self._set_cudnn = c._set_cudnn_allow_tf32
        getter = getattr(c, "_get_fp32_precision_getter", None)
        nodes: list[tuple[str, str]] = []
        if getter is not None:
            for backend, op in _NODES:
                try:
                    getter(backend, op)
                except (RuntimeError, ValueError, TypeError):
                    continue
                nodes.append((backend, op))
        self._nodes = tuple(nodes)
        self._node_backends = tuple(backend for backend, _op in nodes)
        self._node_ops = tuple(op for _backend, op in nodes)
        # The nodes each legacy setter writes, so the only ones to read again
        # after it: torch's setFloat32MatmulPrecision and setAllowTF32CuDNN
        # write exactly these leaves (pinned in tests/sources/test_facts.py).
        self._matmul_positions = tuple(i for i, node in enumerate(nodes) if node in _MATMUL_NODES)
        self._cudnn_positions = tuple(i for i, node in enumerate(nodes) if node in _CUDNN_NODES)
        # A node whose own value is "none" takes its parent's (generic.all ->
        # <backend>.all -> <backend>.<op>): nodes are written parents first,
        # and a written parent's descendants are read again before comparing.
        depth = {node: (0 if node == ("generic", "all") else 1 if node[1] == "all" else 2)
                 for node in nodes}
        self._parents_first = tuple(sorted(range(len(nodes)), key=lambda i: depth[nodes[i]]))
        self._descendants = tuple(
            frozenset(
                j for j, other in enumerate(nodes)
                if depth[other] > depth[node] and (depth[node] == 0 or other[0] == node[0])
            )
            for node in nodes
        )
        self._get_node: Any = getter
        self._set_node: Any = getattr(c, "_set_fp32_precision_setter", None)
        # Writes from one state to another, by the two snapshots' values, for
        # the transitions whose writes depend on nothing else (see
        # ``_write_differences``): a scope's exit and a generator's
        # suspension and resumption repeat a handful of them.
        self._replays: dict[tuple[TF32Snapshot, TF32Snapshot], _Writes] = {}

    def _read_nodes(self) -> tuple[str, ...]:
        if not self._nodes:
            return ()
        return tuple(map(self._get_node, self._node_backends, self._node_ops))

    def capture(self) -> TF32Snapshot:
        # A legacy value is unreadable while the two APIs disagree (pytorch#179445).
        try:
            precision: str | None = self._get_precision()
        except RuntimeError:
            precision = None
        try:
            cudnn: bool | None = self._get_cudnn()
        except RuntimeError:
            cudnn = None
        return _snapshot((precision, cudnn, self._read_nodes()))

    def seed(self, snapshot: object, plan: Plan) -> None:
        assert isinstance(snapshot, TF32Snapshot)
        if plan.tf32 is None:
            return
        allow = plan.tf32
        if snapshot.matmul_precision is not None:
            target = "high" if allow else "highest"
            if snapshot.matmul_precision != target:
                self._set_precision(target)
        else:
            self._write_nodes(_MATMUL_NODES, "tf32" if allow else "ieee")
        if snapshot.cudnn_allow_tf32 is not None:
            if snapshot.cudnn_allow_tf32 != allow:
                self._set_cudnn(allow)
        else:
            self._write_nodes(_CUDNN_NODES, "tf32" if allow else "ieee")

    def _write_nodes(self, which: tuple[tuple[str, str], ...], value: str) -> None:
        for backend, op in which:
            if (backend, op) in self._nodes and self._get_node(backend, op) != value:
                self._set_node(backend, op, value)

    def _write(self, current: TF32Snapshot, snapshot: TF32Snapshot, remember: bool) -> None:
        replays = self._replays
        key = (current, snapshot)
        writes = replays.get(key)
        if writes is not None:  # this transition came before: no node is read again
            for write, args in writes:
                write(*args)
            return
        writes = self._write_differences(current, snapshot)
        if writes is not None:
            if len(replays) >= _REPLAYS_KEPT:
                replays.clear()
            replays[key] = writes

    def _write_differences(self, current: TF32Snapshot, snapshot: TF32Snapshot) -> _Writes | None:
        """Write the legacy values, then every node that still differs.

        Returns the writes, to replay when the same transition comes again,
        or ``None`` when they depend on more than the two snapshots show: a
        parent node's write moves the children that inherit from it, and
        whether a child inherits or holds its own equal value is not
        readable; nor is the legacy value behind an unreadable one.
        """
        writes: list[tuple[Callable[..., None], tuple[object, ...]]] = []
        replayable = True
        stale: set[int] = set()
        precision = snapshot.matmul_precision
        if precision is not None and current.matmul_precision != precision:
            self._set_precision(precision)
            writes.append((self._set_precision, (precision,)))
            stale.update(self._matmul_positions)  # it writes these leaves
        cudnn = snapshot.cudnn_allow_tf32
        if cudnn is not None and current.cudnn_allow_tf32 != cudnn:
            self._set_cudnn(cudnn)
            writes.append((self._set_cudnn, (cudnn,)))
            stale.update(self._cudnn_positions)
        nodes, wanted = self._nodes, snapshot.nodes
        get, set_node = self._get_node, self._set_node
        now = current.nodes
        if stale:
            moved = list(now)
            for position in stale:
                moved[position] = get(*nodes[position])
            now = tuple(moved)
        if now != wanted:
            values, stale = list(now), set()
            for position in self._parents_first:
                if position in stale:  # under a parent written just before
                    values[position] = get(*nodes[position])
                if values[position] != wanted[position]:
                    backend, op = nodes[position]
                    set_node(backend, op, wanted[position])
                    writes.append((set_node, (backend, op, wanted[position])))
                    if self._descendants[position]:
                        stale |= self._descendants[position]
                        replayable = False
        if precision is None or cudnn is None:
            self._keep_unreadable(snapshot, writes)
            replayable = False
        return tuple(writes) if replayable else None

    def _keep_unreadable(
        self, snapshot: TF32Snapshot, writes: list[tuple[Callable[..., None], tuple[object, ...]]]
    ) -> None:
        """A legacy value the snapshot could not read must stay unreadable.

        torch keeps its own legacy value beside the nodes, written only by the
        legacy setter (which also writes its leaf nodes); a legacy read raises
        while the two disagree. Putting the nodes back can make them agree
        again: then set the legacy value to one that disagrees with the
        snapshot's nodes, and put those leaf nodes back once more.
        """
        legacy = (
            (snapshot.matmul_precision, self._get_precision, self._set_precision,
             self._matmul_positions, ("highest", "high", "medium")),
            (snapshot.cudnn_allow_tf32, self._get_cudnn, self._set_cudnn,
             self._cudnn_positions, (False, True)),
        )
        set_node = self._set_node
        for wanted, get, set_legacy, positions, choices in legacy:
            if wanted is not None or not _readable(get):
                continue
            for choice in choices:
                set_legacy(choice)
                writes.append((set_legacy, (choice,)))
                for position in positions:
                    backend, op = self._nodes[position]
                    value = snapshot.nodes[position]
                    set_node(backend, op, value)
                    writes.append((set_node, (backend, op, value)))
                if not _readable(get):
                    break

    def describe(self) -> dict[str, object]:
        snapshot = self.capture()
        out: dict[str, object] = {
            "torch.get_float32_matmul_precision": snapshot.matmul_precision,
            "torch.backends.cudnn.allow_tf32": snapshot.cudnn_allow_tf32,
        }
        for (backend, op), value in zip(self._nodes, snapshot.nodes):
            out[f"fp32_precision[{backend}.{op}]"] = value
        return out

    # -- plain data: the legacy values, and each fp32_precision node by name ------

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, TF32Snapshot)
        return {
            "float32_matmul_precision": snapshot.matmul_precision,
            "cudnn_allow_tf32": snapshot.cudnn_allow_tf32,
            "fp32_precision": {
                f"{backend}.{op}": value
                for (backend, op), value in zip(self._nodes, snapshot.nodes, strict=True)
            },
        }

    @staticmethod
    def check(data: object) -> Plain:
        out = check_plain(data, "tf32")
        precision = field(out, "float32_matmul_precision", "tf32")
        if precision is not None and precision not in _MATMUL_PRECISIONS:
            raise Malformed(f"tf32: float32_matmul_precision must be one of "
                            f"{_MATMUL_PRECISIONS} or None, got {precision!r}")
        expect(field(out, "cudnn_allow_tf32", "tf32"), (bool, type(None)),
               "tf32.cudnn_allow_tf32", "a bool or None")
        nodes = expect(field(out, "fp32_precision", "tf32"), dict, "tf32.fp32_precision",
                       "a dict of 'backend.op' -> str")
        for node, value in nodes.items():
            expect(value, str, f"tf32.fp32_precision[{node!r}]", "a str")
        return out

    def resolve(self, data: Plain) -> Resolved:
        current = self.capture()
        loaded = data["fp32_precision"]
        names = [f"{backend}.{op}" for backend, op in self._nodes]
        nodes = tuple(loaded.get(name, now) for name, now in zip(names, current.nodes, strict=True))
        mismatches = [f"fp32_precision[{name}] was not captured" for name in names
                      if name not in loaded]
        mismatches += [f"fp32_precision[{name}] does not exist in this torch" for name in loaded
                       if name not in names]
        snapshot = TF32Snapshot(data["float32_matmul_precision"], data["cudnn_allow_tf32"], nodes)
        return Resolved(snapshot, tuple(mismatches))

    @staticmethod
    def items(data: Plain) -> dict[str, Plain]:
        out = {
            "float32_matmul_precision": data["float32_matmul_precision"],
            "cudnn.allow_tf32": data["cudnn_allow_tf32"],
        }
        for node, value in data["fp32_precision"].items():
            out[f"fp32_precision[{node}]"] = value
        return out
