"""Record every torch op a function runs, forward and backward, with a hash of each output.

A ``TorchDispatchMode`` sees each aten op after autograd has decomposed it,
including the ops the autograd engine runs in backward and the optimizer's
updates. For each op it notes the active ``nn.Module`` (global forward
hooks keep a module stack), the first calling frame outside torch and
repro_ctx, and per output the shape, dtype, norm and a sha256 hash of the
bytes. A backward op takes the module and source line of the forward
op that created its autograd node: forward ops claim autograd sequence
numbers as they run, and the engine says which node it is running.

An op that draws from a ``torch.Generator`` the scope does not cover
(neither passed in ``generators`` nor registered) is marked, with the name
the generator has in the calling code.

Cost: each hashed output is copied to the host once (``.cpu()`` of a
contiguous device tensor; CPU tensors are read in place unless they are not
contiguous). Views and uninitialised memory are recorded but not hashed.
No values are kept, except a host copy of the outputs at ``capture_at`` (or
at the first op that differs from ``reference``): that is all the report
needs to measure the size of the difference. A replay (``capture_at``) also
notes which op last wrote each storage, and at ``capture_at`` hashes the
op's inputs before it runs: the evidence ``causes`` classifies.

Longer than 400 lines because the recorder is one dispatch hook and the
bookkeeping it shares (writers, samples, generator names) across a run;
what it keeps of each output is in ``op_outputs``.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from ..sources.default_set import default_sources
from ..sources.plugins import PluginSource
from ..sources.registry import registered
from .causes import OpSample
from .op_outputs import describe_output, leaves
from .records import UNINITIALISED, OpRecord, OutputRecord, base_name, compare_ops

if TYPE_CHECKING:
    import torch

    from ..scopes.deterministic import deterministic

_SKIPPED_NAMESPACES = frozenset({"profiler"})
_PROGRESS_EVERY = 64  # ops between two progress callbacks


class _FuncInfo(NamedTuple):
    """What to record of one op overload, worked out once per overload per process."""

    name: str
    recorded: bool
    hashed: bool
    view: bool
    mutated: tuple[tuple[int, str], ...]  # the written arguments that stand for the outputs
    generators: tuple[tuple[int, str], ...]  # the Generator arguments


_FUNC_INFO: dict[object, _FuncInfo] = {}
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # the package


@dataclass
class RunRecord:
    """One recorded run: its ops, the flags in effect, and the outputs kept at one op."""

    ops: list[OpRecord] = field(default_factory=list)
    flags: dict[str, str] = field(default_factory=dict)
    first_difference: int | None = None
    captured: list[torch.Tensor] | None = None
    sample: OpSample | None = None
    """At ``capture_at``: the op's inputs, their origins and lifetimes, and its outputs."""


