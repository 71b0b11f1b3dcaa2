"""The entries of ``torch._inductor.config`` a scope covers: deterministic, fallback_random.

* ``deterministic`` (torch >= 2.10), which ``torch.use_deterministic_algorithms``
  sets too: inductor skips on-device benchmarking and picks reproducible kernels.
* ``fallback_random``: compiled code draws its random numbers through eager's
  ops, so ``torch.compile``d code draws what eager code would (pytorch#141645).

A torch whose config lacks an entry has no such flag: it is no part of the
state there. Importing inductor's config costs over a second, so a scope
touches it only once the program has imported it; until then each entry
reads ``None``. The import is watched by a finder on ``sys.meta_path`` that
watches this one module and nothing else, and that records each entry's
value right after the import, exact on every torch whatever the config
module does with overrides (plain values up to 2.5, entries up to 2.11,
``ContextVar``s from 2.12). Then:

* an import inside open scopes (``torch.compile`` in a ``with
  deterministic()`` block) sets each entry as those scopes want it: the
  innermost one that sets the algorithms decides;
* a scope entered before the import restores ``None`` as the value the entry
  would read had that scope never run: the import-time value, as the scopes
  still open around it want it.
"""

from __future__ import annotations

import contextvars
import importlib.abc
import re
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Final

from ..core.scope import open_activations
from ..core.source import Plan

CONFIG: Final = "torch._inductor.config"
ENTRIES: Final = {"deterministic": (2, 10), "fallback_random": (2, 0)}
"""Each scoped entry, and the first torch release whose config has it."""


def release(torch: Any) -> tuple[int, int]:
    """torch's (major, minor), from ``torch.__version__`` ("2.4.1+cu121" -> (2, 4))."""
    found = re.match(r"(\d+)\.(\d+)", str(torch.__version__))
    return (int(found[1]), int(found[2])) if found else (0, 0)


