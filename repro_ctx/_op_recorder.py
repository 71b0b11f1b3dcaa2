"""Record every torch op a function runs, forward and backward, with a hash of each output.

A ``TorchDispatchMode`` sees each aten op after autograd has decomposed it,
including the ops the autograd engine runs in backward and the optimizer's
updates. For each op it notes the active ``nn.Module`` (global forward
hooks keep a module stack), the first calling frame outside torch and
repro_ctx, and per output the shape, dtype, norm and a sha256 hash of the
bytes. A backward op takes the module and source line of the forward
op that created its autograd node: forward ops claim autograd sequence
numbers as they run, and the engine says which node it is running.

Cost: each hashed output is copied to the host once (``.cpu()`` of a
contiguous device tensor; CPU tensors are read in place unless they are not
contiguous). Views and uninitialised memory are recorded but not hashed.
No values are kept, except a host copy of the outputs at ``capture_at`` (or
at the first op that differs from ``reference``): that is all the report
needs to measure the size of the difference.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

from ._divergence_report import OpRecord, OutputRecord, compare_ops

if TYPE_CHECKING:
    import torch

    from ._deterministic import deterministic

# Ops whose output is uninitialised memory: its bytes are noise unless
# fill_uninitialized_memory is on, and the op that fills it is recorded next.
_UNINITIALISED = frozenset({
    "empty", "empty_like", "empty_strided", "empty_permuted", "new_empty",
    "new_empty_strided", "resize_", "resize_as_", "_empty_affine_quantized",
    "_empty_per_channel_affine_quantized",
})
_SKIPPED_NAMESPACES = frozenset({"profiler"})
# (name, recorded, hashed, the written arguments that stand for the outputs)
_FuncInfo = tuple[str, bool, bool, tuple[tuple[int, str], ...]]
_FUNC_INFO: dict[object, _FuncInfo] = {}
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# sha256, truncated: hardware-accelerated (SHA-NI, ARMv8 crypto), it hashed a
# 2 MB activation 3x faster than blake2b on the CPUs this was measured on.
_DIGEST_CHARS = 32


@dataclass
class RunRecord:
    """One recorded run: its ops, the flags in effect, and the outputs kept at one op."""

    ops: list[OpRecord] = field(default_factory=list)
    flags: dict[str, str] = field(default_factory=dict)
    first_difference: int | None = None
    captured: list[torch.Tensor] | None = None


class _Recorder:
    """The state of one recording; the dispatch mode and module hooks feed it."""

    def __init__(
        self,
        reference: Sequence[OpRecord] | None,
        capture_at: int | None,
        samples: int,
    ) -> None:
        import torch

        self.torch = torch
        self.run = RunRecord()
        self.reference = reference
        self.comparing = reference is not None
        self.capture_at = capture_at
        self.samples = samples
        self.thread = threading.get_ident()
        self.modules: list[tuple[object, str, str]] = []  # (module, path, label)
        self.names: dict[int, str] = {}
        self.forward_sites: dict[int, tuple[str, str, int]] = {}
        self.internal_code: dict[CodeType, bool] = {}
        self.internal = (os.path.dirname(os.path.abspath(torch.__file__)) + os.sep, _HERE)
        self.current_node: Callable[[], Any] | None = getattr(
            torch._C, "_current_autograd_node", None
        )
        self.sequence_nr: Callable[[], int] | None = getattr(
            torch._C._autograd, "_get_sequence_nr", None
        )

    # module stack -----------------------------------------------------------------

    def push(self, module: Any, args: object) -> None:
        if threading.get_ident() != self.thread:
            return
        cls = type(module).__name__
        if not self.modules:
            self.names = {id(m): name for name, m in module.named_modules()}
            self.modules.append((module, cls, cls))
            return
        name = self.names.get(id(module))
        parent = self.modules[-1][1]
        root = self.modules[0][1]
        path = f"{root}.{name}" if name else f"{parent}.{cls}"
        self.modules.append((module, path, f"{path} ({cls})"))

    def pop(self, module: Any, args: object, output: object) -> None:
        if threading.get_ident() != self.thread:
            return
        for depth in range(len(self.modules) - 1, -1, -1):
            if self.modules[depth][0] is module:
                del self.modules[depth:]
                return

    # ops ----------------------------------------------------------------------------

    @staticmethod
    def _describe_func(func: Any) -> _FuncInfo:
        """What to record of an op overload, worked out once per overload per process."""
        name = str(func)
        recorded = getattr(func, "namespace", "aten") not in _SKIPPED_NAMESPACES
        base = name.split(".")[1] if name.count(".") >= 2 else name
        hashed = not getattr(func, "is_view", False) and base not in _UNINITIALISED
        schema = getattr(func, "_schema", None)
        mutated: tuple[tuple[int, str], ...] = ()
        if schema is not None and not schema.returns:
            # In-place ops that return nothing (``_foreach_add_``, the foreach
            # optimizers' updates): their results are the arguments they wrote.
            mutated = tuple(
                (position, argument.name)
                for position, argument in enumerate(schema.arguments)
                if argument.alias_info is not None and argument.alias_info.is_write
            )
        return name, recorded, hashed, mutated

    def _source(self, frame: FrameType | None = None) -> tuple[str, int]:
        """The first frame outside torch and repro_ctx: the user's line that ran the op."""
        if frame is None:
            frame = sys._getframe(1)
        cache = self.internal_code
        while frame is not None:
            code = frame.f_code
            internal = cache.get(code)
            if internal is None:
                internal = cache[code] = code.co_filename.startswith(self.internal)
            if not internal:
                return code.co_filename, frame.f_lineno
            frame = frame.f_back
        return "", 0

    def note(self, func: Any, args: Sequence[object], kwargs: dict[str, object],
             out: object) -> None:
        meta = _FUNC_INFO.get(func)
        if meta is None:
            meta = _FUNC_INFO[func] = self._describe_func(func)
        name, recorded, hashed, mutated = meta
        if not recorded:
            return
        if mutated:
            out = [args[i] if i < len(args) else kwargs.get(arg) for i, arg in mutated]
        run = self.run
        index = len(run.ops)
        node = self.current_node() if self.current_node is not None else None
        if node is not None:
            site = self.forward_sites.get(node._sequence_nr())
            module, file, line = site if site is not None else ("", *self._source())
            op_phase: Any = "backward"
            grad_fn = node.name().removeprefix("torch::autograd::")
        else:
            module = self.modules[-1][2] if self.modules else ""
            file, line = self._source()
            op_phase, grad_fn = "forward", ""
            if self.sequence_nr is not None:
                # The op that created autograd node N runs with the counter at N + 1.
                self.forward_sites.setdefault(self.sequence_nr() - 1, (module, file, line))
        outputs: list[OutputRecord] = []
        hosts: list[tuple[torch.Tensor, bool]] = []
        for leaf in _leaves(out):
            record, parts = describe_output(self.torch, leaf, hashed, self.samples)
            outputs.append(record)
            hosts.extend(parts)
        op = OpRecord(index, name, op_phase, module, file, line, grad_fn, tuple(outputs))
        run.ops.append(op)
        capture = index == self.capture_at
        if self.comparing:
            assert self.reference is not None
            kind = "stream" if index >= len(self.reference) else compare_ops(
                self.reference[index], op
            )
            if kind is not None:
                self.comparing = False
                if kind == "values":
                    run.first_difference = index
                    capture = True
        if capture:
            # Later ops may write these tensors in place: keep copies we own.
            run.captured = [host if copied else host.clone() for host, copied in hosts]


