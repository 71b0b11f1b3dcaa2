"""``Source``: what another library implements to have its RNG or switches scoped.

PyTorch's reproducibility notes end with "if you use other libraries with
their own random number generators, consult their docs to seed them
consistently". A source is how such a library takes part in everything a
scope does instead: seeding, exact restore, checkpoints, leak checks and
DataLoader workers. It is one small object, registered with
``register_source()`` or through the ``repro_ctx.sources`` entry-point group.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Source(Protocol):
    """One piece of another library's global state: an RNG, or a family of switches.

    * ``name``: unique among sources; it names the source in ``state_dict()``,
      ``diff()``, leak reports, warnings and ``repro-ctx doctor``.
    * ``capture()``: a snapshot of the state, kept as it is (never copied or
      converted on the way). It should compare equal (``==``) to another
      snapshot exactly when the states are equal, or the source should have
      ``to_plain``: leak checks compare snapshots.
    * ``seed(seed)``: put the state in the one ``seed`` gives. ``seed`` is an
      int in ``[0, 2**64)`` already derived for this source from the scope's
      seed and the source's name (and per DataLoader worker), as registered
      generators get theirs. A library that takes fewer bits reduces it
      itself (``seed % 2**32``). Not called by scopes with ``seed=None``.
    * ``restore(snapshot)``: put back exactly what ``capture`` returned.

    Optional, for checkpoints (``RNGState.state_dict()``, ``fingerprint()``,
    ``diff()``):

    * ``to_plain(snapshot)``: the snapshot as plain data (``None``, bools,
      ints, floats, strings, torch tensors, lists and str-keyed dicts of them):
      what ``torch.load(path, weights_only=True)`` reads back. Tuples come
      back as lists. A source without it is left out of state dicts and
      fingerprints, and ``diff()`` says so.
    * ``from_plain(data)``: the snapshot for ``restore`` from such data (a
      private copy: it may be kept). Raise ``ValueError`` if it does not fit.

    A source that raises in ``capture``, ``seed`` or ``restore`` gets a
    ``SourcePluginWarning`` naming it and is left out of later scopes; the
    built-in sources and the scope go on.
    """

    @property
    def name(self) -> str: ...

    def capture(self) -> Any: ...

    def seed(self, seed: int) -> None: ...

    def restore(self, snapshot: Any) -> None: ...


class SourcePluginWarning(RuntimeWarning):
    """A source plugin failed to load, or raised; scopes go on without it."""
