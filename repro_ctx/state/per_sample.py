"""Per-sample streams: sample ``i`` of epoch ``e`` draws from streams seeded by ``(seed, e, i)``.

``per_sample(dataset, seed)`` wraps a map-style dataset. Around each sample
it seeds ``random``, NumPy's global state and torch's CPU generator (and
every registered generator and source plugin) from ``(seed, epoch, index)``
alone, and afterwards puts back the streams the process had. A sample's
augmentation therefore depends neither on which worker loads it, nor on the
batch size, the number of workers or ranks, nor on where a resumed run
starts: skipping the consumed samples is an exact mid-epoch resume, with no
snapshot of any worker's RNG.

Seeds. Once per epoch, ``SeedSequence(seed, spawn_key=(PER_SAMPLE_KEY,
epoch))`` gives one random key per stream; a sample's seeds are its index
XORed with them, so no mixing runs per sample, and within an epoch no two
indices share a seed:

* ``random.seed(index ^ key_random)``, 64 bits: ``random.seed`` hashes its
  argument through MT19937's ``init_by_array``;
* NumPy: ``np.random.seed((index ^ key_numpy) mod 2**32)``: legacy seeding
  takes 32 bits (a 64-bit key goes through an array at ten times the cost);
  with another bit generator than MT19937 the global state gets the one its
  type starts in from that seed;
* torch: ``torch.default_generator.manual_seed((index ^ key_torch) mod
  2**32)``: the CPU generator's stream depends on the low 32 bits of its
  seed only. Not ``torch.manual_seed``, which also seeds every accelerator
  backend at a hundred times the cost;
* registered generators and source plugins: each source's own seeding with
  the seed ``index ^ key_other``, which derives one stream per generator
  through ``SeedSequence`` (they cost what a scope's seeding of them does);
  only when there are any.

The 32-bit seeds are distinct for the first 2**32 indices of an epoch;
across epochs the keys are independent, so two samples of different epochs
share a NumPy or torch stream only by a chance of about one in 2**32 per
pair whose indices differ by the keys' XOR.

Restoring. ``__getitem__`` captures the streams, seeds, runs the sample and
restores them. A DataLoader that batches calls ``__getitems__`` with the
whole batch: the streams are captured once, each sample is seeded in turn,
and the streams come back after the last one. Nothing else runs between
those samples, so to every other piece of code the streams are back after
each sample, at a fraction of the cost. The wrapped dataset's own
``__getitems__`` is not used: it would run the batch under one seed.

Epochs. ``set_epoch(e)`` writes the epoch into a one-element tensor in
shared memory (``Tensor.share_memory_``), which forked workers inherit and
spawned workers receive through torch's multiprocessing pickler: a
persistent worker reads the epoch it was set to, although its copy of the
wrapper never sees the call. Call it before the epoch's iterator is created
(``iter(loader)``, the ``for``), as with ``DistributedSampler.set_epoch``. A
plain ``pickle`` or ``copy`` takes the epoch's value, not the shared memory.
"""

from __future__ import annotations

import operator
from typing import Any, Final, Generic, SupportsIndex, TypeVar, cast

from ..core import scope as _scope
from ..core.seed import PER_SAMPLE_KEY, check_seed
from ..core.source import Plan, Source
from ..sources.default_set import default_sources
from ..sources.plugins import PluginSource
from ..sources.python_random import PythonRandomSource
from ..sources.registry import Captured, RegistrySource
from ..sources.torch_cpu import TorchCPUSource

_T = TypeVar("_T")

_M32: Final = 2**32 - 1
_EPOCHS_KEPT: Final = 8


def epoch_keys(seed: int, epoch: int) -> tuple[int, int, int, int]:
    """The keys of one epoch: ``random``, NumPy (32 bits), torch (32 bits), the other sources."""
    import numpy as np  # deferred: import repro_ctx imports no NumPy

    words = np.random.SeedSequence(seed, spawn_key=(PER_SAMPLE_KEY, epoch)).generate_state(
        4, np.uint64)
    random_key, numpy_key, torch_key, other_key = (int(word) for word in words)
    return random_key, numpy_key & _M32, torch_key & _M32, other_key


def sample_seeds(seed: int, epoch: int, index: int) -> tuple[int, int, int, int]:
    """The seeds of sample ``index`` in ``epoch``: ``random``, NumPy, torch, other sources."""
    random_key, numpy_key, torch_key, other_key = epoch_keys(seed, epoch)
    low = index & _M32
    return index ^ random_key, low ^ numpy_key, low ^ torch_key, index ^ other_key


def _check_index(index: object) -> int:
    if type(index) is int and 0 <= index < 2**64:  # what samplers yield: the fast path
        return index
    if isinstance(index, bool) or not hasattr(type(index), "__index__"):
        raise TypeError(f"per_sample datasets take an int index, got {type(index).__name__} "
                        f"{index!r}")
    value = operator.index(cast("SupportsIndex", index))
    if not 0 <= value < 2**64:
        raise ValueError(f"per_sample indices must be in [0, 2**64), got {value}: a "
                         "negative index would give the sample another stream than its "
                         "position does")
    return int(value)


