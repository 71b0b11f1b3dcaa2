"""docs/guide/plugins.md runs as written.

A local executor for this page (the general docs executor will take it over):
a ```` ```python title="path" ```` block is a file written to that path, the
other ```` ```python ```` blocks run in order in one fresh interpreter whose
working directory holds those files, and the page's ``repro_ctx.sources``
entry-point declaration is installed as a distribution and checked to make
every process cover the source.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "guide" / "plugins.md"
_FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_TITLE = re.compile(r'title="([^"]+)"')


def blocks() -> list[tuple[str, str | None, str]]:
    """(language, title or None, code) of every fenced block, in page order."""
    out = []
    for language, info, code in _FENCE.findall(PAGE.read_text()):
        title = _TITLE.search(info)
        out.append((language, title.group(1) if title else None, code))
    return out


def _write_files(where: Path) -> None:
    for language, title, code in blocks():
        if language == "python" and title is not None:
            path = where / title
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)


def _run(cwd: Path, code: str, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in [*pythonpath, ROOT])}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=HANG_TIMEOUT, check=False)


def test_the_page_has_files_runnable_blocks_and_an_entry_point() -> None:
    kinds = [(language, title is not None) for language, title, _code in blocks()]
    assert ("python", True) in kinds
    assert ("python", False) in kinds
    assert ("toml", False) in kinds


def test_the_python_blocks_run_as_written(tmp_path: Path) -> None:
    _write_files(tmp_path)
    script = "\n\n".join(code for language, title, code in blocks()
                         if language == "python" and title is None)
    result = _run(tmp_path, script, [tmp_path])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "rng.pt").exists()


def test_the_entry_point_declaration_covers_the_source_in_every_process(
    tmp_path: Path,
) -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    _write_files(tmp_path)
    (toml,) = [code for language, _title, code in blocks() if language == "toml"]
    declared = tomllib.loads(toml)["project"]["entry-points"]["repro_ctx.sources"]
    info = tmp_path / "dicey-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dicey\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[repro_ctx.sources]\n" + "".join(f"{k} = {v}\n" for k, v in declared.items()))
    check = (
        "import sys, dicey\n"
        "from repro_ctx import deterministic\n"
        "assert 'dicey.repro' not in sys.modules\n"
        "before = dicey._rng.getstate()\n"
        "with deterministic(seed=0):\n"
        "    first = [dicey.roll() for _ in range(5)]\n"
        "with deterministic(seed=0):\n"
        "    assert [dicey.roll() for _ in range(5)] == first\n"
        "assert dicey._rng.getstate() == before\n"
        "assert 'dicey.repro' in sys.modules\n"
    )
    result = _run(tmp_path, check, [tmp_path])
    assert result.returncode == 0, result.stderr
