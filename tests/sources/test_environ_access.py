"""The environment fast path mirrors os.environ exactly, or is not used."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from repro_ctx.sources import environ_access as _environ_access
from repro_ctx.sources.environ_access import EnvironAccess
from tests.waits import HANG_TIMEOUT

NAME = "REPRO_CTX_TEST_VARIABLE"


@pytest.fixture(autouse=True)
def _clean() -> None:
    os.environ.pop(NAME, None)


def test_the_fast_path_is_used_on_posix() -> None:
    access = EnvironAccess((NAME,))
    assert (access.get is os.environ.get) is (os.name != "posix")


def test_writes_reach_os_environ_and_child_processes() -> None:
    access = EnvironAccess((NAME,))
    assert access.get(NAME) is None
    access.set(NAME, "välue")
    assert os.environ[NAME] == "välue"
    assert access.get(NAME) == "välue"
    child = subprocess.run(
        [sys.executable, "-c", f"import os; print(os.environ['{NAME}'])"],
        capture_output=True, text=True, check=True, timeout=HANG_TIMEOUT,
    )
    assert child.stdout.strip() == "välue"
    os.environ[NAME] = "public"
    assert access.get(NAME) == "public"
    access.delete(NAME)
    assert NAME not in os.environ
    child = subprocess.run(
        [sys.executable, "-c", f"import os; print('{NAME}' in os.environ)"],
        capture_output=True, text=True, check=True, timeout=HANG_TIMEOUT,
    )
    assert child.stdout.strip() == "False"


def test_falls_back_to_os_environ_when_it_is_not_the_posix_mapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_environ_access.os, "name", "nt")
    access = EnvironAccess((NAME,))
    assert access.get == os.environ.get
    access.set(NAME, "x")
    assert os.environ[NAME] == "x"
    access.delete(NAME)
    assert NAME not in os.environ


def test_a_failing_self_check_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(names: tuple[str, ...]) -> object:
        def get(name: str) -> str | None:
            return "wrong"

        return get, lambda name, value: None, lambda name: None

    monkeypatch.setattr(_environ_access, "_fast_accessors", broken)
    assert not _environ_access._fast_environ_works()

    def raising(names: tuple[str, ...]) -> object:
        raise RuntimeError("layout changed")

    monkeypatch.setattr(_environ_access, "_fast_accessors", raising)
    assert not _environ_access._fast_environ_works()


def test_the_self_check_never_clobbers_a_user_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_environ_access._PROBE, "mine")
    assert not _environ_access._fast_environ_works()
    assert os.environ[_environ_access._PROBE] == "mine"
