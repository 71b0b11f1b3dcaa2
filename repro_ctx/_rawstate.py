"""Fast, bit-exact raw snapshots of RNG states.

The public state APIs are slow for a hot path: ``random.Random.getstate()``
builds a 625-element tuple of Python ints, and
``RandomState.get_state()``/``set_state()`` copy MT19937's 624-word key one
element at a time.  This module copies the *raw C state* of each generator
instead, as a single ``bytes`` object taken straight from the generator
object's memory.

How the memory is reached
-------------------------
On 64-bit CPython, ``id(obj)`` is the address of ``obj``, and a C extension
object's fields live at fixed offsets from it.  A ``memoryview`` spanning the
process address space (``_MEM``) turns a state copy into one slice:
``_MEM[a:b].tobytes()`` to read and ``_MEM[a:b] = data`` to write, which is
2-4x cheaper than a ``ctypes.string_at``/``ctypes.memmove`` call.  A slice
assignment also checks the length of ``data`` before writing anything, so a
wrong-sized state can never write outside the region.

Layouts (from CPython's ``_randommodule.c`` and numpy's ``numpy/random``
headers and ``.pyx`` files):

* ``_random.Random``: ``PyObject_HEAD; int index; uint32_t state[624];``.
  We copy the 2500 bytes after ``PyObject_HEAD`` (``object.__basicsize__``).
  The Python-level ``gauss_next`` lives in the instance ``__dict__`` and goes
  into the snapshot as a plain value.
* ``MT19937``: ``uint32_t key[624]; int pos;`` at ``ctypes.state_address``.
* ``SFC64``: ``uint64_t s[4]; int has_uint32; uint32_t uinteger;``.
* ``PCG64``/``PCG64DXSM``: ``pcg64_random_t *pcg_state; int has_uint32;
  uint32_t uinteger;``.  ``pcg_state`` points to a 32-byte
  ``pcg64_random_t`` (state and increment, 128 bits each) that is another
  field of the same object.  The pointer is **never** copied (it is
  object-specific); its 32-byte target and the two buffered-value fields are.
* ``Philox``: ``ctr *; key *; int buffer_pos; uint64_t buffer[4];
  int has_uint32; uint32_t uinteger;``.  ``ctr`` (32 bytes) and ``key``
  (16 bytes) point into the same object.  Again only the pointer targets and
  the value fields are copied.
* ``RandomState``: the Gaussian cache ``aug_bitgen_t._aug_state.has_gauss`` /
  ``.gauss`` is not exposed by any fast API.  Its offset is *found* at import
  time by setting known values through ``set_state`` and diffing the object's
  memory.  The MT19937 (or other) part goes through ``bitgen_get``/``bitgen_set``
  on ``rs._bit_generator``.

Self-checks
-----------
Each fast path is validated once at import, in two phases, and disabled (the
public API is used instead) if anything fails or raises:

1. Read-only: the layout is decoded from the memory of several objects
   (including an instance of a Python subclass) for many states set through
   the public API and compared with the public state; the bytes to be copied
   must be identical across objects that hold the same state (so they contain
   no object-specific pointer), every byte that the public setter changes
   must lie inside them, and every region must lie inside the object
   (``__basicsize__`` of its C type).  Only reads happen in this phase.
2. Round trip: states copied with the fast path into other objects (and a
   subclass instance) must give exactly the public state of the source and
   the same subsequent draws, also when restored a second time.

``FAST_PATHS`` reports the result; assigning ``False`` to one of its keys
turns a fast path off (e.g. ``monkeypatch.setitem`` in tests).  A path that
failed its self-check cannot be turned on.

State objects
-------------
Snapshots are immutable: tuples of ``str`` tags, ``bytes``, ints, floats and
``None``.  Public-API fallback states are deep-frozen (dicts, lists and
ndarrays become tuple subclasses and ``bytes``) and thawed into fresh objects
on every restore.  A snapshot belongs to the process that took it: do not
persist it.  Raw snapshots are trusted: only pass states that came from the
matching ``*_get`` function (the tag and the size are checked, the content is
not, exactly as numpy's own ``state`` setters do not validate ``pos``).

Which objects take the raw path
-------------------------------
Instances of ``random.Random`` and its subclasses that keep its
``getstate``/``setstate``; ``RandomState`` and subclasses that keep its
``get_state``/``set_state``; ``MT19937``, ``PCG64``, ``PCG64DXSM``,
``Philox``, ``SFC64`` and subclasses that keep their ``state`` property.
Anything else (e.g. a subclass overriding the state accessors, or a
third-party BitGenerator) goes through the public API, whose result is
frozen.  ``random.SystemRandom`` has no state and raises
``NotImplementedError`` like its ``getstate``.  A raw snapshot restores into
any object of the same C type, including a subclass instance (numpy's public
setters would reject the other class name).

Fast paths are off on non-CPython interpreters, 32-bit platforms and
free-threaded builds.  Like the public getters, a raw copy does not take the
BitGenerator's ``lock``: snapshot a generator while another thread draws from
it and the result is as undefined as with ``.state``.
"""

from __future__ import annotations

import _random
import contextlib
import ctypes
import functools
import random
import struct
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, NoReturn, TypeVar, cast

import numpy as np

__all__ = [
    "FAST_PATHS",
    "bitgen_get",
    "bitgen_set",
    "legacy_get",
    "legacy_set",
    "random_get",
    "random_set",
]

_State = tuple[Any, ...]

# --------------------------------------------------------------------------
# Raw memory access
# --------------------------------------------------------------------------