class _Recorder:
    """The state of one recording; the dispatch mode and module hooks feed it."""

    def __init__(
        self,
        reference: Sequence[OpRecord] | None,
        capture_at: int | None,
        samples: int,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        import torch

        self.torch = torch
        self.run = RunRecord()
        self.reference = reference
        self.comparing = reference is not None
        self.capture_at = capture_at
        self.samples = samples
        self.progress = progress
        self.covered: list[Any] = []  # the torch.Generators the scope seeds and restores
        # A replay notes which op last wrote each storage, and the inputs at capture_at.
        # storage address -> (op index, the tensor it wrote): the tensor, weakly, so
        # that memory freed and reused by another tensor is never blamed on the op
        self.writers: dict[int, tuple[int, weakref.ref[Any]]] | None = (
            {} if capture_at is not None else None
        )
        self.inputs_at = capture_at
        self.inputs: list[tuple[str | None, int | None, Any]] = []
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
        name = str(func)
        recorded = getattr(func, "namespace", "aten") not in _SKIPPED_NAMESPACES
        view = bool(getattr(func, "is_view", False))
        hashed = not view and base_name(name) not in UNINITIALISED
        schema = getattr(func, "_schema", None)
        mutated: tuple[tuple[int, str], ...] = ()
        generators: tuple[tuple[int, str], ...] = ()
        if schema is not None:
            if not schema.returns:
                # In-place ops that return nothing (``_foreach_add_``, the foreach
                # optimizers' updates): their results are the arguments they wrote.
                mutated = tuple(
                    (position, argument.name)
                    for position, argument in enumerate(schema.arguments)
                    if argument.alias_info is not None and argument.alias_info.is_write
                )
            generators = tuple(
                (position, argument.name)
                for position, argument in enumerate(schema.arguments)
                if "Generator" in str(argument.type)
            )
        return _FuncInfo(name, recorded, hashed, view, mutated, generators)

    def _info(self, func: Any) -> _FuncInfo:
        meta = _FUNC_INFO.get(func)
        if meta is None:
            meta = _FUNC_INFO[func] = self._describe_func(func)
        return meta

    def _user_frame(self, frame: FrameType | None) -> FrameType | None:
        """The first frame outside torch and repro_ctx: the user's code that ran the op."""
        cache = self.internal_code
        while frame is not None:
            code = frame.f_code
            internal = cache.get(code)
            if internal is None:
                internal = cache[code] = code.co_filename.startswith(self.internal)
            if not internal:
                return frame
            frame = frame.f_back
        return None

    def _source(self, frame: FrameType | None = None) -> tuple[str, int]:
        """The user's line that ran the op."""
        found = self._user_frame(sys._getframe(1) if frame is None else frame)
        return ("", 0) if found is None else (found.f_code.co_filename, found.f_lineno)

    def _uncovered_rng(self, generators: tuple[tuple[int, str], ...],
                       args: Sequence[object], kwargs: dict[str, object]) -> str | None:
        """The name of an uncovered generator the op drew from, ``""`` if unnamed; else None.

        The dispatcher hands over a new Python object for the same generator,
        so generators are matched by device and state, read after the draw.
        """
        for position, name in generators:
            generator = args[position] if position < len(args) else kwargs.get(name)
            if generator is None or not isinstance(generator, self.torch.Generator):
                continue
            if any(_same_generator(self.torch, generator, known) for known in self.covered):
                continue
            return _name_in(self.torch, self._user_frame(sys._getframe(2)), generator)
        return None

    def note_inputs(self, func: Any, args: Sequence[object], kwargs: dict[str, object]) -> None:
        """Hash the inputs of the op at ``capture_at`` before it runs (it may write them)."""
        if not self._info(func).recorded:
            return
        self.inputs_at = None
        torch = self.torch
        writers = self.writers if self.writers is not None else {}
        for leaf in (*leaves(args), *leaves(list(kwargs.values()))):
            if isinstance(leaf, torch.Tensor):
                record, _hosts = describe_output(torch, leaf, True, 0)
                digest = None if record.digest is None else (
                    f"{record.dtype}{record.shape}:{record.digest}"
                )
                root = leaf
                while root._base is not None:
                    root = root._base
                self.inputs.append((digest, writer_of(writers, leaf), weakref.ref(root)))
            else:
                self.inputs.append((_plain_repr(torch, leaf), None, None))

    def note(self, func: Any, args: Sequence[object], kwargs: dict[str, object],
             out: object) -> None:
        name, recorded, hashed, view, mutated, generators = self._info(func)
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
        writers = self.writers
        for leaf in leaves(out):
            record, parts = describe_output(self.torch, leaf, hashed, self.samples)
            outputs.append(record)
            hosts.extend(parts)
            if writers is not None and isinstance(leaf, self.torch.Tensor):
                storage = _storage(leaf)
                # A view writes nothing: its storage keeps the op that made it.
                if storage and (not view or writer_of(writers, leaf) is None):
                    writers[storage] = (index, weakref.ref(leaf))
        uncovered = self._uncovered_rng(generators, args, kwargs) if generators else None
        op = OpRecord(index, name, op_phase, module, file, line, grad_fn, tuple(outputs),
                      uncovered)
        run.ops.append(op)
        if self.progress is not None and not index % _PROGRESS_EVERY:
            self.progress(index + 1)
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


def writer_of(writers: dict[int, tuple[int, weakref.ref[Any]]], tensor: Any) -> int | None:
    """The op that last wrote ``tensor``'s storage, if the tensor it wrote still holds it.

    Storage addresses are reused once memory is freed: an entry whose tensor
    is gone, or has moved to other memory, belongs to another tensor's past.
    """
    storage = _storage(tensor)
    entry = writers.get(storage) if storage else None
    if entry is None:
        return None
    index, ref = entry
    written = ref()
    if written is None or _storage(written) != storage:
        return None
    return index


def _storage(tensor: Any) -> int:
    """The address of a tensor's storage (0 when it has none to read): a key, never read."""
    try:
        return int(tensor.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError, TypeError):
        return 0


def _plain_repr(torch: Any, value: object) -> str:
    """A non-tensor input as a stable string (no object addresses)."""
    if value is None or isinstance(value, (bool, int, float, complex, str)):
        return repr(value)
    if isinstance(value, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
        return str(value)
    return type(value).__name__


def _same_generator(torch: Any, a: Any, b: Any) -> bool:
    try:
        return bool(a.device == b.device and torch.equal(a.get_state(), b.get_state()))
    except RuntimeError:
        return False


def _name_in(torch: Any, frame: FrameType | None, generator: Any) -> str:
    """The name ``generator`` has in the user's frame: a local, ``self.<attr>``, or a global."""
    if frame is None:
        return ""
    local = frame.f_locals
    namespaces: list[tuple[str, dict[str, Any]]] = [("", local)]
    owner = local.get("self")
    if owner is not None and isinstance(getattr(owner, "__dict__", None), dict):
        namespaces.append(("self.", vars(owner)))
    namespaces.append(("", frame.f_globals))
    for prefix, namespace in namespaces:
        for name, value in list(namespace.items()):
            if isinstance(value, torch.Generator) and _same_generator(torch, generator, value):
                return prefix + name
    return ""


def covered_generators(torch: Any, scope: deterministic) -> list[Any]:
    """The torch.Generators a scope seeds and restores: default, passed and registered ones."""
    covered: list[Any] = [torch.default_generator]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        covered.extend(torch.cuda.default_generators)
    covered.extend(
        obj for obj in (*scope.generators, *registered()) if isinstance(obj, torch.Generator)
    )
    return covered


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
                recorder = self.recorder
                if recorder.inputs_at is not None and recorder.inputs_at == len(recorder.run.ops):
                    recorder.note_inputs(func, args, kwargs)
                out = func(*args, **kwargs)
                recorder.note(func, args, kwargs, out)
                return out

        _MODE = OpRecordingMode
    return _MODE


_MODE: type | None = None


def flags_in_effect() -> dict[str, str]:
    """Every torch determinism and precision flag now, as ``describe_sources`` reports it."""

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
    progress: Callable[[int], None] | None = None,
) -> RunRecord:
    """Run ``fn(*args)`` once inside ``scope``, recording every op.

    With ``reference``, the first op whose bytes differ from it is noted and
    its outputs kept; with ``capture_at``, the outputs of that op are kept,
    and ``sample`` holds what the causes need (its inputs before it ran).
    ``progress`` is called with the number of ops recorded, now and then.
    """
    import torch
    from torch.nn.modules import module as nn_module

    recorder = _Recorder(reference, capture_at, samples, progress)
    with scope:
        recorder.run.flags = flags_in_effect()
        recorder.covered = covered_generators(torch, scope)
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
    if capture_at is not None and capture_at < len(recorder.run.ops) and recorder.inputs:
        recorder.run.sample = _sample(recorder, recorder.run.ops[capture_at])
    return recorder.run


def _sample(recorder: _Recorder, op: OpRecord) -> OpSample:
    """The op at ``capture_at`` as this run saw it, once ``fn`` has returned."""
    refs = [ref for _digest, _origin, ref in recorder.inputs]
    alive = [ref is not None and ref() is not None for ref in refs]
    if any(alive):
        gc.collect()  # a tensor kept only by a reference cycle inside fn did not outlive it
        alive = [ref is not None and ref() is not None for ref in refs]
    return OpSample(
        inputs=tuple(digest for digest, _origin, _ref in recorder.inputs),
        origins=tuple(origin for _digest, origin, _ref in recorder.inputs),
        outlives=tuple(alive),
        outputs=tuple(out.digest for out in op.outputs),
    )


