"""@reproducible on a unittest.TestCase subclass: one scope per test, setUp and tearDown inside."""

from __future__ import annotations

import random
import unittest
from typing import Any

import pytest
import torch

from repro_ctx import deterministic, reproducible
from repro_ctx.core.scope import open_activations
from tests.global_state import draws, full_state

pytest_plugins = ["pytester"]

Draws = tuple[float, float, float]


def _run(*cases: unittest.TestCase) -> unittest.TestResult:
    result = unittest.TestResult()
    unittest.TestSuite(cases).run(result)
    return result


def _seeded(seed: int, count: int) -> list[Draws]:
    with deterministic(seed):
        return [draws() for _ in range(count)]


def test_each_test_runs_in_its_own_scope_with_setup_and_teardown_inside() -> None:
    log: list[tuple[str, Draws]] = []

    @reproducible(seed=4)
    class Case(unittest.TestCase):
        def setUp(self) -> None:
            log.append(("setUp", draws()))
            torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark

        def tearDown(self) -> None:
            log.append(("tearDown", draws()))

        def test_one(self) -> None:
            log.append(("test", draws()))

        def test_two(self) -> None:
            log.append(("test", draws()))
            self.addCleanup(lambda: log.append(("cleanup", draws())))

    before = full_state()
    result = _run(Case("test_one"), Case("test_two"))
    assert result.wasSuccessful(), result.errors + result.failures
    assert full_state() == before
    expected = _seeded(4, 4)
    assert log == [
        ("setUp", expected[0]), ("test", expected[1]), ("tearDown", expected[2]),
        ("setUp", expected[0]), ("test", expected[1]), ("tearDown", expected[2]),
        ("cleanup", expected[3]),
    ]


def test_a_failing_setup_or_test_still_restores() -> None:
    @reproducible(seed=0)
    class Case(unittest.TestCase):
        def setUp(self) -> None:
            draws()
            torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
            if self._testMethodName == "test_setup_fails":
                raise RuntimeError("setUp failed")

        def test_setup_fails(self) -> None:
            pytest.fail("not reached")  # pragma: no cover

        def test_fails(self) -> None:
            draws()
            self.fail("the test failed")

        def test_errors(self) -> None:
            raise KeyError("boom")

    before = full_state()
    result = _run(Case("test_setup_fails"), Case("test_fails"), Case("test_errors"))
    assert len(result.errors) == 2
    assert len(result.failures) == 1
    assert full_state() == before
    assert open_activations() == ()


def test_an_interrupted_test_still_restores() -> None:
    @reproducible(seed=0)
    class Case(unittest.TestCase):
        def test_interrupted(self) -> None:
            draws()
            torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
            raise KeyboardInterrupt

    before = full_state()
    with pytest.raises(KeyboardInterrupt):
        _run(Case("test_interrupted"))
    assert full_state() == before
    assert open_activations() == ()


def test_setupclass_and_teardownclass_run_in_their_own_scopes() -> None:
    log: list[tuple[str, Draws]] = []

    @reproducible(seed=7)
    class Case(unittest.TestCase):
        @classmethod
        def setUpClass(cls) -> None:
            log.append(("setUpClass", draws()))
            torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark

        @classmethod
        def tearDownClass(cls) -> None:
            log.append(("tearDownClass", draws()))

        def test_one(self) -> None:
            log.append(("test", draws()))

    before = full_state()
    assert _run(Case("test_one")).wasSuccessful()
    assert full_state() == before
    first = _seeded(7, 1)[0]
    assert log == [("setUpClass", first), ("test", first), ("tearDownClass", first)]


def test_a_failing_setupclass_still_restores() -> None:
    @reproducible(seed=0)
    class Case(unittest.TestCase):
        @classmethod
        def setUpClass(cls) -> None:
            draws()
            torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
            raise RuntimeError("setUpClass failed")

        def test_one(self) -> None:
            pytest.fail("not reached")  # pragma: no cover

    before = full_state()
    result = _run(Case("test_one"))
    assert len(result.errors) == 1
    assert "setUpClass failed" in result.errors[0][1]
    assert full_state() == before
    assert open_activations() == ()


def test_inherited_class_hooks_and_subclasses() -> None:
    log: list[str] = []

    class Base(unittest.TestCase):
        @classmethod
        def setUpClass(cls) -> None:
            log.append(f"setUpClass {cls.__name__}")

    @reproducible(seed=1)
    class Case(Base):
        def test_one(self) -> None:
            log.append(f"test {random.random()}")

    class Sub(Case):
        pass

    with deterministic(1):
        expected = random.random()
    before = full_state()
    assert _run(Case("test_one"), Sub("test_one")).wasSuccessful()
    assert full_state() == before
    assert log == [
        "setUpClass Case", f"test {expected}", "setUpClass Sub", f"test {expected}",
    ]


def test_only_methods_with_the_loaders_prefix_are_scoped() -> None:
    @reproducible(seed=1)
    class Case(unittest.TestCase):
        def runTest(self) -> None:
            random.random()

    random.seed(5)
    assert _run(Case()).wasSuccessful()
    advanced = random.random()
    random.seed(5)
    random.random()
    assert advanced == random.random()  # the unscoped test drew from the caller's stream


def test_a_callable_seed_receives_the_test_case_or_the_class() -> None:
    seen: list[Any] = []

    def seed_of(case: Any) -> int:
        seen.append(case)
        return 3

    @reproducible(seed=seed_of)
    class Case(unittest.TestCase):
        values: list[float] = []  # noqa: RUF012

        def test_one(self) -> None:
            self.values.append(random.random())

    case = Case("test_one")
    assert _run(case).wasSuccessful()
    with deterministic(3):
        assert Case.values == [random.random()]
    assert seen == [Case, case, Case]


def test_pytest_runs_a_decorated_testcase(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import random
        import unittest
        from repro_ctx import deterministic, reproducible

        with deterministic(2):
            EXPECTED = random.random()
        random.seed(11)
        BEFORE = random.getstate()

        @reproducible(seed=2)
        class Case(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                cls.first = random.random()

            def test_one(self):
                assert self.first == EXPECTED
                assert random.random() == EXPECTED

        def test_restored():
            assert random.getstate() == BEFORE
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