def _make_mem() -> memoryview | None:
    """A writable byte view of the whole address space, or None."""
    if sys.implementation.name != "cpython":
        return None  # id() is not an address elsewhere
    if sys.maxsize < 2**62:
        return None  # 32-bit: addresses may exceed sys.maxsize
    gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if gil_enabled is not None and not gil_enabled():
        # Free-threaded build: raw copies would race with concurrent draws
        # (the public APIs take per-object critical sections there).
        return None
    try:
        array = (ctypes.c_ubyte * sys.maxsize).from_address(0)
        return memoryview(array).cast("B")
    except Exception:  # pragma: no cover - platform without support
        return None


_MEM_OR_NONE: Final = _make_mem()
_MEM: Final[memoryview] = _MEM_OR_NONE if _MEM_OR_NONE is not None else memoryview(b"")
_HEAD: Final = object.__basicsize__  # size of PyObject_HEAD


def _object_bytes(obj: object, size: int) -> bytes:
    """The first ``size`` bytes of ``obj``'s memory (``size`` <= basicsize)."""
    a = id(obj)
    data = _MEM[a : a + size].tobytes()
    if len(data) != size:
        raise RuntimeError("object memory out of range")
    return data


def _lookup(cls: type, name: str) -> object:
    """The raw class attribute ``name`` as found along ``cls.__mro__``."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _definer_after(cls: type, after: type, name: str) -> type | None:
    """The class that defines ``name`` after ``after`` in ``cls.__mro__``."""
    mro = cls.__mro__
    for klass in mro[mro.index(after) + 1 :]:
        if name in vars(klass):
            return klass
    return None


# --------------------------------------------------------------------------
# Fast-path switchboard
# --------------------------------------------------------------------------

# Results of the import-time self-checks; never change afterwards.
_VALIDATED: dict[str, bool] = {}
# Why a self-check failed, for diagnostics.
_CHECK_FAILURES: dict[str, str] = {}


class _CheckFailed(Exception):
    """A self-check found something unexpected; the fast path stays off."""


def _invalidate_caches() -> None:
    _random_fast.clear()
    _random_slow.clear()
    _legacy_fast.clear()
    _legacy_slow.clear()
    _bg_kind_of.clear()
    _bg_getters.clear()
    _bg_setters.clear()


class _SwitchBoard(dict[str, bool]):
    """``FAST_PATHS``: which fast paths passed their self-check and are on.

    Item assignment and deletion invalidate the per-type caches, so a path
    switched off takes effect immediately; switching on a path that failed
    its self-check raises ``ValueError``.
    """

    def __setitem__(self, key: str, value: bool) -> None:
        if value and not _VALIDATED.get(key, False):
            raise ValueError(f"fast path {key!r} did not pass its self-check")
        super().__setitem__(key, bool(value))
        _invalidate_caches()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        _invalidate_caches()

    def _unsupported(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("FAST_PATHS supports only item assignment and deletion")

    update = setdefault = pop = popitem = clear = __ior__ = _unsupported


FAST_PATHS: dict[str, bool] = _SwitchBoard()


def _enabled(key: str) -> bool:
    return FAST_PATHS.get(key, False) and _VALIDATED.get(key, False)


# --------------------------------------------------------------------------
# Freezing public (fallback) states
# --------------------------------------------------------------------------


class _FrozenDict(tuple[Any, ...]):
    __slots__ = ()


class _FrozenList(tuple[Any, ...]):
    __slots__ = ()


class _FrozenTuple(tuple[Any, ...]):
    __slots__ = ()


class _FrozenArray(tuple[Any, ...]):
    """``(dtype.str, shape, data bytes)`` of a plain numeric ndarray."""

    __slots__ = ()


class _Opaque:
    """Private deep copy of anything we cannot freeze; copied again on use."""

    __slots__ = ("_value",)

    def __init__(self, value: object) -> None:
        import copy

        self._value = copy.deepcopy(value)

    def thaw(self) -> object:
        import copy

        return copy.deepcopy(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Opaque) and _deep_equal(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]


_SCALARS: Final = (type(None), bool, int, float, complex, str, bytes)


def _freeze(obj: object) -> object:
    """An immutable equivalent of ``obj`` (inverse: ``_thaw``)."""
    if isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, np.generic) and not isinstance(obj, np.void):
        return obj  # numpy scalars are immutable
    if type(obj) is dict:
        return _FrozenDict((k, _freeze(v)) for k, v in obj.items())
    if type(obj) is list:
        return _FrozenList(_freeze(v) for v in obj)
    if type(obj) is tuple:
        return _FrozenTuple(_freeze(v) for v in obj)
    if (
        type(obj) is np.ndarray
        and obj.dtype.fields is None
        and not obj.dtype.hasobject
        and obj.dtype.subdtype is None
    ):
        return _FrozenArray((obj.dtype.str, obj.shape, obj.tobytes()))
    return _Opaque(obj)


def _thaw(obj: object) -> object:
    """A fresh mutable copy of a state frozen by ``_freeze``."""
    cls = type(obj)
    if cls is _FrozenDict:
        return {k: _thaw(v) for k, v in obj}  # type: ignore[attr-defined]
    if cls is _FrozenList:
        return [_thaw(v) for v in obj]  # type: ignore[attr-defined]
    if cls is _FrozenTuple:
        return tuple(_thaw(v) for v in obj)  # type: ignore[attr-defined]
    if cls is _FrozenArray:
        dtype, shape, data = cast(_FrozenArray, obj)
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if cls is _Opaque:
        return obj.thaw()  # type: ignore[attr-defined]
    return obj  # immutable (scalars, plain tuples of immutables)


def _deep_equal(a: object, b: object) -> bool:
    """Exact equality of (public) RNG states, ndarrays included."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, Mapping):
        return (
            isinstance(b, Mapping)
            and a.keys() == b.keys()
            and all(_deep_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple))
            and type(a) is type(b)
            and len(a) == len(b)
            and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("=d", a) == struct.pack("=d", b)
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------
# random.Random
# --------------------------------------------------------------------------

