"""torch's global flags that choose which algorithm runs or at what precision.

Each flag is one row: a name, a getter, a setter, and what a plan wants of it.
Rows are built only for what the running torch exposes, so older and newer
torch versions need no special cases elsewhere. Restoring writes only the rows
whose value differs, so a scope that changed nothing writes nothing.

Longer than 400 lines because the rows, their getters and setters, and each
private accessor's public fallback are one table that is read together.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import compress
from typing import Any, Final

from ..core.plain import Malformed, Plain, Resolved, check_plain, expect
from ..core.source import Plan, WritesDifferences
from .inductor import CONFIG, ENTRIES, ConfigEntry, release, watch_imports


def _call(get: Callable[[], object]) -> object:
    return get()


# operator.call (Python 3.11+) runs the getters without a Python-level frame each
_call = getattr(operator, "call", _call)

LEAVE: Final = object()
"""What ``Flag.wanted`` returns when the plan leaves a flag alone."""


def _leave(plan: Plan) -> object:
    return LEAVE


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    get: Callable[[], object]
    set: Callable[[Any], None]
    wanted: Callable[[Plan], object] = _leave
    initial: Callable[[], object] | None = None
    """For a flag that reads ``None`` until its module is imported: what it reads then.

    ``set(None)`` puts that value back, so a flag first readable inside a
    scope reads after it what it would have read had the scope never run.
    """


class FlagsSource(WritesDifferences):
    """A table of independent flags, captured as one tuple."""

    __slots__ = ("_getters", "_last", "_last_targets", "_positions", "_setters", "_targets",
                 "flags", "name")

    def __init__(self, name: str, flags: tuple[Flag, ...]) -> None:
        self.name = name
        self.flags = flags
        self._getters = tuple(flag.get for flag in flags)
        self._setters = tuple(flag.set for flag in flags)
        self._positions = range(len(flags))
        self._targets: dict[tuple[object, ...], tuple[tuple[int, object], ...]] = {}
        self._last_targets: tuple[Plan | None, tuple[tuple[int, object], ...]] = (None, ())
        # (state before, state written, the positions where they differ) of
        # the last swap; the swap or restore back reuses the positions.
        self._last: tuple[object, object, tuple[int, ...]] = (None, None, ())

    def capture(self) -> tuple[object, ...]:
        return tuple(map(_call, self._getters))

    def _targets_for(self, plan: Plan) -> tuple[tuple[int, object], ...]:
        """(flag index, wanted value) for every flag ``plan`` sets.

        Computed once per ``plan.settings``: no flag depends on the seed, so a
        new seed on every call (a per-sample seed) reuses it.
        """
        last_plan, last_targets = self._last_targets
        if plan is last_plan:  # the same scope again: not even the settings tuple
            return last_targets
        key = plan.settings
        targets = self._targets.get(key)
        if targets is None:
            wanted = ((index, flag.wanted(plan)) for index, flag in enumerate(self.flags))
            targets = tuple((index, value) for index, value in wanted if value is not LEAVE)
            self._targets[key] = targets  # at most 4 * 3 * 3 * 3 distinct settings
        self._last_targets = (plan, targets)
        return targets

    def seed(self, snapshot: object, plan: Plan) -> None:
        assert isinstance(snapshot, tuple)
        setters = self._setters
        for index, value in self._targets_for(plan):
            if snapshot[index] != value:
                setters[index](value)

    def _write(
        self, current: tuple[object, ...], snapshot: tuple[object, ...], remember: bool
    ) -> None:
        """Write the flags whose value in ``snapshot`` differs from ``current``, and no other."""
        last_from, last_to, positions = self._last
        if snapshot is not last_from or current != last_to:
            positions = tuple(compress(self._positions, map(operator.ne, current, snapshot)))
        # else: undoing the last write, nothing changed since: the same flags
        # differ (a generator's suspension after its resumption, and back)
        setters = self._setters
        for index in positions:
            setters[index](snapshot[index])
        if remember:
            self._last = (current, snapshot, positions)

    def describe(self) -> dict[str, object]:
        return {flag.name: plain(flag.get()) for flag in self.flags}

    # -- plain data: flag name -> value (enums by name, tuples as lists) --------------

    kind = "flags"

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, tuple)
        return {flag.name: plain(value) for flag, value in zip(self.flags, snapshot, strict=True)}

    @staticmethod
    def check(data: object) -> Plain:
        out = check_plain(data, "flags")
        expect(out, dict, "flags", "a dict of flag name -> value")
        for name, value in out.items():
            if isinstance(value, (list, bool, int, float, str, type(None))):
                continue
            raise Malformed(f"flags[{name!r}]: expected a scalar or a list, got {value!r:.60}")
        return out

    def resolve(self, data: Plain) -> Resolved:
        """Loaded flags as a snapshot of this torch's flags; machine settings stay as they are."""
        current = self.capture()
        values: list[object] = []
        mismatches: list[str] = []
        for flag, now in zip(self.flags, current, strict=True):
            if flag.name not in data:
                mismatches.append(f"{flag.name} was not captured")
                values.append(now)
                continue
            if flag.name in MACHINE_FLAGS or now is None or data[flag.name] is None:
                # a machine setting, or unreadable on one side (a module not imported
                # yet): left as it is, which blocks no restore of the streams
                values.append(now)
                continue
            try:
                values.append(_flag_value(data[flag.name], now))
            except _Skip as skip:
                mismatches.append(f"{flag.name}: {skip}")
                values.append(now)
        names = {flag.name for flag in self.flags}
        mismatches += [f"{name} does not exist in this torch" for name in data
                       if name not in names]
        return Resolved(tuple(values), tuple(mismatches))

    @staticmethod
    def items(data: Plain) -> dict[str, Plain]:
        return dict(data)


