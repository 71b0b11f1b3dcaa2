"""``import repro_ctx`` stays cheap: torch (and NumPy) come with the first scope."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
        timeout=HANG_TIMEOUT,
    )
    return result.stdout.strip()


def test_import_does_not_import_torch_or_numpy() -> None:
    out = _run("import sys, repro_ctx; print('torch' in sys.modules, 'numpy' in sys.modules)")
    assert out == "False False"


def test_first_scope_imports_torch() -> None:
    out = _run(
        "import sys, repro_ctx\n"
        "with repro_ctx.deterministic(0): pass\n"
        "print('torch' in sys.modules)"
    )
    assert out == "True"


def test_public_api_is_only_reexports() -> None:
    import ast

    tree = ast.parse((ROOT / "repro_ctx" / "__init__.py").read_text())
    for node in tree.body:
        assert isinstance(node, (ast.ImportFrom, ast.Assign, ast.Expr)), ast.dump(node)