_R_TAG: Final = "repro_ctx:random:raw"
_R_TAG_PUBLIC: Final = "repro_ctx:random:public"
_R_START: Final = _HEAD
# C struct after PyObject_HEAD: int index; uint32_t state[624]
_R_END: Final = _R_START + 4 + 4 * 624
_R_GETSTATE: Final = vars(random.Random)["getstate"]
_R_SETSTATE: Final = vars(random.Random)["setstate"]

_random_fast: set[type] = set()  # types that take the raw path
_random_slow: set[type] = set()  # types that take the public path


def random_get(r: random.Random) -> object:
    """Snapshot the full state of ``r`` (Mersenne Twister + ``gauss_next``).

    Equivalent to ``r.getstate()``.  ``random.SystemRandom`` has no state and
    raises ``NotImplementedError`` as its ``getstate`` does.
    """
    if type(r) in _random_fast:
        a = id(r)
        return (_R_TAG, _MEM[a + _R_START : a + _R_END].tobytes(), r.gauss_next)  # type: ignore[attr-defined]
    return _random_get_slow(r)


def random_set(r: random.Random, state: object) -> None:
    """Restore a snapshot taken by ``random_get`` (equivalent to ``setstate``)."""
    st: _State = state  # type: ignore[assignment]
    if type(r) in _random_fast and st and st[0] is _R_TAG:
        a = id(r)
        _MEM[a + _R_START : a + _R_END] = st[1]
        r.gauss_next = st[2]  # type: ignore[attr-defined]
        return
    _random_set_slow(r, st)


_T = TypeVar("_T")


def _swap_slow(
    get: Callable[[_T], object], set_: Callable[[_T, object], None], obj: _T, state: object
) -> object:
    """``get`` then ``set_``, through whatever path they take; on failure ``obj`` is put back."""
    current = get(obj)
    try:
        set_(obj, state)
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report
            set_(obj, current)
        raise
    return current


def random_swap(r: random.Random, state: object) -> object:
    """``random_get(r)``, then ``random_set(r, state)``; on failure ``r`` is left as it was."""
    st: _State = state  # type: ignore[assignment]
    if type(r) in _random_fast and st and st[0] is _R_TAG:
        a = id(r)
        view = _MEM[a + _R_START : a + _R_END]
        raw = (_R_TAG, view.tobytes(), r.gauss_next)  # type: ignore[attr-defined]
        view[:] = st[1]  # length-checked before writing
        r.gauss_next = st[2]  # type: ignore[attr-defined]
        return raw
    return _swap_slow(random_get, random_set, r, st)


def _random_classify(r: random.Random) -> bool:
    """Whether ``type(r)`` may take the raw path (cached)."""
    cls = type(r)
    if cls in _random_fast:
        return True
    if cls in _random_slow:
        return False
    ok = (
        _enabled("random")
        and isinstance(r, random.Random)
        # getstate()/setstate() are random.Random's, which delegate to
        # _random.Random's for the C part: the public state is exactly the
        # C struct plus gauss_next.
        and _lookup(cls, "getstate") is _R_GETSTATE
        and _lookup(cls, "setstate") is _R_SETSTATE
        and _definer_after(cls, random.Random, "getstate") is _random.Random
        and _definer_after(cls, random.Random, "setstate") is _random.Random
    )
    (_random_fast if ok else _random_slow).add(cls)
    return ok


def _random_write(r: random.Random, st: _State) -> None:
    if len(st) != 3:
        raise ValueError("malformed random state")
    a = id(r)
    _MEM[a + _R_START : a + _R_END] = st[1]  # length-checked before writing
    r.gauss_next = st[2]  # type: ignore[attr-defined]


def _random_get_slow(r: random.Random) -> object:
    if _random_classify(r):
        return random_get(r)
    public: object = r.getstate()
    if _lookup(type(r), "getstate") is not _R_GETSTATE:
        public = _freeze(public)
    # else: (VERSION, tuple of ints, float | None) is already immutable
    return (_R_TAG_PUBLIC, public)


def _random_set_slow(r: random.Random, st: _State) -> None:
    if not isinstance(st, tuple) or not st:
        raise TypeError("not a state returned by random_get()")
    tag = st[0]
    if tag == _R_TAG:
        if _random_classify(r):
            _random_write(r, st)
        elif _VALIDATED.get("random", False):
            # Target cannot take raw writes (subclass overriding setstate, or
            # the fast path is switched off): convert through a scratch object.
            scratch = random.Random(0)
            _random_write(scratch, st)
            r.setstate(scratch.getstate())
        else:
            raise ValueError("raw random state cannot be restored on this platform")
    elif tag == _R_TAG_PUBLIC and len(st) == 2:
        r.setstate(_thaw(st[1]))  # type: ignore[arg-type]
    else:
        raise TypeError("not a state returned by random_get()")


# Raw draws before a snapshot: MT19937 positions 0, 1, 2, mid, last, "regenerate
# pending" (624) and wrapped around.
_DRAW_COUNTS: Final = (0, 1, 2, 311, 312, 623, 624, 625, 1001)


