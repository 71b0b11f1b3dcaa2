"""``deterministic``: the context-manager faces of the scope primitive."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from ..core.scope import Activation, close_scope, open_activations, open_scope, thread_name
from ..core.scope import entered as _entered
from ..core.seed import PASSED_GENERATORS_KEY, check_seed, current_rank, rank_seed
from ..core.source import Algorithms, Plan, Source
from ..sources import default_set
from ..sources.generators import GeneratorsSource, check_generators
from .decorator import ScopeDecorator

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")
_P = ParamSpec("_P")
_R = TypeVar("_R")

def _check_flag(name: str, value: object) -> bool | None:
    if value is None or value is True or value is False:
        return value
    raise TypeError(f"{name} must be True, False or None, got {type(value).__name__} {value!r}")


def check_algorithms(value: object) -> Algorithms:
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str) and value == "warn":
        return "warn"
    raise ValueError(
        f"algorithms must be True, False, 'warn' or None, got {type(value).__name__} {value!r}"
    )


def make_plan(
    seed: object,
    algorithms: object,
    benchmark: object,
    tf32: object,
    fill_uninitialized_memory: object,
) -> Plan:
    """Validate every option at once, before anything is changed."""
    if callable(seed):
        raise TypeError(
            "a callable seed is computed per call and works with @reproducible; "
            "deterministic() takes an int in [0, 2**64) or None"
        )
    return Plan(
        seed=None if seed is None else check_seed(seed),
        algorithms=check_algorithms(algorithms),
        benchmark=_check_flag("benchmark", benchmark),
        tf32=_check_flag("tf32", tf32),
        fill_uninitialized_memory=_check_flag(
            "fill_uninitialized_memory", fill_uninitialized_memory
        ),
    )


class deterministic:
    """Seed and configure for determinism inside a block; restore everything on exit.

    ``with deterministic(seed=0): ...`` captures every RNG (``random``, NumPy's
    global state, torch's CPU and accelerator generators, ``generators`` and
    registered generators), every torch determinism and precision flag and
    the environment variables it sets; seeds and configures them; and puts
    every one back exactly on exit, also when the block raises.

    Every option also accepts ``None``: leave it as it is (it is still
    restored). ``seed=None`` isolates without reseeding. ``algorithms`` is
    ``True``, ``False`` or ``"warn"`` (``warn_only``). One object can be
    entered any number of times, nested and from several tasks.

    With torch.distributed, every rank gets the same streams by default (as
    identical model initialisation needs); ``per_rank=True`` gives each rank
    an independent stream derived from ``(seed, rank)``.

    As a decorator, ``@deterministic(...)`` is ``@reproducible(...)`` with the
    same options: every call runs in its own scope (not one scope around the
    definition), a generator or coroutine while its own code runs, each test
    of a ``unittest.TestCase`` class in its own. Supported rather than
    rejected because both names read naturally above a function and mean the
    same thing there; ``@reproducible`` also takes a per-call seed function.
    """

    __slots__ = ("__weakref__", "_defaults", "_generators", "_per_rank", "_plan", "_sources")

    def __init__(
        self,
        seed: int | None = 0,
        *,
        algorithms: Algorithms = True,
        benchmark: bool | None = False,
        tf32: bool | None = False,
        fill_uninitialized_memory: bool | None = None,
        generators: Iterable[object] = (),
        per_rank: bool = False,
    ) -> None:
        self._plan = make_plan(seed, algorithms, benchmark, tf32, fill_uninitialized_memory)
        self._generators = check_generators(generators)
        if per_rank is not True and per_rank is not False:
            raise TypeError(f"per_rank must be True or False, got {per_rank!r}")
        self._per_rank = per_rank
        self._sources: tuple[Source, ...] | None = None
        self._defaults: tuple[Source, ...] | None = None
        """The default set ``default_set`` was built from: a registration replaces it."""

    @property
    def plan(self) -> Plan:
        """The validated options this scope applies."""
        return self._plan

    @property
    def seed(self) -> int | None:
        """The seed this scope applies (``None``: isolate without reseeding)."""
        return self._plan.seed

    @property
    def generators(self) -> tuple[object, ...]:
        """The ``generators`` passed to this scope, besides the registered ones."""
        return tuple(tracked.obj for tracked in self._generators)

    def sources(self) -> tuple[Source, ...]:
        """Every source this scope captures, in capture order."""
        defaults = default_set.default_sources()
        if self._sources is None or self._defaults is not defaults:
            extra: tuple[Source, ...] = ()
            if self._generators:
                extra = (GeneratorsSource(self._generators, PASSED_GENERATORS_KEY),)
            self._sources = defaults + extra
            self._defaults = defaults
        return self._sources

    @property
    def per_rank(self) -> bool:
        """Whether each torch.distributed rank seeds from ``(seed, rank)``."""
        return self._per_rank

    def effective_plan(self) -> Plan:
        """The plan as applied in this process: per-rank scopes seed from (seed, rank)."""
        plan = self._plan
        if self._per_rank and plan.seed is not None:
            return plan.with_seed(rank_seed(plan.seed, current_rank()))
        return plan

    def start(self) -> Activation:
        """Open a scope; pair with ``stop``. The faces below are built on these."""
        plan = self.effective_plan() if self._per_rank else self._plan
        sources = self._sources
        if sources is None or self._defaults is not default_set._default:  # a registration
            sources = self.sources()
        activation = open_scope(self, plan, sources)
        _entered.set((*_entered.get(), activation))
        return activation

    def stop(self, error: BaseException | None = None) -> None:
        """Close this object's innermost scope opened in the current context."""
        entered = _entered.get()
        if entered and entered[-1].owner is self:  # the common, properly nested case
            _entered.set(entered[:-1])
            close_scope(entered[-1], error=error)
            return
        for index in range(len(entered) - 1, -1, -1):
            activation = entered[index]
            if activation.owner is self:
                _entered.set(entered[:index] + entered[index + 1 :])
                close_scope(activation, error=error)
                return
        raise RuntimeError(self._not_open_here())

    def _not_open_here(self) -> str:
        """Why this context has no scope of this object to close: opened elsewhere, or never."""
        for activation in reversed(open_activations()):
            if activation.owner is not self:
                continue
            if activation.thread != threading.get_ident():
                where = thread_name(activation.thread)
                return (
                    f"this deterministic scope was opened in thread {where!r} and must be "
                    f"closed there, not in {threading.current_thread().name!r}: a scope holds "
                    "the process-wide RNG state and scope lock for the thread that opened it"
                )
            return (
                "this deterministic scope was opened in another asyncio task (or "
                "contextvars context) of this thread and must be closed in the one that "
                "opened it; to give each task its own scope, enter it in each task, or "
                "decorate the coroutine function with @reproducible"
            )
        return (
            "this deterministic scope is not open here: __exit__ (or stop()) without a "
            "matching __enter__ (or start()). It was never entered, or it was closed already"
        )

    def __enter__(self) -> deterministic:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop(exc)

    @overload
    def __call__(self, func: _F) -> _F: ...

    @overload
    def __call__(self, func: classmethod[_T, _P, _R]) -> classmethod[_T, _P, _R]: ...

    @overload
    def __call__(self, func: staticmethod[_P, _R]) -> staticmethod[_P, _R]: ...

    def __call__(self, func: Any) -> Any:
        """Decorate ``func``: each call in its own scope with these options (``@reproducible``)."""
        target = func.__func__ if isinstance(func, (classmethod, staticmethod)) else func
        if not callable(target):
            raise TypeError(
                "@deterministic(...) decorates a function, method, generator or coroutine "
                "function, or a unittest.TestCase class (each call in its own scope, as "
                f"@reproducible does); got {type(func).__name__} {func!r}. To scope a block, "
                "use `with deterministic(...):`"
            )
        plan = self._plan
        scope = deterministic(
            plan.seed,
            algorithms=plan.algorithms,
            benchmark=plan.benchmark,
            tf32=plan.tf32,
            fill_uninitialized_memory=plan.fill_uninitialized_memory,
            generators=self.generators,
            per_rank=self._per_rank,
        )
        return ScopeDecorator(scope, None)(func)

    async def __aenter__(self) -> deterministic:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop(exc)

    def __repr__(self) -> str:
        plan = self._plan
        return (
            f"deterministic(seed={plan.seed!r}, algorithms={plan.algorithms!r}, "
            f"benchmark={plan.benchmark!r}, tf32={plan.tf32!r}, "
            f"fill_uninitialized_memory={plan.fill_uninitialized_memory!r}, "
            f"generators=<{len(self._generators)}>, per_rank={self._per_rank!r})"
        )