class _Streams:
    """The sources a sample seeds and the calls that seed them, for one default set."""

    __slots__ = ("numpy", "numpy_seed", "others", "random_seed", "sources", "torch_seed")

    def __init__(self, default: tuple[Source, ...]) -> None:
        import random

        import numpy as np  # deferred: import repro_ctx imports no NumPy
        import torch  # deferred: import repro_ctx imports no torch

        from ..sources.numpy_global import NumPyGlobalSource  # imports NumPy

        self.sources: tuple[Source, ...] = tuple(
            source for source in default
            if isinstance(source, (PythonRandomSource, NumPyGlobalSource, TorchCPUSource,
                                   RegistrySource, PluginSource)))
        self.numpy = next(s for s in self.sources if isinstance(s, NumPyGlobalSource))
        self.others = tuple(position for position, source in enumerate(self.sources)
                            if isinstance(source, (RegistrySource, PluginSource)))
        self.random_seed = random.seed
        self.numpy_seed = np.random.seed
        self.torch_seed = torch.default_generator.manual_seed


_streams: tuple[tuple[Source, ...], _Streams] | None = None


def _current_streams() -> _Streams:
    global _streams
    default = default_sources()
    cached = _streams
    if cached is None or cached[0] is not default:  # a plugin came or went
        cached = _streams = (default, _Streams(default))
    return cached[1]


def _nothing_registered(snapshot: object) -> bool:
    """A registry snapshot with no generator in it: nothing to seed."""
    return isinstance(snapshot, Captured) and not snapshot.objs


_LEAVE: Final = Plan(seed=None, algorithms=None, benchmark=None, tf32=None,
                     fill_uninitialized_memory=None)


class PerSample(Generic[_T]):
    """A map-style dataset whose every sample runs with its own seeded streams.

    Made by ``per_sample(dataset, seed)``; see its docstring and this module's.
    """

    def __init__(self, dataset: Any, seed: int = 0) -> None:
        if not hasattr(dataset, "__getitem__"):
            raise TypeError(f"per_sample wraps a map-style dataset (one with __getitem__), "
                            f"got {type(dataset).__name__}")
        import torch  # deferred: import repro_ctx imports no torch

        self.dataset = dataset
        self.seed = check_seed(seed)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()  # type: ignore[no-untyped-call]
        self._keys: dict[int, tuple[int, int, int, int]] = {}

    # -- the epoch ------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The epoch samples are seeded for (``set_epoch``; 0 until it is called)."""
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Seed the samples of ``epoch`` from now on, in this process and in every worker.

        Call it before the epoch's DataLoader iterator is created.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 2**63:
            raise ValueError(f"epoch must be an int in [0, 2**63), got {epoch!r}")
        self._epoch[0] = epoch

    def _epoch_keys(self) -> tuple[int, int, int, int]:
        epoch = int(self._epoch[0])
        keys = self._keys.get(epoch)
        if keys is None:
            if len(self._keys) >= _EPOCHS_KEPT:
                self._keys.clear()
            keys = self._keys[epoch] = epoch_keys(self.seed, epoch)
        return keys

    # -- samples ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> _T:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[_T]:
        """The samples of ``indices``, each under its own seeds; the streams come back once."""
        import numpy as np  # deferred: import repro_ctx imports no NumPy

        from ..sources.numpy_access import global_bit_generator  # imports NumPy

        checked = [_check_index(index) for index in indices]
        keys = self._epoch_keys()
        streams = _current_streams()
        sources = streams.sources
        with _scope._lock:
            snapshots = [source.capture() for source in sources]
        mt19937 = isinstance(global_bit_generator(), np.random.MT19937)
        others = [(streams.sources[position], snapshots[position]) for position in streams.others
                  if not _nothing_registered(snapshots[position])]
        try:
            return [self._sample(streams, others, keys, index, mt19937) for index in checked]
        finally:
            with _scope._lock:
                for source, snapshot in zip(reversed(sources), reversed(snapshots)):
                    source.restore(snapshot)

    def _sample(self, streams: _Streams, others: list[tuple[Source, object]],
                keys: tuple[int, int, int, int], index: int, mt19937: bool) -> _T:
        low = index & _M32
        streams.random_seed(index ^ keys[0])
        if mt19937:
            streams.numpy_seed(low ^ keys[1])
        else:
            streams.numpy.seed(None, _LEAVE.with_seed(low ^ keys[1]))
        streams.torch_seed(low ^ keys[2])
        if others:
            plan = _LEAVE.with_seed(index ^ keys[3])
            for source, snapshot in others:
                source.seed(snapshot, plan)
        out: _T = self.dataset[index]
        return out

    # -- pickling: the shared epoch goes to workers, a copy elsewhere -------------

    def __getstate__(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "seed": self.seed, "epoch": self._epoch}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.dataset = state["dataset"]
        self.seed = state["seed"]
        self._epoch = state["epoch"]
        if not self._epoch.is_shared():  # a plain pickle's copy: shareable again
            self._epoch.share_memory_()
        self._keys = {}

    def __repr__(self) -> str:
        return f"per_sample({self.dataset!r}, seed={self.seed!r})"


def per_sample(dataset: Any, seed: int = 0) -> PerSample[Any]:
    """Wrap a map-style dataset so that sample ``i`` of epoch ``e`` is seeded by ``(seed, e, i)``.

    Around each sample, ``random``, NumPy's global state, torch's CPU
    generator, registered generators and source plugins are seeded from
    ``(seed, epoch, index)`` alone, and the process's own streams come back
    afterwards. Augmentations are then the same for any ``num_workers``,
    batch size or number of ranks, and after a mid-epoch resume that skips
    the consumed samples. Call ``.set_epoch(e)`` on the wrapper before each
    epoch (it reaches persistent workers too). Flags, environment variables
    and accelerator generators are not touched.
    """
    return PerSample(dataset, seed)