def _check_random() -> None:
    """Self-check of the raw ``random.Random`` path (see module docstring)."""
    if _MEM_OR_NONE is None:
        raise _CheckFailed("no raw memory access on this interpreter/platform")
    n_words = len(random.Random(0).getstate()[1]) - 1  # 624 words + index
    if n_words != 624 or not _R_END <= _random.Random.__basicsize__ <= _R_END + 8:
        raise _CheckFailed("unexpected _random.Random layout size")
    if _random.Random.__basicsize__ > random.Random.__basicsize__:
        raise _CheckFailed("unexpected random.Random layout")

    class _Sub(random.Random):
        pass

    objs = [random.Random(1), random.Random(2), _Sub(3)]
    gen = random.Random(0x5EED)
    sources = []
    for i in range(16):
        src = random.Random(gen.getrandbits(64) if i else 0)
        for _ in range(_DRAW_COUNTS[i % len(_DRAW_COUNTS)]):
            src.getrandbits(32)  # one MT word each
        if i % 3:
            src.gauss(0.0, 1.0)  # leaves gauss_next set
        if i % 4 == 1:
            src.getrandbits(gen.randrange(1, 200))
        sources.append(src)

    # Phase 1: read-only decoding of the layout.
    for src in sources:
        public = src.getstate()
        words = public[1]
        for obj in objs:
            obj.setstate(public)
        raws = [_object_bytes(obj, _R_END)[_R_START:] for obj in objs]
        if any(raw != raws[0] for raw in raws):
            raise _CheckFailed("object-specific bytes in the copied region")
        index = struct.unpack_from("=i", raws[0], 0)[0]
        key = struct.unpack_from(f"={n_words}I", raws[0], 4)
        if index != words[-1] or key != words[:-1]:
            raise _CheckFailed("decoded state differs from getstate()")

    # Phase 2: round trips through the raw path.
    for src in sources:
        snap = (_R_TAG, _object_bytes(src, _R_END)[_R_START:], src.gauss_next)  # type: ignore[attr-defined]
        expected = src.getstate()
        for obj in objs:
            _random_write(obj, snap)
            if obj.getstate() != expected:
                raise _CheckFailed("raw copy does not reproduce getstate()")
        draws = [src.random(), src.gauss(0.0, 1.0), src.getrandbits(77)]
        for obj in objs:
            for _ in range(2):  # restoring twice gives the same stream
                if [obj.random(), obj.gauss(0.0, 1.0), obj.getrandbits(77)] != draws:
                    raise _CheckFailed("raw copy does not reproduce the draws")
                _random_write(obj, snap)


# --------------------------------------------------------------------------
# numpy BitGenerators
# --------------------------------------------------------------------------

_BG_TAG_PUBLIC: Final = "repro_ctx:bitgen:public"
_BG_PREFIX: Final = "repro_ctx:bitgen:"

_Getter = Callable[[Any], object]
_Writer = Callable[[Any, _State], None]
_Decoder = Callable[[bytes, int, tuple[int, ...]], object]
_Normalizer = Callable[[Mapping[str, Any]], object]


def _bitgen_get_public(bg: Any) -> object:
    return (_BG_TAG_PUBLIC, _freeze(bg.state))


def _unusable_writer(bg: object, st: _State) -> None:
    raise ValueError("raw BitGenerator state cannot be restored on this platform")


def _u32s(data: bytes, off: int, n: int) -> tuple[int, ...]:
    return struct.unpack_from(f"={n}I", data, off)


def _u64s(data: bytes, off: int, n: int) -> tuple[int, ...]:
    return struct.unpack_from(f"={n}Q", data, off)


def _i32(data: bytes, off: int) -> int:
    return int(struct.unpack_from("=i", data, off)[0])


def _u32(data: bytes, off: int) -> int:
    return int(struct.unpack_from("=I", data, off)[0])


def _u128_candidates(data: bytes, off: int) -> tuple[int, int]:
    """``pcg128_t`` as native ``__uint128_t`` or as ``{uint64 high, low}``."""
    native = int.from_bytes(data[off : off + 16], sys.byteorder)
    high, low = _u64s(data, off, 2)
    return native, (high << 64) | low


def _array_tuple(value: object) -> tuple[int, ...]:
    return tuple(np.asarray(value).ravel().tolist())


class _Kind:
    """Layout of one BitGenerator C type, relative to its state struct.

    ``pointers``: offsets (in the state struct) of pointers to other fields of
    the same object.  ``fields``: ``(base, rel_off, size)``; base -1 is the
    state struct, ``i >= 0`` is the target of ``pointers[i]``.  ``decode``
    turns the object's memory into the same normal form as ``normalize`` makes
    of the public ``.state`` dict.
    """

    __slots__ = (
        "cls",
        "decode",
        "fields",
        "get",
        "key",
        "normalize",
        "pointers",
        "regions",
        "state_off",
        "tag",
        "targets",
        "write",
    )

    def __init__(
        self,
        cls: type[np.random.BitGenerator],
        pointers: tuple[int, ...],
        fields: tuple[tuple[int, int, int], ...],
        decode: _Decoder,
        normalize: _Normalizer,
    ) -> None:
        self.cls = cls
        self.key = f"bitgen:{cls.__name__}"
        self.tag = _BG_PREFIX + cls.__name__ + ":raw"
        self.pointers = pointers
        self.fields = fields
        self.decode = decode
        self.normalize = normalize
        self.state_off = -1
        self.targets: tuple[int, ...] = ()
        self.regions: tuple[tuple[int, int], ...] = ()
        self.get: _Getter = _bitgen_get_public
        self.write: _Writer = _unusable_writer


def _make_accessors(tag: str, regions: tuple[tuple[int, int], ...]) -> tuple[_Getter, _Writer]:
    """Specialised raw getter/writer for regions ``[(start, end), ...]``."""
    mem = _MEM
    if len(regions) == 1:
        ((start, end),) = regions

        def get1(bg: object) -> object:
            a = id(bg)
            return (tag, mem[a + start : a + end].tobytes())

        def write1(bg: object, st: _State) -> None:
            if len(st) != 2:
                raise ValueError("malformed BitGenerator state")
            a = id(bg)
            mem[a + start : a + end] = st[1]  # length-checked before writing

        return get1, write1

    sizes = tuple(end - start for start, end in regions)

    def get_n(bg: object) -> object:
        a = id(bg)
        return (tag, *[mem[a + s : a + e].tobytes() for s, e in regions])

    def write_n(bg: object, st: _State) -> None:
        chunks = st[1:]
        if len(chunks) != len(regions) or tuple(map(len, chunks)) != sizes:
            raise ValueError("malformed BitGenerator state")
        a = id(bg)
        for (s, e), chunk in zip(regions, chunks, strict=True):
            mem[a + s : a + e] = chunk

    return get_n, write_n


