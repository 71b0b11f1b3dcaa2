"""The house stays as built: no import circles, imports run one way, deferred ones earn it.

Every ``import`` in the package is read from the source (module level,
function bodies and ``TYPE_CHECKING`` blocks alike) and resolved to the
repro_ctx module it names. The folders stand on floors; a module may import
its own folder and the floors below, never above or beside.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "repro_ctx"

FLOORS = {
    "core": 0,
    "sources": 1,
    "scopes": 2,
    "state": 3,
    "diagnose": 4,
    "tools": 5,
    "integrations": 5,
}
"""What each folder may import: its own modules and those of lower floors."""
TOP = 6  # repro_ctx/__init__.py and the public modules beside it: re-exports
BOTTOM_MODULES = {"repro_ctx._version"}  # imports nothing: any floor may read the version
HEAVY = {"torch", "numpy", "IPython", "matplotlib", "pytest", "lightning",
         "transformers", "accelerate", "threadpoolctl"}
"""Libraries a deferred import may keep out of ``import repro_ctx``."""
MAX_LINES = 400


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    deferred: bool  # inside a function body
    typing_only: bool  # under ``if TYPE_CHECKING:``


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def absolute(level: int, name: str | None) -> str:
        base = package.split(".")
        if level > 1:
            base = base[: len(base) - (level - 1)]
        return ".".join([*base, *([name] if name else [])])

    def visit(node: ast.AST, deferred: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ImportFrom):
                base = absolute(child.level, child.module) if child.level else str(child.module)
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    target = sub if sub in MODULES else base
                    found.append(Import(module, target, child.lineno, deferred, typing_only))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, alias.name, child.lineno, deferred, typing_only))
            visit(
                child,
                deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)),
                typing_only or (isinstance(child, ast.If) and _is_type_checking(child)),
            )

    visit(ast.parse(path.read_text()), False, False)
    return found


IMPORTS = {module: _imports_of(module) for module in MODULES}


def _internal(imports: list[Import]) -> list[Import]:
    return [imp for imp in imports if imp.target.split(".")[0] == "repro_ctx"
            and imp.target != imp.source]


def _floor(module: str) -> int:
    if module in BOTTOM_MODULES:
        return -1
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in FLOORS:
        return FLOORS[parts[1]]
    return TOP


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in FLOORS else ""


def _cycles() -> list[list[str]]:
    """Every strongly connected group of modules larger than one (Tarjan)."""
    graph = {m: sorted({i.target for i in _internal(IMPORTS[m]) if i.target in MODULES})
             for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            connect(node)
    return groups


def test_the_package_has_no_import_circle() -> None:
    assert _cycles() == []


def test_imports_run_down_the_floors() -> None:
    against = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for module in MODULES
        for imp in _internal(IMPORTS[module])
        if _floor(imp.source) != TOP and _folder(imp.source) != _folder(imp.target)
        and not _floor(imp.target) < _floor(imp.source)
    ]
    assert against == []


def _imports_heavy_library(module: str, seen: set[str] | None = None) -> bool:
    """Whether importing ``module`` imports a heavy library, at module level, itself or below."""
    seen = set() if seen is None else seen
    if module in seen:
        return False
    seen.add(module)
    for imp in IMPORTS.get(module, []):
        if imp.deferred or imp.typing_only:
            continue
        if imp.target.split(".")[0] in HEAVY:
            return True
        if imp.target in MODULES and _imports_heavy_library(imp.target, seen):
            return True
    return False


def test_a_deferred_import_keeps_a_heavy_library_out() -> None:
    """A repro_ctx module imported inside a function must import torch, NumPy... at its top.

    Anything else could be imported at the top of the importing module: a
    deferred import is never there to hide a circle.
    """
    needless = [
        f"{imp.source}:{imp.line} defers {imp.target}"
        for module in MODULES
        for imp in _internal(IMPORTS[module])
        if imp.deferred and not imp.typing_only and imp.target in MODULES
        and not _imports_heavy_library(imp.target)
    ]
    assert needless == []


def test_import_repro_ctx_imports_no_heavy_library_at_module_level() -> None:
    assert not _imports_heavy_library("repro_ctx")


@pytest.mark.parametrize("folder", sorted(FLOORS))
def test_each_folder_says_what_lives_there_and_imports_nothing(folder: str) -> None:
    init = PACKAGE / folder / "__init__.py"
    tree = ast.parse(init.read_text())
    docstring = ast.get_docstring(tree)
    assert docstring is not None, init
    assert "May import" in docstring, init
    assert [type(node) for node in tree.body] == [ast.Expr], "docstring only"


def test_modules_stay_small_or_say_why() -> None:
    long = [
        f"{name} ({len(path.read_text().splitlines())} lines)"
        for name, path in MODULES.items()
        if len(path.read_text().splitlines()) > MAX_LINES
        and "Longer than" not in (ast.get_docstring(ast.parse(path.read_text())) or "")
    ]
    assert long == []


def test_the_checks_see_what_they_should() -> None:
    """The checks above are only as good as the graph: pin a few edges of each kind."""
    by_pair = {(i.source, i.target): i for m in MODULES for i in IMPORTS[m]}
    top = by_pair[("repro_ctx.scopes.deterministic", "repro_ctx.sources.default_set")]
    assert not top.deferred
    assert not top.typing_only
    deferred = by_pair[("repro_ctx.sources.generators", "repro_ctx.sources.numpy_generators")]
    assert deferred.deferred
    typing_only = by_pair[("repro_ctx.tools.pytest_plugin", "repro_ctx.core.scope")]
    assert typing_only.typing_only or typing_only.deferred
    assert _imports_heavy_library("repro_ctx.sources.numpy_generators")
    assert not _imports_heavy_library("repro_ctx.core.seed")
    assert _floor("repro_ctx.tools.cli") > _floor("repro_ctx.diagnose.divergence") > _floor(
        "repro_ctx.state.snapshot") > _floor("repro_ctx.scopes.deterministic") > _floor(
        "repro_ctx.sources.flags") > _floor("repro_ctx.core.scope")
