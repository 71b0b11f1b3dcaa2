"""pytest plugin: ``@pytest.mark.deterministic``, ``--repro-seed`` and ``--repro-leaks``.

It is registered through the ``pytest11`` entry point, so it is loaded in every
pytest run of anyone who has repro_ctx installed. Importing it therefore
imports nothing heavy, and with no option and no marker it changes nothing:
torch is imported only once a test needs a scope or a leak check.

How a test's scope is placed. An autouse fixture of the plugin is the first
function-scoped fixture a test sets up and the last it tears down, so the
scope covers the test's own fixtures but not module- or session-scoped ones.
What other plugins do to the state between the end of setup and the test
function (pytest-randomly reseeds ``random`` and NumPy there) is undone right
before the function runs, so the test body continues from the state its
fixtures left; and it happens inside the scope, so it does not outlive it.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pytest

from ..core.scope import close_scope, open_scope
from ..diagnose.leaks import StateLeakWarning, capture, changes, checked_sources, report
from ..scopes.deterministic import deterministic
from ..sources.default_set import default_sources
from .arguments import seed_argument

if TYPE_CHECKING:
    from ..core.scope import Activation
    from ..scopes.deterministic import deterministic

_LEAK_MODES: Final = ("off", "warn", "fail")


@dataclass(frozen=True)
class _Options:
    seed: int | None
    leaks: str
    randomly: bool
    """pytest-randomly is active and reseeds ``random`` and NumPy around every phase."""


_OPTIONS = pytest.StashKey[_Options]()
_RUN = pytest.StashKey["_ScopedRun"]()


def _seed_option(text: str) -> int:
    return seed_argument(text)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("repro_ctx", "repro_ctx: scoped reproducibility")
    group.addoption(
        "--repro-seed",
        type=_seed_option,
        default=None,
        metavar="N",
        help="run every test in its own repro_ctx.deterministic scope, seeded from N and the "
        "test's node id (so a test's results do not depend on test order). "
        "@pytest.mark.deterministic options and seeds take precedence.",
    )
    group.addoption(
        "--repro-leaks",
        choices=_LEAK_MODES,
        default="off",
        help="report every test that leaves global RNG-affecting state (RNG states, torch "
        "determinism and precision flags, CUBLAS_WORKSPACE_CONFIG, PYTHONHASHSEED) changed: "
        "'warn' issues a StateLeakWarning, 'fail' errors the test at teardown.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "deterministic(seed=0, *, algorithms=True, benchmark=False, tf32=False, ...): run the "
        "test (with its function-scoped fixtures) inside repro_ctx.deterministic(...); without "
        "a seed, the --repro-seed derived seed (or 0) is used.",
    )
    config.addinivalue_line(
        "markers",
        "no_deterministic: do not run this test in a --repro-seed scope (for tests whose "
        "own threads open scopes while the test waits for them: scopes are serialised "
        "across threads, so that would deadlock).",
    )
    randomly = config.pluginmanager.hasplugin("randomly") and bool(
        config.getoption("randomly_reset_seed", default=False)
    )
    config.stash[_OPTIONS] = _Options(
        seed=config.getoption("repro_seed"),
        leaks=config.getoption("repro_leaks"),
        randomly=randomly,
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    options = config.stash[_OPTIONS]
    lines = []
    if options.seed is not None:
        lines.append(
            f"repro_ctx: --repro-seed={options.seed} (each test's seed is derived from it "
            "and the test's node id)"
        )
    if options.leaks != "off":
        line = f"repro_ctx: --repro-leaks={options.leaks}"
        if options.randomly:
            line += (
                " (random and numpy.random are left to pytest-randomly, which resets them "
                "for every test)"
            )
        lines.append(line)
    return lines


def node_seed(base: int, node_id: str) -> int:
    """The seed of test ``node_id`` under ``--repro-seed=base``.

    ``SeedSequence`` mixes ``base`` with a stable hash of the node id (not
    ``hash()``, which changes with ``PYTHONHASHSEED``), so a test's seed is
    the same in every run, on every xdist worker, whatever the order.
    """
    import numpy as np

    digest = hashlib.sha256(node_id.encode("utf-8", "surrogatepass")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    state = np.random.SeedSequence([*words, base]).generate_state(1, np.uint64)
    return int(state[0])


def _scope_for(item: pytest.Item, options: _Options) -> deterministic | None:
    marker = item.get_closest_marker("deterministic")
    if marker is None and (options.seed is None or item.get_closest_marker("no_deterministic")):
        return None

    if marker is None:
        assert options.seed is not None
        return deterministic(node_seed(options.seed, item.nodeid))
    args: tuple[Any, ...] = marker.args
    kwargs: dict[str, Any] = dict(marker.kwargs)
    if not args and "seed" not in kwargs and options.seed is not None:
        kwargs["seed"] = node_seed(options.seed, item.nodeid)
    try:
        return deterministic(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        message = f"@pytest.mark.deterministic on {item.nodeid}: {type(exc).__name__}: {exc}"
    pytest.fail(message, pytrace=False)


class _ScopedRun:
    """One test's scope, open from its first function-scoped fixture to its last teardown."""

    def __init__(self, scope: deterministic) -> None:
        self.scope = scope
        self.sources = scope.sources()
        self.activation: Activation | None = None
        self.after_setup: list[object] | None = None
        """The state the fixtures left, for the test function to start from."""

    def open(self) -> None:
        self.activation = open_scope(self.scope, self.scope.effective_plan(), self.sources)

    def setup_done(self) -> None:
        self.after_setup = [source.capture() for source in self.sources]

    def rewind(self) -> None:
        """Undo what ran between the end of setup and the test function (other plugins)."""
        after_setup, self.after_setup = self.after_setup, None
        if after_setup is not None:
            for source, snapshot in zip(reversed(self.sources), reversed(after_setup)):
                source.restore(snapshot)

    def close(self) -> None:
        self.after_setup = None
        if self.activation is not None:
            activation, self.activation = self.activation, None
            close_scope(activation)


