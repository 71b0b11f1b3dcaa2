"""The version lives in one place, repro_ctx/_version.py; everything else reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

import repro_ctx

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_metadata_reads_the_version_from_the_package() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    source = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert source == "repro_ctx._version.__version__"
    assert repro_ctx.__version__ == repro_ctx._version.__version__


def test_the_changelog_has_a_section_for_the_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{repro_ctx.__version__}]" in changelog
    assert "## [Unreleased]" in changelog
