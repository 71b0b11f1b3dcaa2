"""Scopes that follow a generator, coroutine or async generator through its suspensions.

Decorating only the *creation* of a generator or coroutine (what a
``contextlib`` decorator does) leaves its body running in whatever state the
caller has at each ``next()`` or event-loop step, and leaks the body's state
into the caller between steps. Here every step of the body runs inside its
own scope instead:

* at each resumption ``open_scope(..., resume=inside)`` captures the caller's
  state and puts the function's own state back (the first resumption seeds);
* at each suspension (a ``yield``, or an ``await`` that really gives control
  back to the event loop) ``close_scope(..., keep=True)`` keeps the function's
  state and gives the caller's back.

So the process-wide lock is held only while the function's own code runs,
and interleaved generators or asyncio tasks never see each other's streams.
"""

from __future__ import annotations

import contextlib
import operator
import sys
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Sequence
from typing import Any, Final, TypeVar

from ..core.scope import Activation, close_scope, open_activations, open_scope
from ..core.scope import _stack as _open_scopes  # innermost last; read on every suspension
from ..core.scope import entered as _entered
from ..core.source import Plan, Source

_R = TypeVar("_R")
_Y = TypeVar("_Y")
_S = TypeVar("_S")

_CREATED: Final = 0
_RUNNING: Final = 1
_EXHAUSTED: Final = 2

_generator_frame = operator.attrgetter("gi_frame")
_coroutine_frame = operator.attrgetter("cr_frame")
_asyncgen_frame = operator.attrgetter("ag_frame")


class FunctionScope:
    """The scope of one call of a decorated generator, coroutine or async generator.

    It lives on the call's wrapper, not on the decorator, so calls never
    share it. ``with deterministic(...)`` blocks that the function leaves open
    across a suspension are set aside with it (closed with ``keep=True``,
    their ``_entered`` entries taken out of the caller's context) and opened
    again, nested inside, when the function resumes.
    """

    __slots__ = ("_caller", "_inside", "_nested", "_own", "_owner", "_plan", "_sources")

    def __init__(self, owner: object, plan: Plan, sources: Sequence[Source]) -> None:
        self._owner = owner
        self._plan = plan
        self._sources = sources
        self._inside: list[object] | None = None  # None until the first suspension: seed
        self._nested: tuple[tuple[Activation, list[object] | None], ...] = ()
        self._own: tuple[Activation, ...] = ()
        self._caller: tuple[Activation, ...] = ()

    def resume(self) -> Activation:
        """Swap the function's state in (seed it the first time); the lock is held from here."""
        activation = open_scope(self._owner, self._plan, self._sources, self._inside)
        self._caller = _entered.get()
        if self._nested:
            try:
                self._reopen_nested()
            except BaseException as exc:
                close_scope(activation, error=exc)
                raise
        return activation

    def suspend(self, activation: Activation) -> None:
        """Keep the function's state and swap the caller's back in; the lock is released."""
        try:
            if _open_scopes[-1] is not activation:
                self._set_nested_aside(activation)
        finally:
            self._inside = close_scope(activation, keep=True)

    def finish(self, activation: Activation, error: BaseException | None) -> None:
        """The function has returned or raised: restore the caller's state for good."""
        close_scope(activation, error=error)

    def _set_nested_aside(self, activation: Activation) -> None:
        stack = open_activations()
        above = stack[stack.index(activation) + 1 :]
        kept = [(nested, close_scope(nested, keep=True)) for nested in reversed(above)]
        kept.reverse()
        self._nested = tuple(kept)
        caller = self._caller
        entered = _entered.get()
        self._own = entered[len(caller) :]
        _entered.set(caller)

    def _reopen_nested(self) -> None:
        renewed: dict[Activation, Activation] = {}
        try:
            for old, inside in self._nested:
                renewed[old] = open_scope(old.owner, old.plan, old.sources, inside)
        except BaseException as exc:
            for new in reversed(renewed.values()):
                close_scope(new, error=exc)
            raise
        self._nested = ()
        own = tuple(renewed.get(activation, activation) for activation in self._own)
        self._own = ()
        _entered.set(self._caller + own)


