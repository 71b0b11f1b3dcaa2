"""Seed validation and the derivations that turn one scope seed into many streams.

Everything here is pure and cheap: it runs on every scope entry.
"""

from __future__ import annotations

import operator
import os
from typing import Final, SupportsIndex, cast

SEED_LIMIT: Final = 2**64
"""Seeds are integers in ``[0, 2**64)``: the range ``torch.manual_seed`` accepts."""

_NUMPY_LEGACY_LIMIT: Final = 2**32
_UINT32_MASK: Final = 0xFFFF_FFFF

ENV_SEED_VARIABLE: Final = "REPRO_CTX_SEED"
"""Environment variable through which ``repro-ctx run`` hands its seed to a program."""

# Spawn-key namespaces for streams derived from a scope seed, so that a passed
# generator, a registered generator, a source plugin and a per-rank stream never
# share one. The numbers key users' streams: never renumber or reuse one (4 is
# retired).
PASSED_GENERATORS_KEY: Final = 1
REGISTERED_GENERATORS_KEY: Final = 2
RANK_KEY: Final = 3
WORKER_KEY: Final = 5
PLUGIN_SOURCES_KEY: Final = 6
PER_SAMPLE_KEY: Final = 7


def check_seed(seed: object, *, what: str = "seed") -> int:
    """Return ``seed`` as an ``int`` or raise the error that says what is accepted.

    ``bool`` is rejected even though it is an ``int``: ``seed=True`` is almost
    always a mistake for ``algorithms=True``.
    """
    if isinstance(seed, bool) or not hasattr(type(seed), "__index__"):
        raise TypeError(
            f"{what} must be an int in [0, 2**64) or None, got {type(seed).__name__} {seed!r}"
        )
    value = operator.index(cast("SupportsIndex", seed))
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{what} must be in [0, 2**64), got {value}")
    return value


def numpy_legacy_seed(seed: int) -> int | list[int]:
    """The argument for ``np.random.seed`` that corresponds to ``seed``.

    Seeds below 2**32 are passed through unchanged, so a scope matches the
    recipe ``random.seed(s); np.random.seed(s); torch.manual_seed(s)``.
    Larger seeds, which NumPy's legacy seeding rejects as an int, become the
    key ``[low, high, 1]`` for MT19937's ``init_by_array``: injective, so
    distinct 64-bit seeds never share a NumPy stream. The trailing ``1`` keeps
    NumPy apart from ``random``: ``random.seed(s)`` runs the same
    ``init_by_array`` on ``s``'s 32-bit words, ``[low, high]``, and with that
    key both modules would draw the very same numbers.
    """
    if seed < _NUMPY_LEGACY_LIMIT:
        return seed
    return [seed & _UINT32_MASK, seed >> 32, 1]


def hash_seed(seed: int) -> str:
    """The ``PYTHONHASHSEED`` value a scope with ``seed`` sets for child processes.

    ``PYTHONHASHSEED`` accepts ``0..4294967295`` where ``0`` disables hash
    randomisation; the derivation therefore lands in ``1..4294967295``.
    """
    return str(seed % _UINT32_MASK + 1)


def env_seed(default: int = 0) -> int:
    """The seed handed down by ``repro-ctx run`` (``REPRO_CTX_SEED``), else ``default``.

    A value that is not a valid seed raises the same error as a bad literal seed.
    """
    raw = os.environ.get(ENV_SEED_VARIABLE)
    if raw is None:
        return check_seed(default, what="default")
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        raise ValueError(
            f"{ENV_SEED_VARIABLE} must be an int in [0, 2**64), got {raw!r}"
        ) from None
    return check_seed(value, what=ENV_SEED_VARIABLE)


def rank_seed(seed: int, rank: int) -> int:
    """An independent 64-bit seed for ``rank``, derived from ``(seed, rank)``.

    ``SeedSequence`` keeps (seed 0, rank 1) and (seed 1, rank 0) apart, which
    ``seed + rank`` does not.
    """
    import numpy as np

    words = np.random.SeedSequence(seed, spawn_key=(RANK_KEY, rank)).generate_state(1, np.uint64)
    return int(words[0])


def current_rank() -> int:
    """This process's torch.distributed rank; 0 outside a process group.

    Before the group is initialised, the ``RANK`` variable that torchrun sets
    is used, so scopes entered before ``init_process_group`` agree with those
    entered after it.
    """
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    raw = os.environ.get("RANK", "0")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"RANK must be an integer rank, got {raw!r}") from None
