"""Environment variables that decide determinism: every one a scope puts back exactly.

A scope sets two of them itself, for what it starts or first initialises:
cuBLAS reads its workspace setting once, at its first use, and
``PYTHONHASHSEED`` only affects new interpreters. The others are set by
libraries' own determinism helpers (Lightning's ``seed_everything``,
transformers' ``enable_full_determinism``, torchtitan's batch-invariant mode)
when they run inside a scope; left set after it, they would change everything
that runs later. All of them are captured on entry and come back exactly on
exit: an unset variable comes back unset.

A scope never sets the launch-blocking variables (they serialise every
kernel, a debugging aid), nor HCCL's or NCCL's: NCCL reads ``NCCL_ALGO`` and
``NCCL_PROTO`` when a communicator is created, at a process group's first
collective, which a scope entered later cannot reach, and pinning them costs
bandwidth on every collective. Set them before ``init_process_group`` when
cross-rank reductions must be bitwise stable; a scope puts back whatever it
found.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from ..core.plain import Plain, Resolved, check_plain, expect
from ..core.seed import hash_seed
from ..core.source import Plan, WritesDifferences
from .environ_access import EnvironAccess

CUBLAS_WORKSPACE_CONFIG: Final = ":4096:8"


class ScopedVariable(NamedTuple):
    name: str
    reason: str
    """One line: why it decides determinism, and who sets it."""


SCOPED_VARIABLES: Final = (
    ScopedVariable(
        "CUBLAS_WORKSPACE_CONFIG",
        "cuBLAS reads it once, at first use: ':4096:8' makes its reductions deterministic "
        "(a scope that asks for deterministic algorithms sets it, unless it is set)",
    ),
    ScopedVariable(
        "PYTHONHASHSEED",
        "str and bytes hashing in interpreters started from here "
        "(a seeded scope sets it to the seed's hash seed)",
    ),
    ScopedVariable(
        "PL_GLOBAL_SEED",
        "Lightning's seed_everything records its seed here; Lightning's workers and "
        "reset_seed() reseed from it",
    ),
    ScopedVariable(
        "PL_SEED_WORKERS",
        "Lightning's seed_everything(workers=...) sets it: whether Lightning seeds "
        "DataLoader workers",
    ),
    ScopedVariable(
        "CUDA_LAUNCH_BLOCKING",
        "transformers' enable_full_determinism sets it to 1: synchronous CUDA launches",
    ),
    ScopedVariable(
        "FLASH_ATTENTION_DETERMINISTIC",
        "transformers' enable_full_determinism sets it to 1: flash-attention's "
        "deterministic backward",
    ),
    ScopedVariable(
        "ASCEND_LAUNCH_BLOCKING",
        "transformers' enable_full_determinism sets it to 1: synchronous Ascend NPU launches",
    ),
    ScopedVariable(
        "HCCL_DETERMINISTIC",
        "transformers' enable_full_determinism sets it to 1: deterministic HCCL "
        "collectives on Ascend NPUs",
    ),
    ScopedVariable(
        "NCCL_ALGO",
        "NCCL's collective algorithm, read when a communicator is created: it decides the "
        "order in which ranks' values are summed (torchtitan's batch-invariant mode sets "
        "'allreduce:tree')",
    ),
    ScopedVariable(
        "NCCL_PROTO",
        "NCCL's protocol, read when a communicator is created: LL and LL128 may reorder "
        "reductions (torchtitan's batch-invariant mode sets 'Simple')",
    ),
)
"""Every variable a scope captures and restores, in snapshot order."""

SCOPED_NAMES: Final = tuple(variable.name for variable in SCOPED_VARIABLES)
_NAMES: Final = SCOPED_NAMES
_CUBLAS: Final = _NAMES.index("CUBLAS_WORKSPACE_CONFIG")
_HASH_SEED: Final = _NAMES.index("PYTHONHASHSEED")


class EnvironmentSource(WritesDifferences):
    """The variables of ``SCOPED_VARIABLES``, captured as one tuple of values (``None``: unset).

    Seeding sets only ``CUBLAS_WORKSPACE_CONFIG`` (never overriding a value
    the user set) and ``PYTHONHASHSEED``; the others are only restored.
    """

    name = "environment"
    variables: tuple[str, ...] = _NAMES

    def __init__(self) -> None:
        self._environ = EnvironAccess(self.variables)

    def capture(self) -> tuple[str | None, ...]:
        return self._environ.get_all()

    def seed(self, snapshot: object, plan: Plan) -> None:
        assert isinstance(snapshot, tuple)
        if plan.wants_determinism and snapshot[_CUBLAS] is None:
            self._environ.set("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
        if plan.seed is not None:
            value = hash_seed(plan.seed)
            if snapshot[_HASH_SEED] != value:
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

    def describe(self) -> dict[str, object]:
        """Each variable's value here (``None``: unset), for ``repro-ctx`` reports."""
        return dict(zip(self.variables, self.capture()))

    # -- plain data: name -> value, None for unset ---------------------------------

    kind = "environment"

    def to_plain(self, snapshot: object) -> Plain:
        assert isinstance(snapshot, tuple)
        return dict(zip(self.variables, snapshot, strict=True))

    @staticmethod
    def check(data: object) -> Plain:
        out = check_plain(data, "environment")
        expect(out, dict, "environment", "a dict of variable name -> str or None")
        for name, value in out.items():
            expect(value, (str, type(None)), f"environment[{name!r}]", "a str or None")
        return out

    def resolve(self, data: Plain) -> Resolved:
        """Only a state captured in this process restores variables (see ``RNGState.restore``)."""
        current = self.capture()
        variables = self.variables
        mismatches = [f"{name} was not captured" for name in variables if name not in data]
        mismatches += [f"{name} is not covered here" for name in data if name not in variables]
        values = tuple(data.get(name, now) for name, now in zip(variables, current, strict=True))
        return Resolved(values, tuple(mismatches))

    @staticmethod
    def items(data: Plain) -> dict[str, Plain]:
        return dict(data)