class _ScopedSteps:
    """Runs every step of ``inner`` (``send``/``throw``/``close``) inside a ``FunctionScope``.

    A step that returns normally is a suspension: a ``yield``, or an awaitable
    handing a future to the event loop. The scope is over for good once the
    function object ``target`` has finished (its frame is gone); until then
    each step ends with a suspension of the scope, also when the step raised
    without finishing it (a generator that ignored ``GeneratorExit``).
    """

    __slots__ = ("_inner", "_scope", "_state", "_target")
    _frame_of: Callable[[Any], object]

    def __init__(self, inner: Any, scope: FunctionScope, target: object | None = None) -> None:
        self._state = _CREATED
        self._scope = scope
        self._inner = inner
        self._target = inner if target is None else target

    @classmethod
    def call(
        cls, scope: FunctionScope, function: Callable[..., Any], args: Any, kwargs: Any
    ) -> Any:
        """``cls(function(*args, **kwargs), scope)``, with the wrapper allocated first.

        When the wrapper and its inner generator or coroutine are collected in
        one reference cycle, Python finalizes the cycle in an unspecified
        order; CPython mostly follows allocation order, so the wrapper's
        ``__del__`` comes first and closes the inner in its scope. Should the
        inner's own finalizer run first anyway (its cleanup then runs outside
        the scope), ``close()`` finds it finished and opens nothing.
        """
        self = cls.__new__(cls)
        self._state = _CREATED
        self._scope = scope
        self._inner = self._target = function(*args, **kwargs)
        return self

    def send(self, value: Any) -> Any:
        if self._state == _EXHAUSTED:
            return self._inner.send(value)  # the inner's own "finished" behaviour
        return self._step(self._inner.send, value)

    def __next__(self) -> Any:
        if self._state == _EXHAUSTED:
            return self._inner.send(None)
        return self._step(self._inner.send, None)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        args = (typ,) if val is None and tb is None else (typ, val, tb)
        if self._state == _EXHAUSTED:
            return self._inner.throw(*args)
        return self._step(self._inner.throw, *args)

    def close(self) -> None:
        if self._state != _RUNNING or self._frame_of(self._target) is None:
            # Not started (closing runs no code and, as for a native coroutine,
            # silences "never awaited"), or already finished (possibly by its own
            # finalizer, if it was collected first after all).
            self._state = _EXHAUSTED
            self._inner.close()
            return
        self._step(self._inner.close)
        self._state = _EXHAUSTED  # close() returned: the inner has finished

    def _step(self, method: Callable[..., Any], *args: Any) -> Any:
        scope = self._scope
        activation = scope.resume()
        self._state = _RUNNING
        try:
            result = method(*args)
        except BaseException as exc:
            finished = self._frame_of(self._target) is None
            if finished or self._target is not self._inner:
                self._state = _EXHAUSTED
            if finished:
                stopped = isinstance(exc, (StopIteration, StopAsyncIteration))
                scope.finish(activation, None if stopped else exc)
            else:
                scope.suspend(activation)
            raise
        if self._frame_of(self._target) is None:
            scope.finish(activation, None)
        else:
            scope.suspend(activation)
        return result

    def __getattr__(self, name: str) -> Any:
        # gi_frame, cr_code, __qualname__ ...: what asyncio, inspect and debuggers read.
        return getattr(object.__getattribute__(self, "_inner"), name)

    def __repr__(self) -> str:
        return f"<reproducible {self._inner!r}>"

    def __del__(self) -> None:
        # Garbage collection of a started, unfinished generator or coroutine:
        # its cleanup (finally blocks) runs in its own state, as close() does.
        if self._state == _RUNNING:
            self.close()


class ScopedGenerator(_ScopedSteps, Generator[_Y, _S, _R]):
    """What a decorated generator function returns."""

    __slots__ = ()
    _frame_of = _generator_frame

    def __iter__(self) -> ScopedGenerator[_Y, _S, _R]:
        return self


class ScopedCoroutine(_ScopedSteps, Coroutine[Any, Any, _R]):
    """What a decorated coroutine function returns; ``asyncio`` takes it like a coroutine."""

    __slots__ = ()
    _frame_of = _coroutine_frame

    def __await__(self) -> Generator[Any, None, _R]:
        return self


class _ScopedAsyncStep(ScopedCoroutine[Any]):
    """One ``asend``/``athrow``/``aclose`` awaitable of a decorated async generator.

    Its ``StopIteration`` is the generator yielding a value, a suspension; the
    scope ends when the generator itself (``target``) has finished.
    """

    __slots__ = ()
    _frame_of = _asyncgen_frame


class _ScopedClose:
    """What an event loop's async-generator finalizer gets for an unfinished inner generator.

    The loop calls ``aclose()`` on it (asyncio schedules that as a task): the
    inner generator is then closed inside its scope, not in the loop's state.
    """

    __slots__ = ("__weakref__", "_agen", "_scope")

    def __init__(self, agen: AsyncGenerator[Any, Any], scope: FunctionScope) -> None:
        self._agen = agen
        self._scope = scope

    def aclose(self) -> _ScopedAsyncStep:
        return _ScopedAsyncStep(self._agen.aclose(), self._scope, self._agen)

    def __getattr__(self, name: str) -> Any:  # ag_code, __qualname__ ... for the loop's messages
        return getattr(object.__getattribute__(self, "_agen"), name)


def _first_step(inner: AsyncGenerator[Any, Any], scope: FunctionScope) -> Coroutine[Any, Any, Any]:
    """``inner.asend(None)``, with the event loop's hooks replaced for ``inner``.

    The loop must not register ``inner`` (at shutdown it would close it itself,
    outside its scope): the wrapper, a native async generator, is registered
    and closes ``inner`` through its scope. Should ``inner`` still be
    collected unfinished (in one garbage cycle with the wrapper), its
    finalizer hands the loop a ``_ScopedClose`` instead of ``inner``.
    """
    hooks = sys.get_asyncgen_hooks()
    loop_finalizer = hooks.finalizer

    def finalize(agen: AsyncGenerator[Any, Any]) -> None:
        closer = _ScopedClose(agen, scope)
        if loop_finalizer is not None:
            loop_finalizer(closer)
            return
        closing = closer.aclose()  # no loop: close now, as Python would, but in scope
        with contextlib.suppress(StopIteration):
            closing.send(None)
        closing.close()

    sys.set_asyncgen_hooks(firstiter=None, finalizer=finalize)
    try:
        return inner.asend(None)
    finally:
        sys.set_asyncgen_hooks(*hooks)


async def scoped_async_generator(
    inner: AsyncGenerator[_Y, _S], scope: FunctionScope
) -> AsyncGenerator[_Y, _S]:
    """Drive ``inner`` one ``asend``/``athrow`` at a time, each awaitable step in ``scope``."""
    step: Coroutine[Any, Any, Any] = _first_step(inner, scope)
    while True:
        try:
            yielded: _Y = await _ScopedAsyncStep(step, scope, inner)
        except StopAsyncIteration:
            return
        try:
            value = yield yielded
        except GeneratorExit:
            await _ScopedAsyncStep(inner.aclose(), scope, inner)
            raise
        except BaseException as exc:
            step = inner.athrow(exc)
        else:
            step = inner.asend(value)
