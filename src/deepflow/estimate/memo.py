"""Bounded memo of the per-layer cost functions for one-strategy evaluations.

An optimizer that calls :func:`deepflow.predict` once per strategy re-derives, on every
call, layer costs that depend on only a few strategy fields (a dense layer's cost does not
change with ``pp`` or ``dp``). :class:`Memo` remembers the result of such a function of
an :class:`~deepflow.estimate.context.Env` keyed on exactly what the function read:

* the function runs on a recorder over the ``Env`` (and its ``batch``) that logs every
  attribute it reads; the union of the attribute paths ever read is the key's schema;
* the key is the content of those attributes in the new ``Env`` (:func:`fingerprint`):
  NumPy arrays by dtype, shape and bytes, dataclasses (the hierarchy, group placements)
  field by field, mappings item by item, numbers by type and value (floats bit by bit),
  the frozen specs (model, system) by value (pydantic equality of their validated fields,
  so a scenario rebuilt from the same mapping reuses the costs); any other object
  (algorithm objects) by identity;
* each attribute's fingerprint enters the key as its :func:`code`, a small integer drawn
  once per fingerprint and never given to another (the table of codes holds the objects
  kept by identity, so that their ids cannot be reused while their codes stand); a field
  of a batch of one whose fields are packed in two arrays enters as its Python value
  (:class:`_Schema`), so a key is a tuple of integers, hashed and compared in a few
  operations;
* when a computation reads a path not yet in the schema, the schema grows and every entry
  is dropped, so no entry is ever looked up with a key that omits something it read.

A function of the ``Env`` that reads only through attributes is then a function of the
key: two environments equal on every path of the schema make it read the same values in
the same order and return the same result, so a hit returns exactly what the call would
compute (``tests/core/test_predict_memo.py`` checks this over random scenarios and each
changed input). Only batches of one strategy are memoized (a large batch is evaluated in
one vectorized pass anyway); each function keeps at most :data:`MAXSIZE` entries, least
recently used first out. Cached arrays are made read-only, so a caller cannot alter a
later hit.

:class:`ArgsMemo` keys a pure function of plain arguments the same way, each argument by
the :func:`code` of its :func:`fingerprint`: the evaluator keeps with it the parts of a
one-strategy evaluation that read fewer strategy fields than the whole (the stage state,
the step-level data-parallel sync and optimizer time, which read the parameter counts and
the groups but not the micro-batch size or the recomputation).
"""

from __future__ import annotations

import itertools
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from enum import Enum
from operator import attrgetter, itemgetter
from typing import Any, Generic, TypeVar

import numpy as np

from deepflow.estimate.context import Env
from deepflow.parallel.batch import PACKED_FIELDS, StrategyBatch
from deepflow.specs.base import Spec

T = TypeVar("T")
V = TypeVar("V")
Codes = dict[str, int]
"""The codes (:func:`code`) of one ``Env``'s attribute paths, by path."""

MAXSIZE = 512
"""Entries kept per memoized function (least recently used evicted first)."""

_SCALARS = (bool, int, float, str, bytes, type(None), Enum)
_NUMBERS = frozenset({np.float64, np.float32, np.int64, np.int32, np.bool_})


class _Recorder:
    """Read-only view of an ``Env`` (or its batch) that logs the attribute paths read.

    A path is logged on its first read; the value is then kept in the view's own
    ``__dict__``, where later reads find it without calling :meth:`__getattr__` (the
    environment is frozen: the value cannot change while the function runs)."""

    __slots__ = ("__dict__", "_log", "_obj", "_prefix")

    def __init__(self, obj: object, prefix: str, log: list[str]) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._obj, name)
        path = self._prefix + name
        if isinstance(value, StrategyBatch):
            value = _Recorder(value, path + ".", self._log)
        else:
            self._log.append(path)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{name}: the environment is read-only")

    def __len__(self) -> int:
        self._log.append(self._prefix + "__len__")
        return len(self._obj)  # type: ignore[arg-type]


def _resolve(env: Env, path: str) -> object:
    obj: object = env
    for name in path.split("."):
        obj = len(obj) if name == "__len__" else getattr(obj, name)  # type: ignore[arg-type]
    return obj


