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

from dataclasses import dataclass
from typing import Any

from ._source import Plan

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
_CUDNN_NODES = (("cuda", "conv"), ("cuda", "rnn"))


@dataclass(frozen=True, slots=True)
class TF32Snapshot:
    matmul_precision: str | None
    """Legacy ``get_float32_matmul_precision()``; ``None`` when it was unreadable."""
    cudnn_allow_tf32: bool | None
    """Legacy cuDNN ``allow_tf32``; ``None`` when it was unreadable."""
    nodes: tuple[str, ...]
    """The ``fp32_precision`` values of every node this torch has."""


def _try(read: Any) -> Any:
    try:
        return read()
    except RuntimeError:
        return None


class TF32Source:
    name = "tf32"

    def __init__(self, torch: Any) -> None:
        c = torch._C
        self._get_precision = torch.get_float32_matmul_precision
        self._set_precision = torch.set_float32_matmul_precision
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
        self._get_node: Any = getter
        self._set_node: Any = getattr(c, "_set_fp32_precision_setter", None)

    def _read_nodes(self) -> tuple[str, ...]:
        if not self._nodes:
            return ()
        return tuple(map(self._get_node, self._node_backends, self._node_ops))

    def capture(self) -> TF32Snapshot:
        return TF32Snapshot(
            _try(self._get_precision), _try(self._get_cudnn), self._read_nodes()
        )

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

    def restore(self, snapshot: object) -> None:
        self.restore_from(self.capture(), snapshot)

    def restore_from(self, current: object, snapshot: object) -> None:
        """Restore ``snapshot`` given ``current``, the state just captured."""
        assert isinstance(current, TF32Snapshot)
        assert isinstance(snapshot, TF32Snapshot)
        legacy_written = False
        if (
            snapshot.matmul_precision is not None
            and current.matmul_precision != snapshot.matmul_precision
        ):
            self._set_precision(snapshot.matmul_precision)
            legacy_written = True
        if (
            snapshot.cudnn_allow_tf32 is not None
            and current.cudnn_allow_tf32 != snapshot.cudnn_allow_tf32
        ):
            self._set_cudnn(snapshot.cudnn_allow_tf32)
            legacy_written = True
        # the legacy setters also move the nodes: read them again after one
        nodes = self._read_nodes() if legacy_written else current.nodes
        if nodes != snapshot.nodes:
            for (backend, op), now, value in zip(self._nodes, nodes, snapshot.nodes):
                if now != value:
                    self._set_node(backend, op, value)

    def describe(self) -> dict[str, object]:
        snapshot = self.capture()
        out: dict[str, object] = {
            "torch.get_float32_matmul_precision": snapshot.matmul_precision,
            "torch.backends.cudnn.allow_tf32": snapshot.cudnn_allow_tf32,
        }
        for (backend, op), value in zip(self._nodes, snapshot.nodes):
            out[f"fp32_precision[{backend}.{op}]"] = value
        return out