def _leaves(out: object) -> Iterator[object]:
    if isinstance(out, (tuple, list)):
        for item in out:
            yield from _leaves(item)
    elif out is not None:
        yield out


def _parts(torch: Any, tensor: torch.Tensor) -> list[torch.Tensor] | None:
    """The dense tensors that hold ``tensor``'s bytes; ``None`` if they cannot be read."""
    if tensor.device.type == "meta" or tensor.is_nested:
        return None
    if tensor.is_quantized:
        return [tensor.int_repr()]
    layout = tensor.layout
    if layout == torch.strided:
        return [tensor]
    if layout == torch.sparse_coo:
        return [tensor._indices(), tensor._values()]
    if layout in (torch.sparse_csr, torch.sparse_bsr):
        return [tensor.crow_indices(), tensor.col_indices(), tensor.values()]
    if layout in (torch.sparse_csc, torch.sparse_bsc):
        return [tensor.ccol_indices(), tensor.row_indices(), tensor.values()]
    return None


def to_host(tensor: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A contiguous CPU tensor with ``tensor``'s values, and whether it is a copy.

    A device tensor is made contiguous on the device and then copied to the
    host once; a CPU tensor is read in place when already contiguous.
    """
    tensor = tensor.detach()
    if tensor.is_conj():
        tensor = tensor.resolve_conj()
    if tensor.is_neg():
        tensor = tensor.resolve_neg()
    if tensor.device.type != "cpu":
        return tensor.contiguous().cpu(), True
    if tensor.is_contiguous():
        return tensor, False
    return tensor.contiguous(), True


def describe_output(
    torch: Any, leaf: object, hashed: bool, samples: int
) -> tuple[OutputRecord, list[tuple[torch.Tensor, bool]]]:
    """The record of one op output, and its host copies (for the caller to keep or drop)."""
    if not isinstance(leaf, torch.Tensor):
        if isinstance(leaf, (bool, int, float, complex)):
            digest = hashlib.sha256(repr(leaf).encode()).hexdigest()[:_DIGEST_CHARS]
            size = float(abs(leaf))
            host = torch.tensor(leaf)
            return OutputRecord((), type(leaf).__name__, digest, size,
                                (size,) if samples else ()), [(host, True)]
        return OutputRecord((), type(leaf).__name__, None, None), []
    dtype = str(leaf.dtype)
    try:
        shape = tuple(leaf.shape)
    except RuntimeError:  # nested tensors have no single shape
        shape = ()
    parts = _parts(torch, leaf) if hashed else None
    if parts is None:
        return OutputRecord(shape, dtype, None, None), []
    hasher = hashlib.sha256()
    try:
        hosts = [to_host(part) for part in parts]
        for host, _copied in hosts:
            hasher.update(host.reshape(-1).view(torch.uint8).numpy().data)
    except RuntimeError:
        # Tensor subclasses (FakeTensor, wrappers) may have no bytes to read:
        # recorded without a hash rather than breaking the user's program.
        return OutputRecord(shape, dtype, None, None), []
    values = hosts[-1][0]
    norm = _norm(torch, values)
    sample: tuple[float, ...] = ()
    if samples and values.numel():
        flat = (values.abs() if values.is_complex() else values).reshape(-1)
        positions = torch.linspace(0, flat.numel() - 1, min(samples, flat.numel()))
        sample = tuple(flat[positions.round().long()].to(torch.float64).tolist())
    return OutputRecord(shape, dtype, hasher.hexdigest()[:_DIGEST_CHARS], norm, sample), hosts


def _norm(torch: Any, values: torch.Tensor) -> float | None:
    """The L2 norm of floating outputs, accumulated in float32 or wider: a magnitude to plot.

    Not for integers and bools, and not in float64: a widening copy of every
    output cost 100x the float32 reduction on a 2 MB activation.
    """
    if values.is_complex() and values.element_size() < 8:
        values = values.to(torch.complex64)
    elif values.is_floating_point() and values.element_size() < 4:
        values = values.to(torch.float32)
    elif not (values.is_floating_point() or values.is_complex()):
        return None
    return float(torch.linalg.vector_norm(values))


def _mode_class() -> type:
    """The dispatch mode, defined on first use so that importing repro_ctx does not import torch."""
    global _MODE
    if _MODE is None:
        from torch.utils._python_dispatch import TorchDispatchMode

        class OpRecordingMode(TorchDispatchMode):  # type: ignore[no-untyped-call]
            def __init__(self, recorder: _Recorder) -> None:
                super().__init__()  # type: ignore[no-untyped-call]
                self.recorder = recorder

            def __torch_dispatch__(
                self, func: Any, types: Any, args: Any = (), kwargs: Any = None
            ) -> Any:
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                self.recorder.note(func, args, kwargs, out)
                return out

        _MODE = OpRecordingMode
    return _MODE


_MODE: type | None = None


def flags_in_effect() -> dict[str, str]:
    """Every torch determinism and precision flag now, as ``describe_sources`` reports it."""
    from ._plugins import PluginSource
    from ._sources import default_sources

    flags: dict[str, str] = {}
    for source in default_sources():
        describe = getattr(source, "describe", None)
        if describe is None or isinstance(source, PluginSource):  # another library's state
            continue
        flags.update((str(key), repr(value)) for key, value in describe().items())
    flags["CUBLAS_WORKSPACE_CONFIG"] = repr(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    return flags


def record_run(
    fn: Callable[..., object],
    args: Sequence[object],
    scope: deterministic,
    *,
    reference: Sequence[OpRecord] | None = None,
    capture_at: int | None = None,
    samples: int = 0,
) -> RunRecord:
    """Run ``fn(*args)`` once inside ``scope``, recording every op.

    With ``reference``, the first op whose bytes differ from it is noted and
    its outputs kept; with ``capture_at``, the outputs of that op are kept.
    """
    from torch.nn.modules import module as nn_module

    recorder = _Recorder(reference, capture_at, samples)
    with scope:
        recorder.run.flags = flags_in_effect()
        handles = [
            nn_module.register_module_forward_pre_hook(recorder.push),
            nn_module.register_module_forward_hook(recorder.pop, always_call=True),
        ]
        try:
            with _mode_class()(recorder):
                fn(*args)
        finally:
            for handle in handles:
                handle.remove()
    return recorder.run


def value_differences(
    a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]
) -> tuple[float, float]:
    """Max ``|a-b|`` and ``|a-b| / max(|a|,|b|)`` over paired outputs, in float64.

    NaN against NaN (and inf against the same inf) counts as equal; NaN
    against a number as an infinite difference.
    """
    import torch

    max_abs = max_rel = 0.0
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape or x.numel() == 0:
            continue
        wide = torch.complex128 if x.is_complex() or y.is_complex() else torch.float64
        x, y = x.to(wide), y.to(wide)
        same = (x == y) | (torch.isnan(x) & torch.isnan(y))
        diff = (x - y).abs()
        diff = torch.where(same, 0.0, torch.where(torch.isnan(diff), torch.inf, diff))
        rel = diff / torch.maximum(x.abs(), y.abs())
        rel = torch.where(same, 0.0, torch.where(torch.isnan(rel), torch.inf, rel))
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float(rel.max()))
    return max_abs, max_rel
