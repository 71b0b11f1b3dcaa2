"""Environment variables a scope sets for what it starts or first initialises."""

from __future__ import annotations

from typing import Final

from ._environ_access import EnvironAccess
from ._seed import hash_seed
from ._source import Plan, WritesDifferences

CUBLAS_WORKSPACE_CONFIG: Final = ":4096:8"


class EnvironmentSource(WritesDifferences):
    """``CUBLAS_WORKSPACE_CONFIG`` and ``PYTHONHASHSEED``.

    cuBLAS reads its workspace setting once, at its first use, and
    ``PYTHONHASHSEED`` only affects new interpreters; setting both inside the
    scope makes CUDA first used there, and child processes started there,
    deterministic. A value the user already set is never overridden for
    ``CUBLAS_WORKSPACE_CONFIG``. Unset variables come back unset.
    """

    name = "environment"
    variables = ("CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED")

    def __init__(self) -> None:
        self._environ = EnvironAccess(self.variables)

    def capture(self) -> tuple[str | None, ...]:
        return self._environ.get_all()

    def seed(self, snapshot: object, plan: Plan) -> None:
        assert isinstance(snapshot, tuple)
        if plan.wants_determinism and snapshot[0] is None:
            self._environ.set("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
        if plan.seed is not None:
            value = hash_seed(plan.seed)
            if snapshot[1] != value:
                self._environ.set("PYTHONHASHSEED", value)

    def _write(self, current: tuple[str | None, ...], snapshot: object, remember: bool) -> None:
        assert isinstance(snapshot, tuple)
        environ = self._environ
        for name, now, value in zip(self.variables, current, snapshot):
            if now != value:
                if value is None:
                    environ.delete(name)
                else:
                    environ.set(name, value)
