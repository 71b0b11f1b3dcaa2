"""Source plugins installed through the ``repro_ctx.sources`` entry point.

The whole-process behaviour runs in fresh interpreters whose ``PYTHONPATH``
holds a temporary site directory (``tests/plugin_site.py``): loading at the
first scope and not at import, seeding, restore, a checkpoint through
``torch.save`` and ``torch.load(weights_only=True)`` in another process,
``--repro-leaks``, DataLoader workers, and broken plugins next to the
built-in sources. The loader itself is also driven in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from repro_ctx import SourcePluginWarning, deterministic
from repro_ctx.sources import plugin_registry as registry
from repro_ctx.sources.default_set import default_sources
from tests.plugin_site import make_site, registry_preserved
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def good_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_site(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_site(tmp_path_factory.mktemp("bad-site"), broken=True)


def _run(site: Path, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=HANG_TIMEOUT, check=False)


def _python(site: Path, code: str, *args: str) -> Any:
    """Run ``code`` in a fresh interpreter; it prints one JSON value, returned here."""
    result = _run(site, ["-c", textwrap.dedent(code), *args])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


_SEEDED_AND_SAVED = """
    import io, json, random, sys
    import repro_ctx
    import toylib

    out = {"loaded by import repro_ctx": "toylib.repro" in sys.modules}
    before = toylib._rng.getstate()
    with repro_ctx.deterministic(0):
        out["loaded by the first scope"] = "toylib.repro" in sys.modules
        first = [toylib.draw() for _ in range(3)]
    out["restored"] = toylib._rng.getstate() == before
    with repro_ctx.deterministic(0):
        again = [toylib.draw() for _ in range(3)]
    out["repeats"] = first == again
    from repro_ctx.sources.plugins import plugin_seed
    expected = random.Random(plugin_seed(0, "toylib"))
    out["from the derived seed"] = first == [expected.random() for _ in range(3)]

    import torch
    toylib.draw()
    state = repro_ctx.capture()
    torch.save(state.state_dict(), sys.argv[1])
    out["kind"] = state.state_dict()["sources"]["toylib"]["kind"]
    out["next"] = [toylib.draw() for _ in range(3)]
    loaded = repro_ctx.RNGState.from_state_dict(torch.load(sys.argv[1], weights_only=True))
    out["mismatches"] = loaded.restore()
    out["resumed here"] = [toylib.draw() for _ in range(3)] == out["next"]
    print(json.dumps(out))
"""

_RESUMED = """
    import json, sys
    import torch
    import repro_ctx
    import toylib

    toylib.draw()  # elsewhere in its stream
    loaded = repro_ctx.RNGState.from_state_dict(torch.load(sys.argv[1], weights_only=True))
    mismatches = loaded.restore()
    print(json.dumps({"mismatches": mismatches, "next": [toylib.draw() for _ in range(3)]}))
"""


def test_an_entry_point_plugin_is_seeded_restored_and_checkpointed(
    good_site: Path, tmp_path: Path
) -> None:
    path = str(tmp_path / "rng.pt")
    out = _python(good_site, _SEEDED_AND_SAVED, path)
    assert out.pop("next") == _python(good_site, _RESUMED, path)["next"]  # another process
    assert out == {
        "loaded by import repro_ctx": False,
        "loaded by the first scope": True,
        "restored": True,
        "repeats": True,
        "from the derived seed": True,
        "kind": "plugin:toylib",
        "mismatches": [],
        "resumed here": True,
    }


_LEAKY_TESTS = """
import random

import pytest

import toylib
from repro_ctx.sources.plugins import plugin_seed


@pytest.mark.deterministic(seed=0)
def test_marked_draws_from_the_derived_seed():
    assert toylib.draw() == random.Random(plugin_seed(0, "toylib")).random()


def test_leaves_toylib_moved():
    toylib.draw()
"""


def test_leak_checks_name_an_entry_point_plugin(good_site: Path, tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(_LEAKY_TESTS)
    result = _run(good_site, ["-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
                              "--repro-leaks=fail", "test_leaky.py"], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "2 passed, 1 error" in output  # the leaky test passes, then errors at teardown
    assert "test_leaky.py::test_leaves_toylib_moved left global RNG-affecting state changed" in (
        output)
    assert "toylib: state changed (drawn from or reseeded outside a scope)" in output
    assert "test_marked_draws_from_the_derived_seed left" not in output


_WORKERS = """
    import json, sys
    import torch
    from torch.utils.data import DataLoader
    import repro_ctx
    import toylib.data

    context, seeded = sys.argv[1], sys.argv[2] == "seeded"
    kwargs = repro_ctx.dataloader_kwargs(0) if seeded else {}
    loader = DataLoader(toylib.data.Draws(), batch_size=2, num_workers=2,
                        multiprocessing_context=context, **kwargs)
    print(json.dumps(torch.cat(list(loader)).tolist()))
