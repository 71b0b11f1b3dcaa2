"""NumPy ``Generator`` objects that ``fn`` reaches by name, and whether its runs moved them.

A ``torch.Generator`` an op draws from is seen by the op recorder; NumPy's
numbers enter torch as plain data, so ``find_divergence`` looks for the
Generators ``fn`` can name (its globals, closure, ``self`` attributes and
``functools.partial`` arguments) and compares their states before the first
run and after the last: the scope puts back every Generator it covers
(``generators=[...]``, ``register()``), so one that moved is not covered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from .records import Cause


def named_generators(fn: Callable[..., object]) -> dict[str, Any]:
    """The NumPy Generators ``fn`` reaches, by the name it uses for them."""
    import numpy as np  # deferred: keeps NumPy out of `import repro_ctx`

    found: dict[str, Any] = {}

    def look(prefix: str, namespace: Mapping[str, object]) -> None:
        for name, value in list(namespace.items()):
            if isinstance(value, np.random.Generator) and all(
                value is not seen for seen in found.values()
            ):
                found[prefix + name] = value

    inner: Any = fn
    while hasattr(inner, "func") and hasattr(inner, "keywords"):  # functools.partial
        look("", inner.keywords)
        look("", {f"<argument {i + 1}>": value for i, value in enumerate(inner.args)})
        inner = inner.func
    owner = getattr(inner, "__self__", None)
    if owner is not None and isinstance(getattr(owner, "__dict__", None), dict):
        look("self.", vars(owner))
    function = getattr(inner, "__func__", inner)
    code, cells = getattr(function, "__code__", None), getattr(function, "__closure__", None)
    if code is not None and cells:
        look("", {name: _cell(cell) for name, cell in zip(code.co_freevars, cells, strict=True)})
    look("", getattr(function, "__globals__", {}))
    return found


def _cell(cell: Any) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def states(generators: Mapping[str, Any]) -> dict[str, str]:
    """Each Generator's bit generator state, read under its lock, as comparable text."""
    out: dict[str, str] = {}
    for name, generator in generators.items():
        bit_generator = generator.bit_generator
        with bit_generator.lock:
            state = bit_generator.state
        out[name] = json.dumps(state, sort_keys=True, default=_plain)
    return out


def _plain(value: Any) -> object:
    return value.tolist()  # an ndarray in a state (MT19937's key)


def moved(generators: Mapping[str, Any], before: Mapping[str, str]) -> list[str]:
    """The names of the Generators whose state changed since ``before``."""
    after = states(generators)
    return [name for name in before if after.get(name) != before[name]]


def uncovered_numpy(names: list[str]) -> Cause:
    """The cause: an unseeded NumPy Generator moved on between runs."""
    name = names[0]
    others = f" (and {', '.join(f'`{other}`' for other in names[1:])})" if names[1:] else ""
    return Cause(
        "uncovered_rng",
        f"fn draws from the NumPy Generator `{name}`{others}, which the scope neither seeds "
        "nor restores, so it moved on between runs and its numbers entered torch as other "
        "data each time",
        f"pass generators=[{name}] (to find_divergence or deterministic), or register({name}) "
        "where it is created",
    )
