"""``reproducible``: the decorator face. Each call runs in a fresh scope."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import wrapt

from ._deterministic import deterministic
from ._source import Algorithms

_F = TypeVar("_F", bound=Callable[..., Any])


def reproducible(
    seed: int | None = 0,
    *,
    algorithms: Algorithms = True,
    benchmark: bool | None = False,
    tf32: bool | None = False,
    fill_uninitialized_memory: bool | None = None,
    generators: Iterable[object] = (),
) -> Callable[[_F], _F]:
    """Run every call of the decorated callable in its own ``deterministic`` scope.

    Every call starts from the same seeded state, so every call gives the same
    results, and the caller's RNG state and flags are untouched afterwards.
    Works on functions, methods, classmethods and staticmethods, and keeps
    ``__name__``, ``__doc__``, ``__wrapped__`` and the signature.
    """
    scope = deterministic(
        seed,
        algorithms=algorithms,
        benchmark=benchmark,
        tf32=tf32,
        fill_uninitialized_memory=fill_uninitialized_memory,
        generators=generators,
    )

    @wrapt.decorator  # type: ignore[untyped-decorator]
    def run_in_scope(
        wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        with scope:
            return wrapped(*args, **kwargs)

    def decorate(func: _F) -> _F:
        if not callable(func) and not isinstance(func, (classmethod, staticmethod)):
            raise TypeError(
                f"@reproducible decorates a function, method, classmethod or staticmethod, "
                f"got {type(func).__name__}"
            )
        return run_in_scope(func)  # type: ignore[no-any-return]

    return decorate
