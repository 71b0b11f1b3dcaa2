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


class EnvironAccess:
    """get/set/delete for a fixed set of variable names."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.get: Callable[[str], str | None]
        self.set: Callable[[str, str], None]
        self.delete: Callable[[str], None]
        fast = _fast_accessors(names) if _fast_environ_works() else None
        if fast is None:
            environ = os.environ
            self.get = environ.get
            self.set = environ.__setitem__
            self.delete = environ.__delitem__
        else:
            self.get, self.set, self.delete = fast


def _fast_accessors(
    names: tuple[str, ...],
) -> tuple[Callable[[str], str | None], Callable[[str, str], None], Callable[[str], None]]:
    environ: Any = os.environ
    data: dict[bytes, bytes] = environ._data
    keys = {name: environ.encodekey(name) for name in names}
    encode, decode = environ.encodevalue, environ.decodevalue
    putenv, unsetenv = os.putenv, os.unsetenv

    def get(name: str) -> str | None:
        raw = data.get(keys[name])
        return None if raw is None else str(decode(raw))

    def set_(name: str, value: str) -> None:
        key, raw = keys[name], encode(value)
        putenv(key, raw)
        data[key] = raw

    def delete(name: str) -> None:
        key = keys[name]
        unsetenv(key)
        del data[key]

    return get, set_, delete


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
        get, set_, delete = _fast_accessors((_PROBE,))
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