def _getter(path: str) -> Callable[[Env], object]:
    """:func:`_resolve` of ``path`` as one compiled lookup (``operator.attrgetter``)."""
    if path.endswith("__len__"):
        inner = path[: -len("__len__")].rstrip(".")
        get = attrgetter(inner) if inner else (lambda env: env)
        return lambda env: len(get(env))  # type: ignore[arg-type]
    return attrgetter(path)


class _Spec:
    """A frozen spec in a key: equal to another exactly when the specs are equal (pydantic
    equality of their validated fields), its hash computed once (a spec's own hash walks
    every field on each call)."""

    __slots__ = ("hash", "value")

    def __init__(self, value: Spec) -> None:
        self.value = value
        self.hash = hash((type(value), value))

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        if type(other) is not _Spec:
            return NotImplemented
        a, b = self.value, other.value
        return a is b or (type(a) is type(b) and self.hash == other.hash and a == b)


_IMMUTABLE: OrderedDict[int, tuple[object, Hashable, int]] = OrderedDict()
"""Fingerprints of frozen objects (specs; frozen dataclasses of scalars, such as the
network hierarchy, or of read-only arrays, such as the group placements) by identity, with
their codes (:func:`code`), each entry holding its object so that the id stays its own;
bounded like the memo."""


_IMMUTABLE_LOCK = threading.Lock()


def _remember(value: object, key: Hashable) -> Hashable:
    number = _interned(key, None)  # such a key keeps nothing by identity
    with _IMMUTABLE_LOCK:
        _IMMUTABLE[id(value)] = (value, key, number)
        while len(_IMMUTABLE) > MAXSIZE:
            _IMMUTABLE.popitem(last=False)
    return key


def _scalar_key(key: Hashable) -> bool:
    """True when a fingerprint holds no array and no identity (a value of scalars)."""
    if isinstance(key, tuple):
        if (key and key[0] == "id") or (len(key) == 3 and isinstance(key[2], bytes)):
            return False
        return all(_scalar_key(k) for k in key)
    return True


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(kind: type) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(f.name for f in fields(kind))
    return names


def _read_only_fields(value: object) -> bool:
    """True when every field of dataclass ``value`` is a read-only array that owns its data,
    a scalar, or an object whose fingerprint is kept by identity already (the group
    placements kept per mesh, :mod:`deepflow.estimate.context`, and the frozen groups
    of them): then its fingerprint cannot change while the object lives and is kept by
    identity."""
    for name in _field_names(type(value)):
        a = getattr(value, name)
        if type(a) is np.ndarray:
            if a.flags.writeable or a.base is not None or a.dtype.hasobject:
                return False
        elif not isinstance(a, _SCALARS):
            known = _IMMUTABLE.get(id(a))
            if known is None or known[0] is not a:
                return False
    return True


def fingerprint(value: object, refs: list[object]) -> Hashable:
    """A hashable key equal for two values exactly when they are interchangeable inputs
    (see the module docstring); objects keyed by identity are appended to ``refs``."""
    kind = type(value)
    if kind is np.ndarray and not value.dtype.hasobject:  # type: ignore[attr-defined]
        return (value.dtype, value.shape, value.tobytes())  # type: ignore[attr-defined]
    if kind in _NUMBERS:  # a NumPy number (never kept by identity: checked first)
        return ("scalar", value.dtype, value.tobytes())  # type: ignore[attr-defined]
    known = _IMMUTABLE.get(id(value))
    if known is not None and known[0] is value:
        return known[1]
    if isinstance(value, np.generic) and not value.dtype.hasobject:
        return ("scalar", value.dtype, value.tobytes())
    if kind is float:  # every bit: -0.0 is not 0.0, NaN matches NaN
        return (kind, value.hex())  # type: ignore[attr-defined]
    if isinstance(value, _SCALARS):
        return (kind, value)
    if isinstance(value, tuple):
        return ("tuple", *(fingerprint(v, refs) for v in value))
    if isinstance(value, Mapping):
        items = sorted(
            ((repr(k), fingerprint(v, refs)) for k, v in value.items()), key=lambda kv: kv[0]
        )
        return ("mapping", kind, *items)
    if is_dataclass(value) and not isinstance(value, type):
        key = (kind, *(fingerprint(getattr(value, n), refs) for n in _field_names(kind)))
        if kind.__dataclass_params__.frozen and (  # type: ignore[attr-defined]
            _scalar_key(key) or _read_only_fields(value)
        ):
            return _remember(value, key)
        return key
    if isinstance(value, Spec):  # frozen and validated: equal fields compute the same
        try:
            wrapped = _Spec(value)
        except TypeError:  # a field that cannot hash: fall back to identity
            pass
        else:
            return _remember(value, ("spec", kind, wrapped))
    refs.append(value)
    return ("id", id(value))