def _decode_mt19937(m: bytes, s: int, t: tuple[int, ...]) -> object:
    return (_u32s(m, s, 624), _i32(m, s + 2496))


def _norm_mt19937(st: Mapping[str, Any]) -> object:
    return (_array_tuple(st["state"]["key"]), int(st["state"]["pos"]))


def _decode_sfc64(m: bytes, s: int, t: tuple[int, ...]) -> object:
    return (_u64s(m, s, 4), _i32(m, s + 32), _u32(m, s + 36))


def _norm_sfc64(st: Mapping[str, Any]) -> object:
    return (_array_tuple(st["state"]["state"]), int(st["has_uint32"]), int(st["uinteger"]))


def _decode_pcg64(m: bytes, s: int, t: tuple[int, ...]) -> object:
    (p,) = t
    return (_u128_candidates(m, p), _u128_candidates(m, p + 16), _i32(m, s + 8), _u32(m, s + 12))


def _norm_pcg64(st: Mapping[str, Any]) -> object:
    return (
        int(st["state"]["state"]),
        int(st["state"]["inc"]),
        int(st["has_uint32"]),
        int(st["uinteger"]),
    )


def _match_pcg64(decoded: object, normal: object) -> bool:
    d: _State = decoded  # type: ignore[assignment]
    n: _State = normal  # type: ignore[assignment]
    # Both 128-bit words must use the same representation.
    return any((d[0][rep], d[1][rep], d[2], d[3]) == n for rep in (0, 1))


def _decode_philox(m: bytes, s: int, t: tuple[int, ...]) -> object:
    ctr, key = t
    return (
        _u64s(m, ctr, 4),
        _u64s(m, key, 2),
        _u64s(m, s + 24, 4),
        _i32(m, s + 16),
        _i32(m, s + 56),
        _u32(m, s + 60),
    )


def _norm_philox(st: Mapping[str, Any]) -> object:
    return (
        _array_tuple(st["state"]["counter"]),
        _array_tuple(st["state"]["key"]),
        _array_tuple(st["buffer"]),
        int(st["buffer_pos"]),
        int(st["has_uint32"]),
        int(st["uinteger"]),
    )


_KINDS: Final[tuple[_Kind, ...]] = (
    _Kind(np.random.MT19937, (), ((-1, 0, 4 * 624 + 4),), _decode_mt19937, _norm_mt19937),
    _Kind(
        np.random.PCG64,
        (0,),
        ((-1, 8, 8), (0, 0, 32)),
        _decode_pcg64,
        _norm_pcg64,
    ),
    _Kind(
        np.random.PCG64DXSM,
        (0,),
        ((-1, 8, 8), (0, 0, 32)),
        _decode_pcg64,
        _norm_pcg64,
    ),
    _Kind(
        np.random.Philox,
        (0, 8),
        ((-1, 16, 48), (0, 0, 32), (1, 0, 16)),
        _decode_philox,
        _norm_philox,
    ),
    _Kind(np.random.SFC64, (), ((-1, 0, 40),), _decode_sfc64, _norm_sfc64),
)
_KIND_BY_TAG: Final = {kind.tag: kind for kind in _KINDS}

_bg_kind_of: dict[type, _Kind | None] = {}
_bg_getters: dict[type, _Getter] = {}
_bg_setters: dict[type, tuple[str, _Writer]] = {}


def bitgen_get(bg: np.random.BitGenerator) -> object:
    """Snapshot the full state of a numpy BitGenerator (equivalent to ``.state``)."""
    try:
        getter = _bg_getters[type(bg)]
    except KeyError:
        return _bitgen_get_slow(bg)
    return getter(bg)


def bitgen_set(bg: np.random.BitGenerator, state: object) -> None:
    """Restore a snapshot taken by ``bitgen_get`` (equivalent to ``.state = ``).

    A snapshot of another BitGenerator type raises ``ValueError`` as the
    public setter does.
    """
    st: _State = state  # type: ignore[assignment]
    entry = _bg_setters.get(type(bg))
    if entry is not None and st and st[0] is entry[0]:
        entry[1](bg, st)
        return
    _bitgen_set_slow(bg, st)


def _bg_classify(bg: np.random.BitGenerator) -> _Kind | None:
    """The raw layout ``type(bg)`` may use, or None for the public API (cached)."""
    cls = type(bg)
    try:
        return _bg_kind_of[cls]
    except KeyError:
        pass
    found: _Kind | None = None
    for kind in _KINDS:
        if issubclass(cls, kind.cls):
            if (
                _enabled(kind.key)
                and _lookup(cls, "state") is vars(kind.cls)["state"]
                and _state_address(bg) - id(bg) == kind.state_off
            ):
                found = kind
            break
    _bg_kind_of[cls] = found
    if found is None:
        _bg_getters[cls] = _bitgen_get_public
    else:
        _bg_getters[cls] = found.get
        _bg_setters[cls] = (found.tag, found.write)
    return found


def _state_address(bg: np.random.BitGenerator) -> int:
    try:
        return int(bg.ctypes.state_address)
    except Exception:
        return -1


def _bitgen_get_slow(bg: np.random.BitGenerator) -> object:
    kind = _bg_classify(bg)
    if kind is not None:
        return kind.get(bg)
    return _bitgen_get_public(bg)