MACHINE_FLAGS: Final = frozenset({"torch.get_num_threads"})
"""Flags that describe the machine: a loaded state leaves them as they are."""


class _Skip(Exception):
    """One flag value that cannot be restored here."""


def _flag_value(loaded: Plain, current: object) -> object:
    """``loaded`` (plain) as a value of the kind ``current`` is, or ``_Skip``."""
    members = getattr(type(current), "__members__", None)
    if isinstance(members, Mapping):  # a torch enum: recorded by name
        if not isinstance(loaded, str) or loaded not in members:
            raise _Skip(f"{loaded!r} is not one of {sorted(members)}")
        return members[loaded]
    if isinstance(current, tuple):
        if not isinstance(loaded, list) or len(loaded) != len(current):
            raise _Skip(f"expected {len(current)} values, got {loaded!r}")
        return tuple(_flag_value(item, now) for item, now in zip(loaded, current, strict=True))
    if type(loaded) is not type(current):
        raise _Skip(
            f"captured {type(loaded).__name__} {loaded!r}, but it is "
            f"{type(current).__name__} here"
        )
    return loaded


def plain(value: object) -> object:
    """A flag value as JSON-friendly data (torch enums become their names)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    return str(getattr(value, "name", value))


def _deterministic_algorithms_flag(torch: Any) -> Flag:
    """Through ``torch._C``'s accessors; without them, torch's public functions."""
    mode = getattr(torch._C, "_get_deterministic_algorithms",
                   torch.are_deterministic_algorithms_enabled)
    warn_only = getattr(torch._C, "_get_deterministic_algorithms_warn_only",
                        torch.is_deterministic_algorithms_warn_only_enabled)

    def get() -> tuple[bool, bool]:
        return (mode(), warn_only())

    set_mode: Any = getattr(torch._C, "_set_deterministic_algorithms", None)

    def set_(value: tuple[bool, bool]) -> None:
        # torch.use_deterministic_algorithms also writes inductor's config;
        # that is its own flag below, so write the algorithms flag alone.
        set_mode(value[0], warn_only=value[1])

    def set_public(value: tuple[bool, bool]) -> None:
        """The public call, then inductor's ``deterministic`` put back as it was."""
        config = sys.modules.get(CONFIG)
        entry = ConfigEntry("deterministic")
        before = entry.get() if config is not None else None
        torch.use_deterministic_algorithms(value[0], warn_only=value[1])
        if entry.get() != before:
            entry.set(before)  # None: imported by the call, back to its import-time value

    if set_mode is None:
        set_ = set_public

    def wanted(plan: Plan) -> object:
        if plan.algorithms is None:
            return LEAVE
        return (plan.algorithms is not False, plan.algorithms == "warn")

    return Flag("torch.use_deterministic_algorithms (mode, warn_only)", get, set_, wanted)