class _RecordingLoader(importlib.abc.Loader):
    """The config's own loader, which tells the watch once the module has run."""

    def __init__(self, loader: Any, watch: ImportWatch) -> None:
        self._loader = loader
        self._watch = watch

    def create_module(self, spec: Any) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._watch.record(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... for tracebacks
        return getattr(self._loader, name)


class ImportWatch(importlib.abc.MetaPathFinder):
    """Records the scoped entries' values the moment ``torch._inductor.config`` is imported.

    It finds nothing itself: for that one module it asks the finders after
    it and wraps the loader they return; for any other module it returns
    ``None`` at once.
    """

    def __init__(self) -> None:
        self._values: dict[int, dict[str, object]] = {}
        # A config dropped from sys.modules is imported again as a new module:
        # the ones recorded stay alive so that a new one never reuses an old id.
        self._recorded: list[ModuleType] = []
        self._entries: dict[str, ConfigEntry] = {}  # one per name: each table's has the same rule
        self._lock = threading.Lock()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> Any:
        if fullname != CONFIG:
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if hasattr(spec.loader, "exec_module"):
                    spec.loader = _RecordingLoader(spec.loader, self)
                return spec
        return None

    def record(self, module: ModuleType) -> None:
        """What each scoped entry of a just-imported config reads; then each entry set as
        the scopes open now want it."""
        values = {name: getattr(module, name) for name in ENTRIES if hasattr(module, name)}
        with self._lock:
            self._values[id(module)] = values
            self._recorded.append(module)
            entries = list(self._entries.values())
        for entry in entries:
            if entry.name in values:
                value = entry.under_open_scopes(values[entry.name])
                if value != values[entry.name]:
                    setattr(module, entry.name, value)

    def follow(self, entry: ConfigEntry) -> None:
        """Have ``entry`` set on every later import of the config (``record``)."""
        with self._lock:
            self._entries[entry.name] = entry

    def recorded(self, module: object, name: str) -> tuple[bool, object]:
        values = self._values.get(id(module), {})
        return (name in values, values.get(name))


WATCH: Final = ImportWatch()


def watch_imports() -> None:
    """Put the watch first on ``sys.meta_path``, once."""
    if WATCH not in sys.meta_path:
        sys.meta_path.insert(0, WATCH)


def import_time_value(config: object, name: str) -> object:
    """What a config entry read right after the config was imported.

    Recorded by the watch; for a config imported before the watch was
    installed, a read in an empty ``contextvars`` context, which gives the
    import-time value where overrides live in ``ContextVar``s (torch >= 2.12,
    pinned in tests/sources/test_facts.py) and the current value before that.
    """
    known, value = WATCH.recorded(config, name)
    if known:
        return value
    return contextvars.Context().run(getattr, config, name)


def fast_config_reader(config: Any, name: str) -> Callable[[], object]:
    """A reader of a config entry that skips ``__getattr__``'s general path.

    ``config.deterministic`` costs about 3 us on torch 2.13, most of it
    handling aliases, forced environment values and JustKnobs that a plain
    entry does not use (benchmarks/bench_private.py). For a plain entry whose
    override is a ``ContextVar`` (torch >= 2.12) the value is the context's
    override, else the default. The fast reader is used only then, and only
    if it reads the same value as the public attribute; on any other torch,
    or for any other entry, the reader is the public attribute.
    """

    def public() -> object:
        return getattr(config, name)

    try:
        from torch.utils._config_module import _UNSET_SENTINEL as unset

        entry = config._config[name]
        override = entry.user_override
        default = entry.env_value_default
        if default is unset:
            default = entry.default
        plain = (
            isinstance(override, contextvars.ContextVar)
            and entry.alias is None
            and entry.env_value_force is unset
            and entry.justknob is None
            and not entry.deprecated
            and isinstance(default, (bool, int, float, str, type(None)))
        )
    except (ImportError, AttributeError, KeyError, TypeError):
        return public
    if not plain:
        return public

    def fast() -> object:
        value = override.get()
        return default if value is unset else value

    return fast if fast() == public() else public


def _unreadable() -> object:
    return None


class ConfigEntry:
    """Reads and writes one entry of whichever inductor config is imported now.

    ``wanted(plan)`` is the value a scope's plan sets, or ``leave`` where the
    plan leaves the entry alone; with it, the entry is set on import as the
    scopes open then want it (``ImportWatch.record``).
    """

    def __init__(
        self, name: str, wanted: Callable[[Plan], object] | None = None, leave: object = None
    ) -> None:
        self.name = name
        self._wanted = wanted
        self._leave = leave
        self._readers: dict[int, Callable[[], object]] = {}
        self._configs: list[object] = []  # kept alive: see ImportWatch._recorded
        if wanted is not None:
            WATCH.follow(self)

    def under_open_scopes(self, value: object) -> object:
        """``value`` as the scopes open now would have set it (innermost first).

        A closing scope is off the stack when it restores, so its restore of
        ``None`` reads what the scopes around it want.
        """
        wanted = self._wanted
        if wanted is None:
            return value
        for activation in reversed(open_activations()):
            target = wanted(activation.plan)
            if target is not self._leave:
                return target
        return value

    def get(self) -> object:
        config: Any = sys.modules.get(CONFIG)
        if config is None:
            return None
        read = self._readers.get(id(config))
        if read is None:
            has = hasattr(config, self.name)
            read = fast_config_reader(config, self.name) if has else _unreadable
            self._readers[id(config)] = read
            self._configs.append(config)
        return read()

    def set(self, value: object) -> None:
        config: Any = sys.modules.get(CONFIG)
        if config is None or not hasattr(config, self.name):
            return
        if value is None:  # not imported when captured
            value = self.under_open_scopes(import_time_value(config, self.name))
        setattr(config, self.name, value)

    def initial(self) -> object:
        config: Any = sys.modules.get(CONFIG)
        if config is None or not hasattr(config, self.name):
            return None
        return import_time_value(config, self.name)

