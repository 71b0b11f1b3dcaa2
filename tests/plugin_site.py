"""A site directory with source plugins installed as distributions, for entry-point tests.

``toylib`` is a small library with a module-level RNG and, in
``toylib.repro``, its source, declared in the ``repro_ctx.sources`` group.
The broken distributions hold a plugin whose module does not import and one
whose ``restore`` raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

TOYLIB = '''
"""A library with a module-level RNG, as many have."""
import random

_rng = random.Random(12345)


def draw() -> float:
    return _rng.random()
'''

TOYLIB_REPRO = '''
"""toylib's repro_ctx source."""
import toylib


class ToySource:
    name = "toylib"

    def capture(self):
        return toylib._rng.getstate()

    def seed(self, seed):
        toylib._rng.seed(seed)

    def restore(self, snapshot):
        toylib._rng.setstate(snapshot)

    def to_plain(self, snapshot):
        version, internal, gauss = snapshot
        return {"version": version, "state": list(internal), "gauss": gauss}

    def from_plain(self, data):
        return (data["version"], tuple(data["state"]), data["gauss"])


def source():
    return ToySource()
'''

TOYLIB_DATA = '''
"""A dataset whose items draw from toylib: what an augmentation library does."""
import torch

import toylib


class Draws(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        info = torch.utils.data.get_worker_info()
        return torch.tensor([index, info.id, toylib.draw()], dtype=torch.float64)
'''

BAD_RESTORE = '''
"""A plugin whose restore raises; capture and seed work."""
import random

rng = random.Random(7)


class BadRestore:
    name = "badrestore"

    def capture(self):
        return rng.getstate()

    def seed(self, seed):
        rng.seed(seed)

    def restore(self, snapshot):
        raise RuntimeError("badrestore cannot restore")


def source():
    return BadRestore()
'''


def _distribution(site: Path, name: str, entry_points: dict[str, str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = ["[repro_ctx.sources]", *(f"{key} = {value}" for key, value in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def make_site(site: Path, *, broken: bool = False, extra: dict[str, str] | None = None) -> Path:
    """Install toylib (and, with ``broken``, the two broken plugins) into ``site``.

    ``extra``: more entry points, declared by one more distribution.
    """
    site.mkdir(parents=True, exist_ok=True)
    package = site / "toylib"
    package.mkdir()
    (package / "__init__.py").write_text(TOYLIB)
    (package / "repro.py").write_text(TOYLIB_REPRO)
    (package / "data.py").write_text(TOYLIB_DATA)
    _distribution(site, "toylib", {"toylib": "toylib.repro:source"})
    if broken:
        (site / "badrestore.py").write_text(BAD_RESTORE)
        _distribution(site, "badrestore", {"badrestore": "badrestore:source"})
        _distribution(site, "brokenimport", {"broken": "no_such_module_for_repro_ctx:source"})
    if extra:
        _distribution(site, "extra", extra)
    return site


@contextlib.contextmanager
def registry_preserved() -> Iterator[None]:
    """Put the plugin registry (active, dropped, failed to load) back as it was on exit."""
    from repro_ctx.sources import default_set as _sources
    from repro_ctx.sources import plugin_registry as registry

    tables = (registry._active, registry._dropped, registry._load_failures)
    saved = tuple(dict(table) for table in tables)
    try:
        yield
    finally:
        with registry.lock:
            for table, before in zip(tables, saved, strict=True):
                table.clear()
                table.update(before)  # type: ignore[attr-defined]
            _sources.invalidate()