def _bitgen_to_public(st: _State) -> dict[str, Any]:
    """The public ``.state`` dict equivalent to snapshot ``st``."""
    tag = st[0]
    if tag == _BG_TAG_PUBLIC and len(st) == 2:
        return _thaw(st[1])  # type: ignore[return-value]
    kind = _KIND_BY_TAG.get(tag) if isinstance(tag, str) else None
    if kind is None:
        raise TypeError("not a state returned by bitgen_get()")
    if not _VALIDATED.get(kind.key, False):
        raise ValueError(f"raw {kind.cls.__name__} state cannot be restored on this platform")
    scratch = kind.cls(0)
    kind.write(scratch, st)
    return dict(scratch.state)


def _bitgen_set_slow(bg: np.random.BitGenerator, st: _State) -> None:
    if not isinstance(st, tuple) or not st:
        raise TypeError("not a state returned by bitgen_get()")
    kind = _bg_classify(bg)
    if kind is not None and st[0] == kind.tag:
        kind.write(bg, st)
        return
    # Different type, public snapshot, or raw path off for this type: go
    # through the public setter, which also rejects mismatched types.
    bg.state = _bitgen_to_public_for(bg, st)


def _bitgen_to_public_for(bg: np.random.BitGenerator, st: _State) -> dict[str, Any]:
    """``_bitgen_to_public(st)``, as a state dict for ``bg``'s setter."""
    public = _bitgen_to_public(st)
    source = _KIND_BY_TAG.get(st[0])
    if source is not None and isinstance(bg, source.cls):
        # A raw snapshot of a subclass instance, or for a subclass of its
        # type: the layouts agree, the class name in the dict must follow.
        public = _renamed(public, bg)
    return public


def _renamed(public: Mapping[str, Any], bg: np.random.BitGenerator) -> dict[str, Any]:
    """``public`` as the state dict of ``type(bg)``.

    numpy's ``state`` properties name the class of the instance
    (``self.__class__.__name__``), and their setters insist on it.
    """
    return {**public, "bit_generator": type(bg).__name__}


def _bitgen_sources(kind: _Kind, count: int) -> list[np.random.BitGenerator]:
    """BitGenerators in diverse states (positions, buffered 32-bit values)."""
    out = []
    for i in range(count):
        bg = kind.cls(0xB17 + 7919 * i)
        g = np.random.Generator(bg)
        bg.random_raw(_DRAW_COUNTS[i % len(_DRAW_COUNTS)])
        if i % 2:  # odd number of 32-bit draws: a buffered half word
            g.integers(0, 2**32, size=(1, 3, 5)[i % 3], dtype=np.uint32)
        if i % 3 == 1:
            g.standard_normal(1 + i % 4)
        out.append(bg)
    return out


def _draws(bg: np.random.BitGenerator) -> object:
    g = np.random.Generator(bg)
    return (
        g.integers(0, 2**32, size=3, dtype=np.uint32).tobytes(),
        bg.random_raw(5).tobytes(),
        g.integers(0, 2**32, size=1, dtype=np.uint32).tobytes(),
        g.standard_normal(3).tobytes(),
    )


