"""RNG state across torch.distributed ranks: check that ranks agree, and checkpoint per rank.

``deterministic(seed)`` gives every rank the same streams (identical model
initialisation); ``deterministic(seed, per_rank=True)`` gives each rank its
own stream derived from ``(seed, rank)`` (dropout, augmentation). This module
checks the first kind and saves and restores either kind:

* ``assert_synchronized(group=None)``: every rank's state must be equal, else
  every rank raises an error naming the ranks and sources that differ.
* ``synchronize(src=0)``: every rank takes rank ``src``'s RNG streams.
* ``state_dict()`` / ``load_state_dict()``: this rank's state, recording its
  rank and the world size, which loading checks.
* ``save(directory)`` / ``load(directory)``: the same, one file per rank.
"""

from .state.distributed import (
    NotSynchronizedError,
    assert_synchronized,
    load,
    load_state_dict,
    save,
    state_dict,
    synchronize,
)

__all__ = [
    "NotSynchronizedError",
    "assert_synchronized",
    "load",
    "load_state_dict",
    "save",
    "state_dict",
    "synchronize",
]
