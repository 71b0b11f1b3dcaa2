"""Every code block in the README and the docs runs as a user would run it.

* A ``python`` block runs as written, on its own, in a fresh namespace and an
  empty folder: every block must be complete.
* A ``python`` block with a title (```` ```python title="train.py" ````) is a
  file the page shows: it is written into the folder of every later block on
  its page, for the shell blocks that run it.
* A ``python`` block in IPython syntax (a line starting with ``%``) is a
  notebook cell: the page's cells run in order in one real IPython shell, in
  a fresh process, as a notebook's "run all" would.
* A ``bash`` block runs line by line in bash, in that folder, with this
  environment's ``repro-ctx``, ``pytest`` and ``python`` first on the PATH.
  Commands that install packages or run the whole test suite are skipped:
  ``SKIPPED`` says which, and why.
* ``text`` blocks are output and are not run.
* A page listed in ``OWN_EXECUTOR`` is run by the test module named there.
* ``<!-- docs-test: xfail: REASON -->`` right before a block marks it as
  failing today (strict: the test fails once the block passes).
"""

from __future__ import annotations

import dataclasses
import json
import linecache
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from repro_ctx import registered, unregister
from repro_ctx.core.scope import open_activations
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
# Pages whose blocks need more than this executor offers (a package written to
# files and installed through an entry point in fresh interpreters): each is
# run by its own test module, named here.
OWN_EXECUTOR = {ROOT / "docs" / "guide" / "plugins.md": ROOT / "tests" / "test_docs_plugins.py"}
PAGES = [page for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
         if page not in OWN_EXECUTOR]
PYTHON = {"python", "py"}
SHELL = {"bash", "sh", "shell"}
NOT_RUN = {"text"}  # output shown to the reader

# Command prefixes (whole words) that are shown but not run, and why.
SKIPPED = {
    "pip install": "installs packages: the tests run in an environment already set up",
    "python -m pip install": "installs packages: the tests run in an environment already set up",
    "python -m nox": "the whole test suite, which includes this test",
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<info>[^`]*)$")
_MARK = re.compile(r"^\s*<!--\s*docs-test:\s*xfail:\s*(?P<reason>.+?)\s*-->\s*$")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')


@dataclasses.dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    title: str | None
    code: str
    xfail: str | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_cell(self) -> bool:
        return self.language in PYTHON and any(
            line.startswith("%") for line in self.code.splitlines()
        )


def parse(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, indented ones (in lists) included."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    xfail: str | None = None
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            mark = _MARK.match(lines[index])
            if mark is not None:
                xfail = mark["reason"]
            elif lines[index].strip():
                xfail = None
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language, _, attributes = opening["info"].strip().partition(" ")
        title = _TITLE.search(attributes)
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{index + 1}: the code block is never closed")
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip()
                for line in lines[index + 1:end]]
        blocks.append(Block(page, index + 1, language, title and title["title"],
                            "\n".join(body) + "\n", xfail))
        xfail = None
        index = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in parse(page)]


def _params(blocks: list[Block]) -> list[object]:
    return [
        pytest.param(block, id=block.name, marks=[
            pytest.mark.xfail(strict=True, reason=block.xfail)] if block.xfail else [])
        for block in blocks
    ]


def commands(block: Block) -> list[str]:
    """The commands of a shell block: one a line, ``a && b`` split, comments dropped."""
    found = []
    for line in block.code.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            found.extend(part.strip() for part in line.split(" && "))
    return found


def skipped_by(command: str) -> str | None:
    """The ``SKIPPED`` prefix a command starts with (as whole words), or None."""
    for prefix in SKIPPED:
        if command == prefix or command.startswith(prefix + " "):
            return prefix
    return None


def _folder(block: Block, tmp_path: Path) -> Path:
    """An empty folder holding the files the page showed before ``block``."""
    for earlier in parse(block.page):
        if earlier.line >= block.line:
            break
        if earlier.title is not None:
            (tmp_path / earlier.title).write_text(earlier.code, encoding="utf-8")
    return tmp_path


def _environment() -> dict[str, str]:
    """A user's shell: this environment's scripts first, nothing of the running pytest."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _shown(completed: subprocess.CompletedProcess[str]) -> str:
    return f"exit status {completed.returncode}\n{completed.stdout}\n{completed.stderr}"


# -- the parser and the allow-list --------------------------------------------------------


def test_every_fence_is_a_block_of_a_known_language() -> None:
    fences = sum(
        1 for page in PAGES for line in page.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("```")
    )
    assert fences == 2 * len(BLOCKS)
    unknown = [b.name for b in BLOCKS if b.language not in PYTHON | SHELL | NOT_RUN]
    assert not unknown, f"blocks without a language this test knows how to run: {unknown}"


def test_every_file_a_page_shows_is_run_by_a_later_command() -> None:
    unused = []
    for block in BLOCKS:
        if block.title is not None:
            later = [b for b in parse(block.page) if b.line > block.line and b.language in SHELL]
            if not any(block.title in command for b in later for command in commands(b)):
                unused.append(block.name)
    assert not unused, f"file blocks that no later shell block runs: {unused}"


def test_skipped_commands_are_exactly_the_allow_list() -> None:
    shell = [command for b in BLOCKS if b.language in SHELL for command in commands(b)]
    used = {skipped_by(command) for command in shell} - {None}
    assert used == set(SKIPPED), f"allow-list entries no page uses: {set(SKIPPED) - used}"
    assert len(shell) > len([c for c in shell if skipped_by(c)]), "every command is skipped"


@pytest.mark.parametrize(
    ("command", "prefix"),
    [
        ("pip install repro-ctx", "pip install"),
        ("python -m pip install -q -c constraints.txt nox uv", "python -m pip install"),
        ("python -m nox", "python -m nox"),
        ("python -m nox -s docs", "python -m nox"),
        ("repro-ctx doctor", None),
        ("pytest -q --repro-seed=1234 test_model.py", None),
        ("pipx install repro-ctx", None),
        ("python -m noxious", None),
        ("python train.py", None),
    ],
)
def test_the_allow_list_matches_whole_words(command: str, prefix: str | None) -> None:
    assert skipped_by(command) == prefix


def test_an_xfail_mark_applies_to_the_next_block_only(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: xfail: broken until #1 -->\n\n```python\nraise SystemExit(1)\n```\n\n"
        "```python\npass\n```\n\n<!-- docs-test: xfail: stale -->\ntext in between\n"
        "```bash\ntrue\n```\n",
        encoding="utf-8",
    )
    assert [block.xfail for block in parse(page)] == ["broken until #1", None, None]


def test_the_readme_is_one_screen() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150


# -- the blocks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "block", _params([b for b in BLOCKS if b.language in PYTHON and not b.is_cell
                      and b.title is None]))
