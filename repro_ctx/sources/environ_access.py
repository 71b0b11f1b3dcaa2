"""Reading and writing environment variables at scope speed.

``os.environ`` on POSIX keeps an encoded dict beside the C environment and
updates both on every write; each access also encodes the key. A scope
touches two variables several times, so the public mapping costs several
microseconds per scope. ``EnvironAccess`` does exactly what ``os._Environ``
does (``putenv``/``unsetenv`` plus its ``_data`` dict, keys encoded once),
after checking at first use that this Python's ``os.environ`` still works
that way; otherwise it goes through ``os.environ`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

_PROBE = "REPRO_CTX_ENVIRON_PROBE"
_CACHED_VALUES = 64


class EnvironAccess:
    """get/set/delete for a fixed set of variable names, and ``get_all`` of them in order."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.get: Callable[[str], str | None]
        self.get_all: Callable[[], tuple[str | None, ...]]
        self.set: Callable[[str, str], None]
        self.delete: Callable[[str], None]
        fast = _fast_accessors(names) if _fast_environ_works() else None
        if fast is None:
            environ = os.environ
            self.get = environ.get
            self.get_all = lambda: tuple(map(environ.get, names))
            self.set = environ.__setitem__
            self.delete = environ.__delitem__
        else:
            self.get, self.get_all, self.set, self.delete = fast


class _Decoded(dict[bytes | None, str | None]):
    """Decoded environment values by their encoded bytes, filled on first use."""

    def __init__(self, decode: Callable[[bytes], str]) -> None:
        super().__init__({None: None})  # an unset variable
        self._decode = decode

    def __missing__(self, raw: bytes | None) -> str | None:
        assert raw is not None
        value = str(self._decode(raw))
        if len(self) <= _CACHED_VALUES:
            self[raw] = value
        return value


def _fast_accessors(
    names: tuple[str, ...],
) -> tuple[
    Callable[[str], str | None],
    Callable[[], tuple[str | None, ...]],
    Callable[[str, str], None],
    Callable[[str], None],
]:
    environ: Any = os.environ
    data: dict[bytes, bytes] = environ._data
    keys = {name: environ.encodekey(name) for name in names}
    all_keys = tuple(keys[name] for name in names)
    encode = environ.encodevalue
    putenv, unsetenv = os.putenv, os.unsetenv
    # A scope reads and writes the same few values over and over: keep their
    # encodings (a dict lookup, where encode/decode are Python calls).
    encoded: dict[str, bytes] = {}
    decoded = _Decoded(environ.decodevalue)
    lookup, data_get = decoded.__getitem__, data.get

    def get(name: str) -> str | None:
        return lookup(data_get(keys[name]))

    def get_all() -> tuple[str | None, ...]:
        return tuple(map(lookup, map(data_get, all_keys)))

    def set_(name: str, value: str) -> None:
        key = keys[name]
        raw = encoded.get(value)
        if raw is None:
            raw = encode(value)  # a TypeError for anything but a str, as os.environ gives
            if len(encoded) < _CACHED_VALUES:
                encoded[value] = raw
        putenv(key, raw)
        data[key] = raw

    def delete(name: str) -> None:
        key = keys[name]
        unsetenv(key)
        del data[key]

    return get, get_all, set_, delete


def _fast_environ_works() -> bool:
    """True when ``os.environ`` is the POSIX ``_Environ`` the fast accessors mirror."""
    environ: Any = os.environ
    if os.name != "posix" or type(environ).__name__ != "_Environ":
        return False
    if not all(hasattr(environ, a) for a in ("_data", "encodekey", "encodevalue", "decodevalue")):
        return False
    if not isinstance(environ._data, dict) or _PROBE in environ:
        return False
    try:
        get, _get_all, set_, delete = _fast_accessors((_PROBE,))
        set_(_PROBE, "é1")
        seen = (os.environ.get(_PROBE), get(_PROBE), os.getenv(_PROBE))
        environ[_PROBE] = "2"
        seen_public = get(_PROBE)
        delete(_PROBE)
        gone = _PROBE not in os.environ and get(_PROBE) is None
    except Exception:
        os.environ.pop(_PROBE, None)
        return False
    return seen == ("é1", "é1", "é1") and seen_public == "2" and gone