class _LeakCheck:
    """Snapshots of the checked sources before a test, to compare with after it."""

    def __init__(self, options: _Options) -> None:

        self.sources = checked_sources(default_sources(), randomly=options.randomly)
        self.before = capture(self.sources)

    def finish(self, item: pytest.Item, mode: str) -> None:
        found = changes(self.sources, self.before, capture(self.sources))
        if not found:
            return
        message = report(item.nodeid, found)
        if mode == "fail":
            pytest.fail(message, pytrace=False)
        lineno = item.location[1]
        warnings.warn_explicit(
            StateLeakWarning(message), StateLeakWarning, str(item.path), (lineno or 0) + 1
        )


@pytest.fixture(autouse=True)
def _repro_ctx_scope(request: pytest.FixtureRequest) -> Iterator[deterministic | None]:
    """Open the test's scope and take the leak check's first snapshot (see the module doc).

    Autouse plugin fixtures are set up before any other function-scoped
    fixture and torn down after them.
    """
    item = request.node
    options = request.config.stash[_OPTIONS]
    scope = _scope_for(item, options)
    check = _LeakCheck(options) if options.leaks != "off" else None
    run = None
    if scope is not None:
        run = _ScopedRun(scope)
        run.open()
        item.stash[_RUN] = run
    try:
        yield scope
    finally:
        try:
            if run is not None:
                run.close()
        finally:
            if check is not None:
                check.finish(item, options.leaks)


@pytest.fixture
def repro_scope(_repro_ctx_scope: deterministic | None) -> deterministic | None:
    """The repro_ctx ``deterministic`` scope this test runs in, or None.

    A test runs in a scope when it is marked ``@pytest.mark.deterministic(...)``
    or pytest runs with ``--repro-seed``.
    """
    return _repro_ctx_scope


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    result = yield
    run = item.stash.get(_RUN, None)
    if run is not None:
        run.setup_done()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Right before the test function: after every plugin's ``pytest_runtest_call``."""
    run = pyfuncitem.stash.get(_RUN, None)
    if run is not None:
        run.rewind()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        run = item.stash.get(_RUN, None)
        if run is not None:
            run.close()  # normally closed already, by the fixture's teardown
            del item.stash[_RUN]