def frozen(value: T, done: dict[int, object] | None = None) -> T:
    """``value`` with every array replaced by a read-only copy (tuples and dataclasses
    rebuilt, an object met twice rebuilt once so that identities are kept), so that a
    cached result shares no writable memory with any caller."""
    done = {} if done is None else done
    hit = done.get(id(value))
    if hit is not None:
        return hit  # type: ignore[return-value]
    out: object = value
    if isinstance(value, np.ndarray):
        out = value.copy()
        out.flags.writeable = False  # type: ignore[attr-defined]
    elif isinstance(value, tuple):
        out = type(value)(frozen(v, done) for v in value)
    elif is_dataclass(value) and not isinstance(value, type):
        out = replace(
            value, **{n: frozen(getattr(value, n), done) for n in _field_names(type(value))}
        )
    done[id(value)] = out
    return out  # type: ignore[return-value]


CODES_MAXSIZE = 1 << 16
"""Fingerprints given a code (:func:`code`) before the table is emptied."""
_CODES: dict[Hashable, int] = {}
"""The code of each fingerprint met since the table was last emptied."""
_HELD: dict[int, list[object]] = {}
"""The objects that the fingerprint of a code keeps by identity, held while the code's
fingerprint is in :data:`_CODES` (so that no other object takes one of their ids)."""
_FLOAT_BITS = struct.Struct("d").pack


def _itself(value: object) -> object:
    return value


def _empty(value: object) -> object:
    return None if value else ()


_RAW_OF: dict[type, Callable[[Any], object]] = {
    np.float64: _FLOAT_BITS, np.int64: int, np.bool_: bool, float: _FLOAT_BITS, int: _itself,
    bool: _itself, str: _itself, dict: _empty, type(None): _empty,
}  # fmt: skip
"""Types whose codes are kept by a raw value of their own, equal for two values only where
their fingerprints are equal: a float's eight bytes (a NumPy float64's too), a NumPy
int64's or bool's Python value, a Python int's, bool's or string's own value, ``()`` for
``None`` and for an empty dict (``None``: no raw value, a dict with items); and each enum
type met (:func:`code`), by its member."""
_RAW_CODES: dict[object, dict[object, int]] = {kind: {} for kind in _RAW_OF}
"""Per type of :data:`_RAW_OF`, the codes by raw value: what :func:`code` would give,
without building and hashing the fingerprint. Emptied with the codes, never replaced."""
_NEXT_CODE = itertools.count()
_CODES_LOCK = threading.Lock()


def _interned(key: Hashable, refs: list[object] | None) -> int:
    """The code of fingerprint ``key``, which keeps ``refs`` by identity: a new one, held
    with ``refs``, if the table has none (the table emptied first when full)."""
    number = _CODES.get(key)
    if number is None:
        with _CODES_LOCK:
            number = _CODES.get(key)
            if number is None:
                if len(_CODES) >= CODES_MAXSIZE:
                    _clear_codes()
                number = _CODES[key] = next(_NEXT_CODE)
                if refs:
                    _HELD[number] = refs
    return number


def _clear_codes() -> None:
    _CODES.clear()
    _HELD.clear()
    for table in _RAW_CODES.values():
        table.clear()


def clear_codes() -> None:
    """Empty the table of codes (:func:`code`) and the fingerprints of frozen objects;
    codes given out before stay unique (a fingerprint met again takes a new one)."""
    with _CODES_LOCK:
        _clear_codes()
    with _IMMUTABLE_LOCK:
        _IMMUTABLE.clear()


