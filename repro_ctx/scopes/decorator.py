"""Applying a scope to a callable: what ``reproducible(...)`` and ``@deterministic(...)`` return.

A plain function's call is one scope. A generator, coroutine or async
generator gets a scope that follows its body through every suspension
(``function_scopes``). A ``unittest.TestCase`` subclass gets one scope per
test. Every kind goes through ``open_scope``/``close_scope``; the scope
object handed in (a ``deterministic``) has validated the options once and
provides the sources and the plan.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeAlias, TypeVar, cast, overload

import wrapt

from ..core.error_notes import add_note
from ..core.scope import close_scope, open_scope
from ..core.seed import SEED_LIMIT, check_seed, current_rank, rank_seed
from ..core.source import Plan, Source
from .function_scopes import (
    FunctionScope,
    ScopedCoroutine,
    ScopedGenerator,
    scoped_async_generator,
)

if TYPE_CHECKING:
    import unittest

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")
_P = ParamSpec("_P")
_R = TypeVar("_R")
_TestCaseT = TypeVar("_TestCaseT", bound="type[unittest.TestCase]")

SeedCallable: TypeAlias = Callable[..., "int | None"]
PlanFor: TypeAlias = Callable[[object, tuple[Any, ...], dict[str, Any]], Plan]

SUPPORTED = (
    "@reproducible decorates a function, method, classmethod, staticmethod, generator "
    "function, coroutine function, async generator function, or a unittest.TestCase "
    "subclass (each test runs in its own scope)"
)


class OptionScope(Protocol):
    """What a decorator needs of its scope object: a ``deterministic``."""

    @property
    def plan(self) -> Plan: ...

    @property
    def per_rank(self) -> bool: ...

    def sources(self) -> tuple[Source, ...]: ...

    def effective_plan(self) -> Plan: ...


class ScopeDecorator:
    """What ``reproducible(...)`` returns: one validated scope, applied to any callables."""

    __slots__ = ("_plan_for", "_scope", "_seed_of")

    def __init__(self, scope: OptionScope, seed_of: SeedCallable | None) -> None:
        """``scope`` holds the validated options; ``seed_of``, if given, computes each seed."""
        self._scope = scope
        self._seed_of = seed_of
        self._plan_for = _fixed_plan(scope) if seed_of is None else _called_plan(scope, seed_of)

    @overload
    def __call__(self, func: _TestCaseT) -> _TestCaseT: ...

    @overload
    def __call__(self, func: _F) -> _F: ...

    @overload
    def __call__(self, func: classmethod[_T, _P, _R]) -> classmethod[_T, _P, _R]: ...

    def __call__(self, func: Any) -> Any:
        if isinstance(func, type):
            return _decorate_testcase(func, self._scope, self._plan_for)
        target = func.__func__ if isinstance(func, (classmethod, staticmethod)) else func
        if not callable(target):
            raise TypeError(f"{SUPPORTED}; got {type(func).__name__} {func!r}")
        if inspect.isasyncgenfunction(target):
            wrapper = _async_generator_call(self._scope, self._plan_for)
        elif inspect.iscoroutinefunction(target):
            wrapper = _suspending_call(self._scope, self._plan_for, ScopedCoroutine)
        elif inspect.isgeneratorfunction(target):
            wrapper = _suspending_call(self._scope, self._plan_for, ScopedGenerator)
        else:
            wrapper = _plain_call(self._scope, self._plan_for)
        return wrapt.FunctionWrapper(func, wrapper)

    def __repr__(self) -> str:
        per_call = "" if self._seed_of is None else f", seed computed per call by {self._seed_of!r}"
        return f"<reproducible decorator: {self._scope!r}{per_call}>"


def _fixed_plan(scope: OptionScope) -> PlanFor:
    def plan_for(instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan:
        return scope.effective_plan()

    return plan_for


def _called_plan(scope: OptionScope, seed_of: SeedCallable) -> PlanFor:
    """Each call's plan: the validated one, with the seed ``seed_of`` computes from the call.

    Plans are cached per (seed, rank): a per-sample seed repeats across epochs,
    and ``rank_seed`` costs a ``SeedSequence``.
    """
    base = scope.plan
    per_rank = scope.per_rank
    name = getattr(seed_of, "__qualname__", repr(seed_of))

    @functools.lru_cache(maxsize=1024)
    def plan_with(seed: int | None, rank: int | None) -> Plan:
        if seed is not None and rank is not None:
            seed = rank_seed(seed, rank)
        return base.with_seed(seed)

    def plan_for(instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan:
        try:
            value = (seed_of(*args, **kwargs) if instance is None
                     else seed_of(instance, *args, **kwargs))
        except TypeError as exc:
            call_args = args if instance is None else (instance, *args)
            if not _accepts(seed_of, call_args, kwargs):
                add_note(exc, _seed_call_note(name, seed_of, call_args, kwargs))
            raise
        if value is not None and (type(value) is not int or not 0 <= value < SEED_LIMIT):
            try:
                value = check_seed(value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{exc} (returned by the seed callable {name})") from None
        return plan_with(value, current_rank() if per_rank else None)

    return plan_for


def _accepts(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``function``'s signature takes these arguments (unknown signature: no)."""
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return False
    return True


