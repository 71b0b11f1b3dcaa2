"""pytest plugin: ``@pytest.mark.deterministic``, ``--repro-seed`` and ``--repro-leaks``.

It is registered through the ``pytest11`` entry point, so it is loaded in every
pytest run of anyone who has repro_ctx installed. Importing it therefore
imports nothing heavy, and with no option and no marker it changes nothing:
torch is imported only once a test needs a scope or a leak check.

How a test's scope is placed. An autouse fixture of the plugin is the first
function-scoped fixture a test sets up and the last it tears down, so the
scope covers the test's own fixtures but not module- or session-scoped ones.
pytest-randomly reseeds ``random`` and NumPy between the end of setup and the
test function: when it is active, that is undone right before the function
runs, so the test body continues from the state its fixtures left (without
it, nothing runs there, and the plugin takes no snapshot for it). An error
leaving the test function gets the scope's note (torch's "no deterministic
implementation") there, before pytest reports it.

Per test: one scope; ``--repro-leaks`` adds one capture after the test,
compared with the scope's entry snapshots (without a scope, with a capture
before it). ``warn`` leaks ride on the teardown report (across xdist) and are
shown once, grouped, in the terminal summary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pytest

from ..core.error_notes import ALGORITHMS_NOTE, add_note, add_scope_notes
from ..core.scope import close_scope, open_scope
from ..diagnose.leaks import ALL, summary_lines
from ..diagnose.leaks import StateLeakWarning as StateLeakWarning  # -W error::...
from ..scopes.deterministic import deterministic
from .arguments import seed_argument
from .pytest_leaks import LeakCheck

if TYPE_CHECKING:
    from ..core.scope import Activation
    from ..core.source import Source
    from ..scopes.deterministic import deterministic

_LEAK_MODES: Final = ("off", "warn", "fail")


_LAST: Final = "last"
_CACHE_KEY: Final = "repro_ctx/seed"
_MARKER_NOTE: Final = (
    "repro_ctx (pytest): to run this test with that warning, mark it "
    '@pytest.mark.deterministic(algorithms="warn"); @pytest.mark.no_deterministic takes it '
    "out of --repro-seed's scope."
)


@dataclass(frozen=True)
class _Options:
    seed: int | None
    leaks: str
    randomly: bool
    """pytest-randomly is active and reseeds ``random`` and NumPy around every phase."""
    allowed: frozenset[str]
    """``repro_leaks_allow`` and ``--repro-leaks-allow``: sources and flags never reported."""


_OPTIONS = pytest.StashKey[_Options]()
_RUN = pytest.StashKey["_ScopedRun"]()
_LEAKED = pytest.StashKey[list[str]]()
_SUMMARY: dict[str, list[str]] = {}
"""``--repro-leaks=warn``: each leak (as reported) -> the ids of the tests that left it."""


def _allowed(item: pytest.Item, options: _Options) -> frozenset[str]:
    """What ``--repro-leaks`` does not report for ``item``: the ini value, option and marks."""
    allowed = set(options.allowed)
    for marker in item.iter_markers("allow_leaks"):
        allowed.update([str(name) for name in marker.args] if marker.args else [ALL])
    return frozenset(allowed)


def _seed_option(text: str) -> int | str:
    if text.strip() == _LAST:
        return _LAST
    return seed_argument(text)


def _seed(config: pytest.Config) -> int | None:
    """``--repro-seed``; ``last`` is the seed of the previous run, from pytest's cache."""
    seed: int | str | None = config.getoption("repro_seed")
    cache = getattr(config, "cache", None)
    if seed == _LAST:
        if cache is None:
            raise pytest.UsageError(
                "--repro-seed=last reads the previous run's seed from pytest's cache, "
                "which is disabled (-p no:cacheprovider): pass the seed itself"
            )
        last = cache.get(_CACHE_KEY, None)
        if not isinstance(last, int):
            raise pytest.UsageError(
                "--repro-seed=last: no earlier run with --repro-seed=N in this project's "
                "pytest cache; pass a seed, e.g. --repro-seed=0"
            )
        seed = last
    assert seed is None or isinstance(seed, int)
    if seed is not None and cache is not None and not hasattr(config, "workerinput"):
        cache.set(_CACHE_KEY, seed)  # xdist's workers read it, the controller writes it
    return seed


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("repro_ctx", "repro_ctx: scoped reproducibility")
    group.addoption(
        "--repro-seed",
        type=_seed_option,
        default=None,
        metavar="N",
        help="run every test in its own repro_ctx.deterministic scope, seeded from N and the "
        "test's node id (so a test's results do not depend on test order); 'last' reuses "
        "the previous run's N. @pytest.mark.deterministic options and seeds take precedence.",
    )
    group.addoption(
        "--repro-leaks",
        choices=_LEAK_MODES,
        default="off",
        help="report every test that leaves global RNG-affecting state (RNG states, torch "
        "determinism and precision flags, CUBLAS_WORKSPACE_CONFIG, PYTHONHASHSEED) changed: "
        "'warn' issues a StateLeakWarning (shown grouped, at the end), 'fail' errors the test "
        "at teardown.",
    )
    group.addoption(
        "--repro-leaks-allow",
        action="append",
        default=[],
        metavar="NAME",
        help="a source (e.g. 'torch (cpu)', 'random') or flag that --repro-leaks never reports; "
        "repeatable, added to the repro_leaks_allow ini value.",
    )
    parser.addini(
        "repro_leaks_allow",
        "sources (e.g. 'torch (cpu)') and flags that --repro-leaks never reports, one a line",
        type="linelist",
        default=[],
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
    config.addinivalue_line(
        "markers",
        "allow_leaks(*names): --repro-leaks does not report what this test leaves changed in "
        "these sources or flags (e.g. 'torch (cpu)'); with no name, in any.",
    )
    randomly = config.pluginmanager.hasplugin("randomly") and bool(
        config.getoption("randomly_reset_seed", default=False)
    )
    allowed = [*config.getini("repro_leaks_allow"), *config.getoption("repro_leaks_allow")]
    config.stash[_OPTIONS] = _Options(
        seed=_seed(config),
        leaks=config.getoption("repro_leaks"),
        randomly=randomly,
        allowed=frozenset(name.strip() for name in allowed if name.strip()),
    )
    _SUMMARY.clear()


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

    __slots__ = ("activation", "after_setup", "scope", "sources")

    def __init__(self, scope: deterministic) -> None:
        self.scope = scope
        self.sources = scope.sources()
        self.activation: Activation | None = None
        self.after_setup: list[object] | None = None
        """The state the fixtures left, for the test function to start from (pytest-randomly)."""

    def open(self) -> None:
        self.activation = open_scope(self.scope, self.scope.effective_plan(), self.sources)

    def setup_done(self) -> None:
        self.after_setup = [source.capture() for source in self.sources]

    def rewind(self) -> None:
        """Undo what ran between the end of setup and the test function (pytest-randomly)."""
        after_setup, self.after_setup = self.after_setup, None
        if after_setup is not None:
            for source, snapshot in zip(reversed(self.sources), reversed(after_setup)):
                source.restore(snapshot)

    def opened(self) -> tuple[tuple[Source, ...], list[object]] | None:
        """The sources and the snapshots the open scope took on entry."""
        if self.activation is None:
            return None
        return self.sources, self.activation.snapshots

    def close(self) -> None:
        self.after_setup = None
        if self.activation is not None:
            activation, self.activation = self.activation, None
            close_scope(activation)


@pytest.fixture(autouse=True)
def _repro_ctx_scope(request: pytest.FixtureRequest) -> Iterator[deterministic | None]:
    """Open the test's scope and take the leak check's first snapshot (see the module doc).

    Autouse plugin fixtures are set up before any other function-scoped
    fixture and torn down after them.
    """
    item = request.node
    options = request.config.stash[_OPTIONS]
    scope = _scope_for(item, options)
    run = None
    if scope is not None:
        run = _ScopedRun(scope)
        run.open()
        item.stash[_RUN] = run
    check = None
    if options.leaks != "off":
        check = LeakCheck(_allowed(item, options), options.randomly, run.opened() if run else None)
    try:
        yield scope
    finally:
        try:
            if run is not None:
                run.close()
        finally:
            if check is not None:
                leaked = check.finish(item, options.leaks)
                if leaked:
                    item.stash[_LEAKED] = leaked


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
    if item.config.stash[_OPTIONS].randomly:  # only pytest-randomly's reseeding is undone
        run = item.stash.get(_RUN, None)
        if run is not None:
            run.setup_done()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Right before the test function: after every plugin's ``pytest_runtest_call``.

    An error leaving the test gets the scope's note here, before pytest
    reports it: the scope itself closes later, in the fixture's teardown.
    """
    run = pyfuncitem.stash.get(_RUN, None)
    if run is None:
        return (yield)
    run.rewind()
    try:
        return (yield)
    except BaseException as error:
        activation = run.activation
        if activation is not None:
            add_scope_notes(activation.plan, error)
            if ALGORITHMS_NOTE in getattr(error, "__notes__", ()):
                add_note(error, _MARKER_NOTE)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        run = item.stash.get(_RUN, None)
        if run is not None:
            run.close()  # normally closed already, by the fixture's teardown
            del item.stash[_RUN]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Carry a test's leaks (``--repro-leaks=warn``) on its teardown report, across xdist."""
    report = yield
    if call.when == "teardown":
        leaked = item.stash.get(_LEAKED, None)
        if leaked is not None:
            report.repro_ctx_leaks = leaked  # type: ignore[attr-defined]
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    leaked = getattr(report, "repro_ctx_leaks", None)
    if leaked:
        for change in leaked:
            _SUMMARY.setdefault(change, []).append(report.nodeid)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _SUMMARY:
        return
    leaks, tests = dict(_SUMMARY), {test for ids in _SUMMARY.values() for test in ids}
    _SUMMARY.clear()
    terminalreporter.section("repro_ctx: global state left changed (--repro-leaks=warn)")
    terminalreporter.line(summary_lines(leaks, len(tests)))