def code(value: object) -> int:
    """A small integer standing for ``fingerprint(value)`` in this process: two values with
    one code have equal fingerprints, and two values with equal fingerprints share a code
    while that fingerprint stays in the table, so a key of codes is as exact as a key of
    fingerprints and cheaper to hash and compare.

    Codes are drawn from one counter and never given twice: a fingerprint keeps its code
    while it is in the table (:data:`CODES_MAXSIZE` fingerprints, then the table is
    emptied and a fingerprint met again takes a new code, which costs only memo misses),
    and the table holds the objects a fingerprint keeps by identity, so that their ids
    cannot be taken by other objects while the code stands for them. NumPy float64, int64
    and bool scalars, Python numbers and strings and empty dicts are looked up by a raw
    value (:data:`_RAW_OF`), frozen objects by identity (their code kept with their
    fingerprint, :data:`_IMMUTABLE`)."""
    kind = type(value)
    if kind is np.ndarray:
        dtype = value.dtype  # type: ignore[attr-defined]
        if not dtype.hasobject:
            key = (dtype, value.shape, value.tobytes())  # type: ignore[attr-defined]
            number = _CODES.get(key)
            return _interned(key, None) if number is None else number
    raw_of = _RAW_OF.get(kind)
    if raw_of is not None and (raw := raw_of(value)) is not None:
        table = _RAW_CODES[kind]
        number = table.get(raw)
        if number is None:
            number = table[raw] = _interned(fingerprint(value, []), None)
        return number
    known = _IMMUTABLE.get(id(value))
    if known is not None and known[0] is value:
        return known[2]
    if isinstance(value, Enum):  # by its member from now on (one table per enum type)
        with _CODES_LOCK:
            _RAW_CODES.setdefault(kind, {})
            _RAW_OF.setdefault(kind, _itself)
    refs: list[object] = []
    return _interned(fingerprint(value, refs), refs)


_MISSING: Any = object()


def _recent(entries: dict[Hashable, V], key: Hashable) -> V:
    """The entry of ``key`` in the least-recently-used order of ``entries`` (a dict in use
    order, oldest first), moved last as the most recently used; :data:`_MISSING` if
    absent."""
    hit = entries.pop(key, _MISSING)
    if hit is not _MISSING:
        entries[key] = hit
    return hit


def _keep(entries: dict[Hashable, V], key: Hashable, value: V, maxsize: int) -> None:
    """``entries[key] = value`` as the most recently used, the least recently used entries
    evicted beyond ``maxsize``."""
    entries[key] = value
    while len(entries) > maxsize:
        del entries[next(iter(entries))]


def _coder(path: str) -> Callable[[Env], int]:
    """The :func:`code` of ``path``'s value in an ``Env``."""
    get = _getter(path)
    return lambda env: code(get(env))


def _picker(indices: list[int]) -> Callable[[list[Any]], tuple[Any, ...]]:
    """The elements ``indices`` of a list, as a tuple (of one or none too)."""
    if len(indices) == 1:
        index = indices[0]
        return lambda values: (values[index],)
    if not indices:
        return lambda values: ()
    return itemgetter(*indices)  # type: ignore[return-value]


class _Schema:
    """How a :class:`Memo` keys an ``Env`` on ``paths``: the codes of the paths' values
    (:func:`code`) in path order; for a batch of one whose fields are packed in an int64
    and a bool array (:attr:`~deepflow.parallel.batch.StrategyBatch.packed_values`), the
    codes of the paths outside those fields, then the Python values of the packed fields
    read, from the two arrays (picked from one ``tolist`` each). A field of a packed batch
    is always a one-element array of its packed array's dtype, so equal values mean equal
    arrays; a packed batch's key, a tuple of three tuples, is never equal to a key of
    codes (integers), so a packed and an unpacked batch only miss each other's entries."""

    __slots__ = ("coders", "env_coders", "env_paths", "flags", "ints", "paths")

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.paths = paths
        self.coders = tuple((p, _coder(p)) for p in paths)
        slots = {p: PACKED_FIELDS.get(p[len("batch.") :]) for p in paths if p.startswith("batch.")}
        self.env_coders = tuple((p, c) for p, c in self.coders if slots.get(p) is None)
        self.env_paths = tuple(p for p, _ in self.env_coders)
        packed = [slot for slot in slots.values() if slot is not None]
        self.ints = _picker([i for array, i in packed if array == 0])
        self.flags = _picker([i for array, i in packed if array == 1])

    def key(self, env: Env, seen: Codes | None) -> Hashable:
        values = env.batch.packed_values
        if values is None:
            return _codes(self.coders, self.paths, env, seen)
        codes = _codes(self.env_coders, self.env_paths, env, seen)
        return (codes, self.ints(values[0]), self.flags(values[1]))