def _merge_regions(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Merge sorted spans separated by at most 8 bytes (alignment padding).

    Merged gaps become part of what is copied, so the self-check validates
    them like any other claimed byte.
    """
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= 8:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((s, e) for s, e in merged)


def _check_bitgen(kind: _Kind) -> None:
    """Self-check of one BitGenerator layout; configures ``kind`` on success."""
    if _MEM_OR_NONE is None:
        raise _CheckFailed("no raw memory access on this interpreter/platform")
    cls = kind.cls
    basic = cls.__basicsize__
    match = _match_pcg64 if kind.decode is _decode_pcg64 else None

    class _Sub(cls):  # type: ignore[valid-type, misc]
        pass

    objs: list[np.random.BitGenerator] = [cls(11), cls(12), _Sub(13)]
    state_offs = {obj.ctypes.state_address - id(obj) for obj in objs}
    if len(state_offs) != 1:
        raise _CheckFailed("state_address offset differs between instances")
    (state_off,) = state_offs
    if not _HEAD <= state_off < basic:
        raise _CheckFailed("state struct outside the object")

    # Pointer fields must point into the object, at a fixed offset.
    pointer_spans = [(state_off + p, state_off + p + 8) for p in kind.pointers]
    targets: list[int] = []
    for p in kind.pointers:
        offs = {
            struct.unpack_from("@P", _object_bytes(obj, basic), state_off + p)[0] - id(obj)
            for obj in objs
        }
        if len(offs) != 1:
            raise _CheckFailed("pointer target offset differs between instances")
        targets.append(offs.pop())
    spans = []
    for base, rel, size in kind.fields:
        start = (state_off if base < 0 else targets[base]) + rel
        spans.append((start, start + size))
    regions = _merge_regions(spans)
    for start, end in (*spans, *pointer_spans):
        if not _HEAD <= start < end <= basic:
            raise _CheckFailed("copied region outside the object")
    for ps, pe in pointer_spans:
        if any(s < pe and ps < e for s, e in regions):
            raise _CheckFailed("copied region overlaps a pointer")
    unclaimed = []  # spans of [_HEAD, basic) outside the regions
    pos = _HEAD
    for s, e in regions:
        unclaimed.append((pos, s))
        pos = e
    unclaimed.append((pos, basic))

    sources = _bitgen_sources(kind, 12)
    t = tuple(targets)

    # Phase 1: read-only.
    baseline = None
    for src in sources:
        public = src.state
        normal = kind.normalize(public)
        mems = []
        for obj in objs:
            obj.state = _renamed(public, obj)
            mem = _object_bytes(obj, basic)
            decoded = kind.decode(mem, state_off, t)
            if not (match(decoded, normal) if match else decoded == normal):
                raise _CheckFailed("decoded state differs from .state")
            mems.append(mem)
        for s, e in regions:
            if any(m[s:e] != mems[0][s:e] for m in mems):
                raise _CheckFailed("object-specific bytes in the copied region")
        if baseline is None:
            baseline = mems[0]
        if any(mems[0][s:e] != baseline[s:e] for s, e in unclaimed):
            raise _CheckFailed("the state setter changed bytes outside the copied region")

    # Phase 2: round trips through the raw path.
    get, write = _make_accessors(kind.tag, regions)
    for src in sources:
        expected = src.state
        snap = get(src)
        draws = _draws(src)
        for obj in objs:
            write(obj, snap)  # type: ignore[arg-type]
            if not _deep_equal(obj.state, _renamed(expected, obj)):
                raise _CheckFailed("raw copy does not reproduce .state")
            for _ in range(2):  # restoring twice gives the same stream
                if _draws(obj) != draws:
                    raise _CheckFailed("raw copy does not reproduce the draws")
                write(obj, snap)  # type: ignore[arg-type]
    kind.state_off = state_off
    kind.targets = t
    kind.regions = regions
    kind.get, kind.write = get, write


# --------------------------------------------------------------------------
# numpy RandomState (legacy)
# --------------------------------------------------------------------------

_L_TAG: Final = "repro_ctx:legacy:raw"
_L_TAG_PUBLIC: Final = "repro_ctx:legacy:public"
_L_GET_STATE: Final = vars(np.random.RandomState)["get_state"]
_L_SET_STATE: Final = vars(np.random.RandomState)["set_state"]
# Offsets (from id(rs)) of [has_gauss, gauss + 8), found by _check_legacy().
_l_start = 0
_l_end = 0
_l_gauss_rel = 0  # offset of `gauss` inside the copied bytes

_legacy_fast: set[type] = set()
_legacy_slow: set[type] = set()


def legacy_get(rs: np.random.RandomState) -> object:
    """Snapshot a legacy ``RandomState``, including the cached Gaussian.

    Equivalent to ``rs.get_state(legacy=False)``.
    """
    if type(rs) in _legacy_fast:
        a = id(rs)
        return (
            _L_TAG,
            bitgen_get(rs._bit_generator),
            _MEM[a + _l_start : a + _l_end].tobytes(),
        )
    return _legacy_get_slow(rs)


def legacy_set(rs: np.random.RandomState, state: object) -> None:
    """Restore a snapshot taken by ``legacy_get`` (equivalent to ``set_state``)."""
    st: _State = state  # type: ignore[assignment]
    if type(rs) in _legacy_fast and st and st[0] is _L_TAG:
        _legacy_write(rs, st)
        return
    _legacy_set_slow(rs, st)


def legacy_swap(rs: np.random.RandomState, state: object) -> object:
    """``legacy_get(rs)``, then ``legacy_set(rs, state)``; on failure ``rs`` is left as it was."""
    st: _State = state  # type: ignore[assignment]
    if type(rs) in _legacy_fast and st and st[0] is _L_TAG and len(st) == 3:
        bg = rs._bit_generator
        getter = _bg_getters.get(type(bg))
        entry = _bg_setters.get(type(bg))
        bg_state: _State = st[1]
        cache: bytes = st[2]
        if (
            getter is not None
            and entry is not None
            and bg_state
            and bg_state[0] is entry[0]
            and len(cache) == _l_end - _l_start
        ):
            a = id(rs)
            view = _MEM[a + _l_start : a + _l_end]
            raw = (_L_TAG, getter(bg), view.tobytes())
            entry[1](bg, bg_state)  # checks before writing; then the cache cannot fail
            view[:] = cache
            return raw
    return _swap_slow(legacy_get, legacy_set, rs, st)


def _legacy_write(rs: np.random.RandomState, st: _State) -> None:
    if len(st) != 3 or len(st[2]) != _l_end - _l_start:
        raise ValueError("malformed RandomState state")
    bitgen_set(rs._bit_generator, st[1])  # raises before touching the cache
    a = id(rs)
    _MEM[a + _l_start : a + _l_end] = st[2]


def _legacy_classify(rs: np.random.RandomState) -> bool:
    cls = type(rs)
    if cls in _legacy_fast:
        return True
    if cls in _legacy_slow:
        return False
    ok = (
        _enabled("numpy_legacy")
        and isinstance(rs, np.random.RandomState)
        and _lookup(cls, "get_state") is _L_GET_STATE
        and _lookup(cls, "set_state") is _L_SET_STATE
    )
    (_legacy_fast if ok else _legacy_slow).add(cls)
    return ok


def _legacy_get_slow(rs: np.random.RandomState) -> object:
    if _legacy_classify(rs):
        return legacy_get(rs)
    return (_L_TAG_PUBLIC, _freeze(rs.get_state(legacy=False)))


def _legacy_set_slow(rs: np.random.RandomState, st: _State) -> None:
    if not isinstance(st, tuple) or not st:
        raise TypeError("not a state returned by legacy_get()")
    tag = st[0]
    if tag == _L_TAG:
        if _legacy_classify(rs):
            _legacy_write(rs, st)
            return
        if not _VALIDATED.get("numpy_legacy", False):
            raise ValueError("raw RandomState state cannot be restored on this platform")
        if len(st) != 3 or len(st[2]) != _l_end - _l_start:
            raise ValueError("malformed RandomState state")
        public = _bitgen_to_public_for(rs._bit_generator, st[1])
        public["has_gauss"] = _i32(st[2], 0)
        public["gauss"] = struct.unpack_from("=d", st[2], _l_gauss_rel)[0]
        rs.set_state(public)
    elif tag == _L_TAG_PUBLIC and len(st) == 2:
        rs.set_state(_thaw(st[1]))  # type: ignore[arg-type]
    else:
        raise TypeError("not a state returned by legacy_get()")


def _changed(a: bytes, b: bytes) -> list[int]:
    return [i for i in range(_HEAD, len(a)) if a[i] != b[i]]


def _legacy_states(count: int) -> Iterator[dict[str, Any]]:
    for i in range(count):
        rs = np.random.RandomState(0x1E6 + 7919 * i)
        rs._bit_generator.random_raw(_DRAW_COUNTS[i % len(_DRAW_COUNTS)])
        if i % 2:
            rs.randn((1, 3, 5)[i % 3])  # odd count: a Gaussian is cached
        if i % 3 == 1:
            rs.standard_normal()
        yield rs.get_state(legacy=False)


def _legacy_draws(rs: np.random.RandomState) -> object:
    return (rs.randn(3).tobytes(), rs.randint(0, 2**31, size=2).tobytes(), rs.standard_normal())


def _check_legacy() -> None:
    """Find and validate the offsets of ``has_gauss``/``gauss`` in RandomState."""
    global _l_start, _l_end, _l_gauss_rel
    if _MEM_OR_NONE is None:
        raise _CheckFailed("no raw memory access on this interpreter/platform")
    cls = np.random.RandomState
    basic = cls.__basicsize__

    class _Sub(cls):  # type: ignore[valid-type, misc]
        pass

    objs: list[np.random.RandomState] = [cls(21), cls(22), _Sub(23)]
    probe = objs[0]
    base = probe.get_state(legacy=False)

    def image(has_gauss: int, gauss: float) -> bytes:
        probe.set_state({**base, "has_gauss": has_gauss, "gauss": gauss})
        return _object_bytes(probe, basic)

    # has_gauss: exactly one bit of a 4-byte aligned int flips 0 -> 1.
    m0, m1 = image(0, 0.0), image(1, 0.0)
    diff = _changed(m0, m1)
    if len(diff) != 1:
        raise _CheckFailed("has_gauss not found")
    hg = diff[0] - diff[0] % 4 if sys.byteorder == "little" else diff[0] - 3
    if hg % 4 or _i32(m0, hg) != 0 or _i32(m1, hg) != 1:
        raise _CheckFailed("has_gauss not a 4-byte int")

    # gauss: a double whose 8 bytes are all non-zero.
    x = float.fromhex("0x1.3579bdf2468acp-3")
    m2 = image(1, x)
    diff = _changed(m1, m2)
    if len(diff) != 8 or diff[-1] - diff[0] != 7 or diff[0] % 8:
        raise _CheckFailed("gauss not found")
    g = diff[0]
    if struct.unpack_from("=d", m2, g)[0] != x or not hg + 4 <= g <= hg + 8:
        raise _CheckFailed("gauss not a double next to has_gauss")
    start, end = hg, g + 8
    if not _HEAD <= start < end <= basic:
        raise _CheckFailed("Gaussian cache outside the object")

    def decode(mem: bytes) -> tuple[int, float]:
        return _i32(mem, hg), struct.unpack_from("=d", mem, g)[0]

    states = list(_legacy_states(12))
    # Phase 1: read-only.
    baseline = None
    for public in states:
        mems = []
        for obj in objs:
            obj.set_state(public)
            mem = _object_bytes(obj, basic)
            if decode(mem) != (public["has_gauss"], public["gauss"]):
                raise _CheckFailed("decoded Gaussian cache differs from get_state()")
            mems.append(mem)
        if any(m[start:end] != mems[0][start:end] for m in mems):
            raise _CheckFailed("object-specific bytes in the copied region")
        if baseline is None:
            baseline = mems[0]
        if any(not start <= i < end for i in _changed(baseline, mems[0])):
            raise _CheckFailed("set_state changed bytes outside the copied region")

    # Phase 2: round trips (the bit generator part via bitgen_get/bitgen_set).
    for public in states:
        src = cls(0)
        src.set_state(public)
        snap = (_L_TAG, bitgen_get(src._bit_generator), _object_bytes(src, basic)[start:end])
        expected = src.get_state(legacy=False)
        draws = _legacy_draws(src)
        for obj in objs:
            for i in range(2):  # restoring twice gives the same stream
                bitgen_set(obj._bit_generator, snap[1])
                a = id(obj)
                _MEM[a + start : a + end] = snap[2]
                if i == 0 and not _deep_equal(obj.get_state(legacy=False), expected):
                    raise _CheckFailed("raw copy does not reproduce get_state()")
                if _legacy_draws(obj) != draws:
                    raise _CheckFailed("raw copy does not reproduce the draws")
    _l_start, _l_end, _l_gauss_rel = start, end, g - hg


# --------------------------------------------------------------------------
# Import-time self-checks
# --------------------------------------------------------------------------


def _run_check(key: str, check: Callable[[], None]) -> None:
    """Run one self-check; record the result (and the reason for a failure)."""
    try:
        check()
    except _CheckFailed as exc:
        ok, reason = False, str(exc)
    except Exception as exc:  # a check must never take the import down
        ok, reason = False, f"{type(exc).__name__}: {exc}"
    else:
        ok, reason = True, ""
    _VALIDATED[key] = ok
    if reason:
        _CHECK_FAILURES[key] = reason
    dict.__setitem__(FAST_PATHS, key, ok)
    _invalidate_caches()


def _self_check() -> None:
    _run_check("random", _check_random)
    for kind in _KINDS:
        _run_check(kind.key, functools.partial(_check_bitgen, kind))
    # Runs after the BitGenerator checks: it uses bitgen_get/bitgen_set.
    _run_check("numpy_legacy", _check_legacy)


_self_check()