def _seed_call_note(
    name: str, seed_of: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    """The note on a seed callable's ``TypeError`` when it does not fit the call it received."""
    try:
        signature = f"{name}{inspect.signature(seed_of)}"
    except (TypeError, ValueError):
        signature = name
    received = ", ".join([*(type(arg).__name__ for arg in args), *(f"{key}=..." for key in kwargs)])
    return (
        f"repro_ctx: the seed callable {signature} receives the decorated call's exact "
        f"arguments (self or cls first for a method), here ({received}). Give it the "
        "decorated function's parameters, with **kwargs (and *args) for those it does not "
        "use: seed=lambda *args, **kwargs: ..."
    )


# The wrappers below have wrapt's (wrapped, instance, args, kwargs) signature.
# ``instance`` is ``self`` for a method and the class for a classmethod; a
# callable seed receives it first, as the decorated function does.


def _plain_call(scope: OptionScope, plan_for: PlanFor) -> Callable[..., Any]:
    sources = scope.sources

    def call(
        wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        activation = open_scope(scope, plan_for(instance, args, kwargs), sources())
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            close_scope(activation, error=exc)
            raise
        close_scope(activation)
        return result

    return call


def _suspending_call(
    scope: OptionScope,
    plan_for: PlanFor,
    driver: type[ScopedGenerator[Any, Any, Any]] | type[ScopedCoroutine[Any]],
) -> Callable[..., Any]:
    """A call that returns a generator or coroutine whose every step runs in its own scope."""

    def call(
        wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        function_scope = FunctionScope(scope, plan_for(instance, args, kwargs), scope.sources())
        return driver.call(function_scope, wrapped, args, kwargs)

    return call


def _async_generator_call(scope: OptionScope, plan_for: PlanFor) -> Callable[..., Any]:
    def call(
        wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        function_scope = FunctionScope(scope, plan_for(instance, args, kwargs), scope.sources())
        inner = wrapped(*args, **kwargs)
        outer: Any = scoped_async_generator(inner, function_scope)
        outer.__name__, outer.__qualname__ = inner.__name__, inner.__qualname__
        return outer

    return call


def _decorate_testcase(cls: type, scope: OptionScope, plan_for: PlanFor) -> type:
    """Give each test of a ``TestCase`` subclass its own scope, and setUpClass/tearDownClass theirs.

    The test's scope spans ``TestCase.run``: setUp, the test method, tearDown
    and the cleanups all run inside it, and it is closed in every case (a
    failing setUp included). Only tests whose method name has the loader's
    ``testMethodPrefix`` are scoped. A callable seed receives the test case
    (the class, for setUpClass and tearDownClass).
    """
    unittest_module = sys.modules.get("unittest")  # a TestCase subclass implies it is imported
    if unittest_module is None or not issubclass(cls, unittest_module.TestCase):
        raise TypeError(
            f"{SUPPORTED}; got class {cls.__qualname__}. "
            "To scope the methods of any other class, decorate the methods."
        )
    prefix: str = unittest_module.TestLoader.testMethodPrefix
    base_run = cast("type[unittest.TestCase]", cls).run

    def run(self: unittest.TestCase, result: Any = None) -> Any:
        if not self._testMethodName.startswith(prefix):
            return base_run(self, result)
        return _in_scope(scope, plan_for(None, (self,), {}), base_run, self, result)

    run.__wrapped__ = base_run  # type: ignore[attr-defined]
    setattr(cls, "run", run)  # noqa: B010 - cls is any TestCase subclass
    for name in ("setUpClass", "tearDownClass"):
        setattr(cls, name, classmethod(_scoped_class_hook(cls, name, scope, plan_for)))
    return cls


def _scoped_class_hook(
    cls: type, name: str, scope: OptionScope, plan_for: PlanFor
) -> Callable[[type], None]:
    hook = inspect.getattr_static(cls, name)  # the classmethod itself, own or inherited

    def scoped(klass: type) -> None:
        _in_scope(scope, plan_for(None, (klass,), {}), hook.__get__(None, klass))

    scoped.__name__ = scoped.__qualname__ = name
    return scoped


def _in_scope(scope: OptionScope, plan: Plan, function: Callable[..., _R], *args: Any) -> _R:
    activation = open_scope(scope, plan, scope.sources())
    try:
        result = function(*args)
    except BaseException as exc:
        close_scope(activation, error=exc)
        raise
    close_scope(activation)
    return result
