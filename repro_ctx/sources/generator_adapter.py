"""The one interface every kind of generator object is read, written and seeded through.

``generators`` holds the adapters for ``random.Random`` and ``torch.Generator``
and picks one per object; ``numpy_generators`` holds NumPy's, imported only
once a NumPy object is handed to a scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.plain import Plain


def sequence(seed: int, key: tuple[int, ...]) -> Any:
    import numpy as np

    return np.random.SeedSequence(seed, spawn_key=key)


class Adapter:
    """Public-API state access for one kind of generator object."""

    kind: str

    def prepare(self, obj: Any) -> Any:
        """What ``get``/``set`` need to know about ``obj``, computed once."""
        return None

    def type_name(self, obj: Any, info: Any) -> str:
        raise NotImplementedError

    def get(self, obj: Any, info: Any) -> object:
        raise NotImplementedError

    def set(self, obj: Any, info: Any, snapshot: Any) -> None:
        raise NotImplementedError

    def get_many(self, objs: Sequence[Any], infos: Sequence[Any]) -> list[object]:
        """``get`` of each object in turn (an adapter may do it in one tighter loop)."""
        get = self.get
        return [get(obj, info) for obj, info in zip(objs, infos)]

    def set_many(self, objs: Sequence[Any], infos: Sequence[Any], states: Sequence[Any]) -> None:
        """``set`` of each object in turn; stops at the first failure, as ``set`` would."""
        set_ = self.set
        for obj, info, state in zip(objs, infos, states):
            set_(obj, info, state)

    def seeded(self, obj: Any, info: Any, seed: int, key: tuple[int, ...]) -> object:
        """The snapshot ``obj`` has when seeded with ``seed`` at spawn key ``key``."""
        raise NotImplementedError

    def to_plain(self, obj: Any, info: Any, snapshot: Any) -> Plain:
        raise NotImplementedError

    def check(self, data: Plain, where: str) -> None:
        """Validate loaded plain data without a live object (``Malformed`` if it is not)."""
        raise NotImplementedError

    def from_plain(self, obj: Any, info: Any, data: Plain) -> object:
        """A snapshot for ``obj`` from checked data, or ``Malformed`` if it does not fit."""
        raise NotImplementedError
