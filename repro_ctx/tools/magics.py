"""IPython / Jupyter: ``%load_ext repro_ctx`` and the ``%%deterministic`` cell magic.

The magic is one more face of the scope: the cell runs inside
``deterministic(...)``, so re-running it gives the same output, and the
session's RNGs and flags are restored afterwards, as if the cell had not run.
IPython is imported only when the extension is loaded.
"""

from __future__ import annotations

import ast
import shlex
from typing import Any

from ..scopes.deterministic import deterministic as scope_type
from .arguments import seed_argument

_NAME = "deterministic"


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext repro_ctx``: register ``%%deterministic``."""
    ipython.register_magic_function(_make_magic(ipython), magic_kind="cell", magic_name=_NAME)


def unload_ipython_extension(ipython: Any) -> None:
    """Called by ``%unload_ext repro_ctx``: remove ``%%deterministic``."""
    ipython.magics_manager.magics["cell"].pop(_NAME, None)


def _make_magic(shell: Any) -> Any:
    # Through importlib: IPython's decorators are untyped, and IPython is not a
    # dependency (the type check runs without it).
    from importlib import import_module


    UsageError: Any = import_module("IPython.core.error").UsageError
    arguments: Any = import_module("IPython.core.magic_arguments")

    def deterministic(line: str, cell: str) -> object:
        """Run the cell inside repro_ctx.deterministic(seed): seeded, with deterministic
        algorithms, no TF32, no cuDNN benchmark; every RNG and flag is restored afterwards.
        Re-running the cell gives the same output.
        """
        __tracebackhide__ = True
        try:
            args = arguments.parse_argstring(magic, without_comment(line))
        except ValueError as exc:  # shlex: an unclosed quote
            raise UsageError(f"%%deterministic: {exc} in {line!r}") from None
        if args.warn and args.no_algorithms:
            raise UsageError("%%deterministic: --warn and --no-algorithms exclude each other")
        algorithms: Any = "warn" if args.warn else not args.no_algorithms
        code, last = _compile(shell, cell)
        namespace = shell.user_ns
        with scope_type(args.seed, algorithms=algorithms):
            exec(code, namespace)
            return eval(last, namespace) if last is not None else None

    # The decorators of IPython's magic_arguments, applied bottom-up.
    magic: Any = deterministic
    for flags, options in reversed(_arguments(seed_argument)):
        magic = arguments.argument(*flags, **options)(magic)
    magic = arguments.magic_arguments(name="%" + _NAME)(magic)
    return magic


def without_comment(line: str) -> str:
    """``--seed 3   # why`` -> ``--seed 3``: a magic line may end in a comment, as code does."""
    return shlex.join(shlex.split(line, comments=True))


def _arguments(seed: Any) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    return [
        (("--seed",), {"type": seed, "default": 0, "metavar": "N",
                       "help": "the seed (an int in [0, 2**64), default 0)"}),
        (("--warn",), {"action": "store_true",
                       "help": "deterministic algorithms in warn-only mode: nondeterministic "
                       "ops warn instead of raising"}),
        (("--no-algorithms",), {"action": "store_true",
                                "help": "seed and restore, but leave torch's deterministic "
                                "algorithms off"}),
    ]


def _compile(shell: Any, cell: str) -> tuple[Any, Any]:
    """The cell as code, and its last expression apart, to return it as the cell's value."""
    source = shell.transform_cell(cell)
    tree = shell.transform_ast(shell.compile.ast_parse(source))
    filename = shell.compile.cache(source, shell.execution_count, raw_code=cell)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        expression = ast.Expression(tree.body.pop().value)
        last = shell.compile(expression, filename, "eval")
    return shell.compile(tree, filename, "exec"), last