"""


def _per_worker(rows: list[list[float]]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for _index, worker, draw in rows:
        out.setdefault(int(worker), []).append(draw)
    return out


def test_each_dataloader_worker_gets_its_own_plugin_stream(good_site: Path) -> None:
    first = _python(good_site, _WORKERS, "fork", "seeded")
    assert _python(good_site, _WORKERS, "fork", "seeded") == first  # repeatable
    # a spawned worker loads the entry point itself, and is seeded alike
    assert _python(good_site, _WORKERS, "spawn", "seeded") == first
    workers = _per_worker(first)
    assert sorted(workers) == [0, 1]
    draws = workers[0] + workers[1]
    assert len(set(draws)) == len(draws)
    # without seed_worker, forked workers repeat the parent's toylib stream
    unseeded = _per_worker(_python(good_site, _WORKERS, "fork", "unseeded"))
    assert unseeded[0] == unseeded[1]


_BROKEN = """
    import json, random, warnings
    import numpy as np
    import torch
    import repro_ctx
    from repro_ctx.sources.plugin_registry import plugin_report
    from repro_ctx.sources.default_set import default_sources
    from tests.global_state import full_state

    np.random.rand(3)
    torch.rand(2)
    before = full_state()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with repro_ctx.deterministic(0):
            inside = [random.random(), float(np.random.rand()), float(torch.rand(1))]
    generator = torch.Generator().manual_seed(0)
    expected = [random.Random(0).random(), float(np.random.RandomState(0).rand()),
                float(torch.rand(1, generator=generator))]
    print(json.dumps({
        "exact": full_state() == before,
        "seeded": inside == expected,
        "warnings": [str(w.message) for w in caught
                     if issubclass(w.category, repro_ctx.SourcePluginWarning)],
        "report": plugin_report(),
        "sources": [source.name for source in default_sources()][-2:],
    }))
"""


def test_broken_plugins_are_named_and_leave_the_builtin_sources_exact(bad_site: Path) -> None:
    out = _python(bad_site, _BROKEN)
    assert out["exact"]
    assert out["seeded"]
    assert out["warnings"] == [
        "repro_ctx could not load the source plugin of entry point broken = "
        "no_such_module_for_repro_ctx:source: ModuleNotFoundError: No module named "
        "'no_such_module_for_repro_ctx'. Scopes go on without it.",
        "repro_ctx source plugin 'badrestore' (entry point badrestore = badrestore:source): "
        "restore raised RuntimeError: badrestore cannot restore. It is left out of every "
        "later scope; the other sources are not affected (fix the plugin and register it "
        "again).",
    ]
    assert out["report"] == {
        "toylib": {"from": "entry point toylib = toylib.repro:source", "status": "active",
                   "state_dict": "yes"},
        "badrestore": {"from": "entry point badrestore = badrestore:source",
                       "status": "dropped: restore raised RuntimeError: badrestore cannot "
                                 "restore"},
        "entry point broken = no_such_module_for_repro_ctx:source": {
            "from": "entry point broken = no_such_module_for_repro_ctx:source",
            "status": "failed to load: ModuleNotFoundError: No module named "
                      "'no_such_module_for_repro_ctx'"},
    }
    assert out["sources"] == ["registered generators", "toylib"]


# --------------------------------------------------------------------------
# The loader, in this process
# --------------------------------------------------------------------------


@pytest.fixture
def fresh_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A site on sys.path, and a loader that has not run yet; both undone afterwards."""
    site = make_site(tmp_path / "site", broken=True, extra={
        "not-callable": "toylib:__doc__",
        "not-a-source": "toylib:draw",
    })
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    modules = set(sys.modules)
    with registry_preserved():
        yield site
    for name in set(sys.modules) - modules:
        if name.split(".")[0] in ("toylib", "badrestore"):
            del sys.modules[name]


def test_the_loader_runs_once_and_reports_every_failure(fresh_loader: Path) -> None:
    with pytest.warns(SourcePluginWarning) as record:
        report = registry.plugin_report()  # loads the entry points
    assert len(record) == 3
    assert report["toylib"]["status"] == "active"
    assert report["badrestore"]["status"] == "active"
    failures = {key: value["status"] for key, value in report.items()
                if value["status"].startswith("failed")}
    assert failures == {
        "entry point broken = no_such_module_for_repro_ctx:source":
            "failed to load: ModuleNotFoundError: No module named "
            "'no_such_module_for_repro_ctx'",
        "entry point not-a-source = toylib:draw":
            "failed to load: TypeError: expected a source: an object with a name (str) and "
            "capture(), seed(seed) and restore(snapshot) methods, optionally "
            "to_plain(snapshot) and from_plain(data) (see repro_ctx.Source); float has name "
            "is NoneType None, not a str, no capture() method, no seed() method, "
            "no restore() method",
        "entry point not-callable = toylib:__doc__":
            "failed to load: TypeError: toylib:__doc__ is a str; expected a zero-argument "
            "callable returning a source",
    }
    registry.load_entry_points()  # once per process: no second warning, no duplicate
    assert [plugin.name for plugin in registry.active_plugins()] == ["badrestore", "toylib"]
    names = [source.name for source in default_sources()]
    assert names[-2:] == ["badrestore", "toylib"]
    with pytest.warns(SourcePluginWarning, match="'badrestore'"), deterministic(0):
        pass
    assert [plugin.name for plugin in registry.active_plugins()] == ["toylib"]


def test_a_registered_name_keeps_an_entry_point_out(fresh_loader: Path) -> None:
    from repro_ctx import register_source, unregister_source

    class Mine:
        name = "toylib"

        def capture(self) -> None: ...

        def seed(self, seed: int) -> None: ...

        def restore(self, snapshot: object) -> None: ...

    mine = Mine()
    register_source(mine)
    with pytest.warns(SourcePluginWarning) as record:
        registry.load_entry_points()
    assert ("toylib.repro:source: ValueError: a source named 'toylib' is already registered"
            in "\n".join(str(w.message) for w in record))
    assert registry.plugin_report()["toylib"]["from"] == "register_source()"
    unregister_source(mine)