def _codes(
    coders: tuple[tuple[str, Callable[[Env], int]], ...],
    paths: tuple[str, ...],
    env: Env,
    seen: Codes | None,
) -> tuple[int, ...]:
    """The codes of ``env``'s values at ``paths`` (``coders``: each path's coder), those
    in ``seen`` taken from it and the others added to it."""
    if seen is None:
        return tuple([coder(env) for _, coder in coders])
    try:  # every path looked up already by a memo before this one in the call
        return tuple(map(seen.__getitem__, paths))
    except KeyError:
        pass
    for path, coder in coders:
        if path not in seen:
            seen[path] = coder(env)
    return tuple(map(seen.__getitem__, paths))


@dataclass
class Memo(Generic[T]):
    """The memo of one function of an ``Env`` (see the module docstring)."""

    function: Callable[[Env], T]
    maxsize: int = MAXSIZE
    paths: tuple[str, ...] = ()
    entries: dict[Hashable, T] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    schema: _Schema | None = None

    def key(self, env: Env, seen: Codes | None = None) -> Hashable:
        """The key of ``env`` on :attr:`paths` (:class:`_Schema`). ``seen`` (path -> code)
        shares the codes of one ``env`` between the memos that read the same paths: each
        path is looked up once per call."""
        schema = self.schema
        if schema is None or schema.paths is not self.paths:
            schema = self.schema = _Schema(self.paths)
        return schema.key(env, seen)

    def __call__(self, env: Env, seen: Codes | None = None) -> T:
        """``function(env)``, from the memo where a call read the same inputs before;
        ``seen``: see :meth:`key`."""
        if len(env.batch) != 1:
            return self.function(env)
        with self.lock:
            paths = self.paths
            key = self.key(env, seen)
            hit = _recent(self.entries, key)
            if hit is not _MISSING:
                self.hits += 1
                return hit
        log: list[str] = []
        value = frozen(self.function(_Recorder(env, "", log)))  # type: ignore[arg-type]
        with self.lock:
            self.misses += 1
            new = tuple(p for p in dict.fromkeys(log) if p not in self.paths)
            if new:  # a longer key: the entries' keys omit these paths
                self.paths = self.paths + new
                self.entries.clear()
            if self.paths is not paths:  # the schema grew since the lookup
                key = self.key(env, seen)
            _keep(self.entries, key, value, self.maxsize)
        return value

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.paths = ()
            self.schema = None
            self.hits = self.misses = 0


@dataclass
class ArgsMemo(Generic[T]):
    """The results of a pure function by the values of its arguments, for the parts of a
    one-strategy evaluation that depend on fewer strategy fields than the whole (the
    data-parallel sync and the sharded state read the parameter counts and the groups,
    not the micro-batch size or the recomputation): each argument is keyed by its
    :func:`code`, which stands for its :func:`fingerprint` (arrays and NumPy scalars by
    dtype, shape and bytes, floats bit by bit, frozen objects by value or by identity, held
    by the table of codes), so a hit returns what the call would compute from those
    values. Results are made read-only (:func:`frozen`); at most ``maxsize`` entries,
    least recently used first out."""

    function: Callable[..., T]
    maxsize: int = MAXSIZE
    entries: dict[tuple[int, ...], T] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, *args: object) -> T:
        key = tuple(map(code, args))
        with self.lock:
            hit = _recent(self.entries, key)
            if hit is not _MISSING:
                self.hits += 1
                return hit
        value = frozen(self.function(*args))
        with self.lock:
            self.misses += 1
            _keep(self.entries, key, value, self.maxsize)
        return value

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.hits = self.misses = 0