def test_python_block(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(_folder(block, tmp_path))
    filename = f"<{block.name}>"
    linecache.cache[filename] = (len(block.code), None, block.code.splitlines(True), filename)
    before = registered()
    try:
        exec(compile(block.code, filename, "exec"), {"__name__": "__main__"})
        assert not open_activations(), "the example left a scope open"
    finally:
        for obj in registered():
            if not any(obj is other for other in before):
                unregister(obj)


_NOTEBOOK = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

config = Config()
config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)
for cell in json.loads(sys.stdin.read()):
    ok = shell.run_cell(cell, store_history=True).success
    print(f"\\n<cell {'ok' if ok else 'failed'}>", flush=True)
"""
_notebooks: dict[Path, list[tuple[bool, str]]] = {}


def _notebook(page: Path, folder: Path) -> list[tuple[bool, str]]:
    """Run the page's cells in order in one IPython shell, as "run all" would; once per page.

    Each cell's success and output; a failing cell does not stop the later ones.
    """
    if page not in _notebooks:
        cells = [block.code for block in parse(page) if block.is_cell]
        env = {**_environment(), "IPYTHONDIR": str(folder / ".ipython")}
        completed = subprocess.run(
            [sys.executable, "-c", _NOTEBOOK], input=json.dumps(cells), cwd=folder, env=env,
            capture_output=True, text=True, timeout=HANG_TIMEOUT,
        )
        assert completed.returncode == 0, _shown(completed)
        outputs = re.split(r"\n<cell (ok|failed)>\n", completed.stdout)
        _notebooks[page] = [(status == "ok", output)
                            for output, status in zip(outputs[::2], outputs[1::2])]
        assert len(_notebooks[page]) == len(cells), _shown(completed)
    return _notebooks[page]


@pytest.mark.parametrize("block", _params([b for b in BLOCKS if b.is_cell]))
def test_ipython_cell(block: Block, tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    cells = [b for b in parse(block.page) if b.is_cell]
    ok, output = _notebook(block.page, _folder(cells[-1], tmp_path))[cells.index(block)]
    assert ok, f"the cell failed:\n{output}"


@pytest.mark.parametrize("block", _params([b for b in BLOCKS if b.language in SHELL]))
def test_shell_block(block: Block, tmp_path: Path) -> None:
    folder = _folder(block, tmp_path)
    for command in commands(block):
        if skipped_by(command) is not None:
            continue
        completed = subprocess.run(
            ["bash", "-c", command], cwd=folder, env=_environment(),
            capture_output=True, text=True, timeout=HANG_TIMEOUT,
        )
        assert completed.returncode == 0, f"{command}\n{_shown(completed)}"


def test_pages_with_their_own_executor_are_run_by_it() -> None:
    for page, executor in OWN_EXECUTOR.items():
        assert page.exists(), page
        relative = page.relative_to(ROOT).as_posix()
        assert relative in executor.read_text(encoding="utf-8").replace('" / "', "/"), executor
