"""``reproducible``: the decorator face. Each call runs in its own scope.

The options are validated once, into a ``deterministic`` object, and
``ScopeDecorator`` (``decorator``) applies that scope to every callable
decorated with the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast, overload

from ..core.seed import check_seed
from ..core.source import Algorithms
from .decorator import ScopeDecorator, SeedCallable
from .deterministic import deterministic

_F = TypeVar("_F", bound=Callable[..., Any])


@overload
def reproducible(func: _F, /) -> _F: ...


@overload
def reproducible(
    seed: int | None = 0,
    /,
    *,
    algorithms: Algorithms = True,
    benchmark: bool | None = False,
    tf32: bool | None = False,
    fill_uninitialized_memory: bool | None = None,
    generators: Iterable[object] = (),
    per_rank: bool = False,
) -> ScopeDecorator: ...


@overload
def reproducible(
    *,
    seed: int | SeedCallable | None = 0,
    algorithms: Algorithms = True,
    benchmark: bool | None = False,
    tf32: bool | None = False,
    fill_uninitialized_memory: bool | None = None,
    generators: Iterable[object] = (),
    per_rank: bool = False,
) -> ScopeDecorator: ...


def reproducible(*args: Any, **options: Any) -> Any:
    """Run every call of the decorated callable in its own ``deterministic`` scope.

    Every call starts from the same seeded state, so every call gives the same
    results, and the caller's RNG state and flags are untouched afterwards.
    Generators, coroutines and async generators keep their scope only while
    their own code runs: the caller's state is swapped back at every ``yield``
    and every ``await`` that suspends. Works on functions, methods,
    classmethods and staticmethods, and keeps ``__name__``, ``__doc__``,
    ``__wrapped__`` and the signature.

    The seed is an int (positional or ``seed=``), or, computed per call from
    the call's arguments (``self`` included for methods), a callable passed
    as ``seed=``. A positional callable is the function to decorate: bare
    ``@reproducible`` means ``@reproducible(seed=0)``.
    """
    if len(args) > 1:
        raise TypeError(
            f"reproducible() takes at most one positional argument (the seed), got {len(args)}"
        )
    if args:
        first = args[0]
        if "seed" in options:
            raise TypeError("reproducible() got the seed both positionally and as seed=")
        if callable(first) or isinstance(first, (classmethod, staticmethod)):
            if options:
                raise TypeError(
                    "a positional callable is the function to decorate (bare @reproducible); "
                    "pass a per-call seed function as seed=..."
                )
            return _decorator(**_DEFAULTS)(first)
        options["seed"] = first
    return _decorator(**{**_DEFAULTS, **options})


def _check_fixed_seed(seed: object) -> None:
    """A seed that is not callable is an int in [0, 2**64): the error names all three forms."""
    try:
        check_seed(seed)
    except TypeError:
        hint = ""
        if isinstance(seed, str) and seed.isidentifier():
            hint = (f"; to take the seed from the call's argument {seed!r}, pass a callable "
                    f"with the decorated function's parameters that returns it: "
                    f"seed=lambda <those parameters>: {seed}")
        raise TypeError(
            "@reproducible's seed must be an int in [0, 2**64), None, or a callable that "
            "computes it from each call's arguments (seed=lambda ...: ...), got "
            f"{type(seed).__name__} {seed!r}{hint}"
        ) from None


_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "algorithms": True,
    "benchmark": False,
    "tf32": False,
    "fill_uninitialized_memory": None,
    "generators": (),
    "per_rank": False,
}




def _decorator(
    seed: int | SeedCallable | None,
    *,
    algorithms: Algorithms,
    benchmark: bool | None,
    tf32: bool | None,
    fill_uninitialized_memory: bool | None,
    generators: Iterable[object],
    per_rank: bool,
) -> ScopeDecorator:
    """Validate the options once; a callable seed is computed per call, so the scope has none."""
    seed_of = seed if callable(seed) else None
    if seed_of is None and seed is not None:
        _check_fixed_seed(seed)
    scope = deterministic(
        None if seed_of is not None else cast("int | None", seed),
        algorithms=algorithms,
        benchmark=benchmark,
        tf32=tf32,
        fill_uninitialized_memory=fill_uninitialized_memory,
        generators=generators,
        per_rank=per_rank,
    )
    return ScopeDecorator(scope, seed_of)