def _inductor_flags(torch: Any) -> list[Flag | None]:
    """The inductor config entries this torch has (``inductor.py``), each following ``algorithms``.

    ``use_deterministic_algorithms`` sets ``deterministic``; ``fallback_random``
    makes ``torch.compile``d code draw what eager code draws.
    """
    watch_imports()
    flags: list[Flag | None] = []
    for name, first in ENTRIES.items():
        if release(torch) < first:
            flags.append(None)
            continue
        entry = ConfigEntry(name, _follows_algorithms, LEAVE)
        flags.append(Flag(f"{CONFIG}.{name}", entry.get, entry.set, _follows_algorithms,
                          entry.initial))
    return flags


def _follows_algorithms(plan: Plan) -> object:
    return LEAVE if plan.algorithms is None else plan.algorithms is not False


def _not_benchmark(plan: Plan) -> object:
    return LEAVE if plan.benchmark is None else plan.benchmark


def _fill_memory(plan: Plan) -> object:
    return LEAVE if plan.fill_uninitialized_memory is None else plan.fill_uninitialized_memory


def _c_flag(
    torch: Any, name: str, getter: str, setter: str, wanted: Callable[[Plan], object] = _leave,
    public: Flag | None = None,
) -> Flag | None:
    """A flag read and written through ``torch._C``'s accessors, faster than the public
    attribute (benchmarks/bench_private.py); through ``public`` where they are missing."""
    get = getattr(torch._C, getter, None)
    set_ = getattr(torch._C, setter, None)
    if get is None or set_ is None:
        return None if public is None else Flag(name, public.get, public.set, wanted)
    return Flag(name, get, set_, wanted)


def _attribute_flag(obj: Any, attribute: str, name: str) -> Flag | None:
    try:
        getattr(obj, attribute)
    except (AttributeError, AssertionError):  # torch 2.1's cuBLAS module asserts
        return None

    def get() -> object:
        return getattr(obj, attribute)

    def set_(value: object) -> None:
        setattr(obj, attribute, value)

    return Flag(name, get, set_)


def _calls_flag(obj: Any, getter: str, setter: str, name: str) -> Flag | None:
    """A public flag read by one call and written by another (``enable_flash_sdp(on)``)."""
    get = getattr(obj, getter, None)
    set_ = getattr(obj, setter, None)
    if get is None or set_ is None:
        return None
    return Flag(name, get, set_)


def _reduction_flag(torch: Any, kind: str) -> Flag | None:
    """cuBLAS reduced-precision reduction: a (allowed, split_k allowed) pair."""
    get = getattr(torch._C, f"_get_cublas_allow_{kind}_reduced_precision_reduction", None)
    set_ = getattr(torch._C, f"_set_cublas_allow_{kind}_reduced_precision_reduction", None)
    if get is None or set_ is None:
        return None
    probe = get()
    if isinstance(probe, tuple):

        def set_pair(value: tuple[bool, bool]) -> None:
            set_(*value)

        return Flag(f"torch.backends.cuda.matmul.allow_{kind}_reduced_precision_reduction",
                    get, set_pair)
    return Flag(f"torch.backends.cuda.matmul.allow_{kind}_reduced_precision_reduction", get, set_)


def _opt_einsum_flags(backends: Any) -> list[Flag | None]:
    """opt_einsum's flags, read through its module's own accessors.

    Attribute access on ``torch.backends.opt_einsum`` goes through a slow
    module ``__getattr__`` (4 us a read); the accessors it wraps do not.
    """
    proxy = getattr(backends, "opt_einsum", None)
    module = getattr(proxy, "m", proxy)
    flags: list[Flag | None] = []
    for attribute in ("enabled", "strategy"):
        get = getattr(module, f"_get_{attribute}", None)
        set_ = getattr(module, f"_set_{attribute}", None)
        name = f"torch.backends.opt_einsum.{attribute}"
        if get is not None and set_ is not None:
            flags.append(Flag(name, get, set_))
        elif proxy is not None:
            flags.append(_attribute_flag(proxy, attribute, name))
    return flags


