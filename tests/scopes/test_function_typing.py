"""mypy sees a decorated callable as what it was: async stays async, a generator a generator.

One mypy run (a few seconds) over a small snippet, with torch and NumPy
skipped, asserting the types it reveals and the error a wrong argument gets.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from mypy import api  # a test dependency: pyproject's test extra

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = """
import unittest
from collections.abc import AsyncGenerator, Generator

from repro_ctx import reproducible


@reproducible(seed=0)
def plain(x: int) -> str:
    return str(x)


@reproducible(seed=0)
def numbers(n: int) -> Generator[float, int, str]:
    yield 1.0
    return "done"


@reproducible(seed=lambda x: x)
async def coro(x: int) -> int:
    return x


@reproducible(seed=0)
async def stream(n: int) -> AsyncGenerator[float, None]:
    yield 1.0


class Data:
    @reproducible(seed=lambda self, idx: idx)
    def __getitem__(self, idx: int) -> float:
        return 0.0

    @reproducible(seed=0)
    @classmethod
    def build(cls, n: int) -> "Data":
        return cls()

    @reproducible(seed=0)
    @staticmethod
    def helper(n: int) -> int:
        return n


@reproducible(seed=0)
class Case(unittest.TestCase):
    def test_one(self) -> None:
        pass


async def use() -> None:
    reveal_type(plain)
    reveal_type(numbers)
    reveal_type(coro)
    reveal_type(await coro(1))
    reveal_type(stream)
    reveal_type(Data()[3])
    reveal_type(Data.build)
    reveal_type(Data.helper)
    reveal_type(Case)
    reveal_type(reproducible(seed=1))
    plain("not an int")
"""

EXPECTED = [
    'def (x: int) -> str',
    'def (n: int) -> typing.Generator[float, int, str]',
    'def (x: int) -> typing.Coroutine[Any, Any, int]',
    'int',
    'def (n: int) -> typing.AsyncGenerator[float, None]',
    'float',
    'def (n: int) -> snippet.Data',
    'def (n: int) -> int',
    'def (methodName: str =) -> snippet.Case',
    'repro_ctx.scopes.decorator.ScopeDecorator',
]

CONFIG = """
[mypy]
strict = True
mypy_path = {root}
follow_imports = silent
[mypy-torch.*]
follow_imports = skip
[mypy-numpy.*]
follow_imports = skip
"""


def test_mypy_keeps_the_decorated_types(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(SNIPPET))
    config = tmp_path / "mypy.ini"
    config.write_text(CONFIG.format(root=ROOT))
    stdout, stderr, _status = api.run(
        [str(snippet), "--config-file", str(config), "--cache-dir", str(tmp_path / "cache")]
    )
    # mypy >= 2 prints int where older versions print builtins.int
    revealed = [
        re.sub(r"\bbuiltins\.", "", found)
        for found in re.findall(r'Revealed type is "(.*)"', stdout)
    ]
    assert revealed == EXPECTED, stdout + stderr
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, stdout
    assert 'Argument 1 to "plain" has incompatible type "str"; expected "int"' in errors[0]