def build_flags_source(torch: Any) -> FlagsSource:
    """Every non-TF32 flag this torch exposes, as one source."""
    backends = torch.backends
    cudnn, cuda = backends.cudnn, backends.cuda
    candidates: list[Flag | None] = [
        _deterministic_algorithms_flag(torch),
        *_inductor_flags(torch),
        _c_flag(torch, "torch.utils.deterministic.fill_uninitialized_memory",
                "_get_deterministic_fill_uninitialized_memory",
                "_set_deterministic_fill_uninitialized_memory", _fill_memory,
                _attribute_flag(getattr(torch.utils, "deterministic", None),
                                "fill_uninitialized_memory", "")),
        _c_flag(torch, "torch.backends.cudnn.enabled", "_get_cudnn_enabled",
                "_set_cudnn_enabled", public=_attribute_flag(cudnn, "enabled", "")),
        _c_flag(torch, "torch.backends.cudnn.benchmark", "_get_cudnn_benchmark",
                "_set_cudnn_benchmark", _not_benchmark, _attribute_flag(cudnn, "benchmark", "")),
        _c_flag(torch, "torch.backends.cudnn.deterministic", "_get_cudnn_deterministic",
                "_set_cudnn_deterministic", _follows_algorithms,
                _attribute_flag(cudnn, "deterministic", "")),
        _c_flag(torch, "torch.backends.cudnn.benchmark_limit",
                "_cuda_get_cudnn_benchmark_limit", "_cuda_set_cudnn_benchmark_limit",
                public=_attribute_flag(cudnn, "benchmark_limit", "")),
        _c_flag(torch, "torch.backends.cudnn.depthwise_kernel", "_get_cudnn_depthwise_kernel",
                "_set_cudnn_depthwise_kernel"),
        _reduction_flag(torch, "fp16"),
        _reduction_flag(torch, "bf16"),
        _c_flag(torch, "torch.backends.cuda.matmul.allow_fp16_accumulation",
                "_get_cublas_allow_fp16_accumulation", "_set_cublas_allow_fp16_accumulation",
                public=_attribute_flag(cuda.matmul, "allow_fp16_accumulation", "")),
        _c_flag(torch, "torch.backends.cuda.flash_sdp_enabled", "_get_flash_sdp_enabled",
                "_set_sdp_use_flash",
                public=_calls_flag(cuda, "flash_sdp_enabled", "enable_flash_sdp", "")),
        _c_flag(torch, "torch.backends.cuda.mem_efficient_sdp_enabled",
                "_get_mem_efficient_sdp_enabled", "_set_sdp_use_mem_efficient",
                public=_calls_flag(cuda, "mem_efficient_sdp_enabled", "enable_mem_efficient_sdp",
                                   "")),
        _c_flag(torch, "torch.backends.cuda.math_sdp_enabled", "_get_math_sdp_enabled",
                "_set_sdp_use_math",
                public=_calls_flag(cuda, "math_sdp_enabled", "enable_math_sdp", "")),
        _c_flag(torch, "torch.backends.cuda.cudnn_sdp_enabled", "_get_cudnn_sdp_enabled",
                "_set_sdp_use_cudnn",
                public=_calls_flag(cuda, "cudnn_sdp_enabled", "enable_cudnn_sdp", "")),
        _c_flag(torch, "torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed",
                "_get_math_sdp_allow_fp16_bf16_reduction",
                "_set_math_sdp_allow_fp16_bf16_reduction",
                public=_calls_flag(cuda, "fp16_bf16_reduction_math_sdp_allowed",
                                   "allow_fp16_bf16_reduction_math_sdp", "")),
        _c_flag(torch, "torch.backends.mkldnn.enabled", "_get_mkldnn_enabled",
                "_set_mkldnn_enabled", public=_attribute_flag(backends.mkldnn, "enabled", "")),
        _c_flag(torch, "torch.backends.mkldnn.deterministic", "_get_mkldnn_deterministic",
                "_set_mkldnn_deterministic", _follows_algorithms,
                _attribute_flag(backends.mkldnn, "deterministic", "")),
        _c_flag(torch, "torch.backends.cuda.preferred_linalg_library",
                "_get_linalg_preferred_backend", "_set_linalg_preferred_backend",
                public=_calls_flag(cuda, "preferred_linalg_library", "preferred_linalg_library",
                                   "")),
        _c_flag(torch, "torch.backends.cuda.preferred_blas_library",
                "_get_blas_preferred_backend", "_set_blas_preferred_backend",
                public=_calls_flag(cuda, "preferred_blas_library", "preferred_blas_library", "")),
        Flag("torch.get_num_threads", torch.get_num_threads, torch.set_num_threads),
        *_opt_einsum_flags(backends),
    ]
    mha = getattr(backends, "mha", None)
    if mha is not None and hasattr(mha, "get_fastpath_enabled"):
        candidates.append(Flag("torch.backends.mha.fastpath_enabled",
                               mha.get_fastpath_enabled, mha.set_fastpath_enabled))
    return FlagsSource("torch flags", tuple(flag for flag in candidates if flag is not None))
