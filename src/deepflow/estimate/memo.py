"""Bounded memo of the per-layer cost functions for one-strategy evaluations.

An optimizer that calls :func:`deepflow.predict` once per strategy re-derives, on every
call, layer costs that depend on only a few strategy fields (a dense layer's cost does not
change with ``pp`` or ``dp``). :class:`Memo` remembers the result of such a function of
an :class:`~deepflow.estimate.context.Env` keyed on exactly what the function read:

* the function runs on a recorder over the ``Env`` (and its ``batch``) that logs every
  attribute it reads; the union of the attribute paths ever read is the key's schema;
* the key is the content of those attributes in the new ``Env``: NumPy arrays by dtype,
  shape and bytes, dataclasses (the hierarchy, group placements) field by field,
  mappings item by item, numbers by type and value (floats bit by bit), the frozen specs
  (model, system) by value (pydantic equality of their validated fields, so a scenario
  rebuilt from the same mapping reuses the costs); any other object
  (algorithm objects) by identity, the entry holding a reference so that the identity
  cannot be reused while the entry lives;
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
:func:`fingerprint`: the evaluator keeps with it the parts of a one-strategy evaluation
that read fewer strategy fields than the whole (the stage state, the step-level
data-parallel sync and optimizer time, which read the parameter counts and the groups but
not the micro-batch size or the recomputation).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from enum import Enum
from operator import attrgetter
from typing import Any, Generic, TypeVar

import numpy as np

from deepflow.estimate.context import Env
from deepflow.parallel.batch import StrategyBatch
from deepflow.specs.base import Spec

T = TypeVar("T")
V = TypeVar("V")
Fingerprints = dict[str, tuple[Hashable, list[object]]]
"""Fingerprints of one ``Env`` by attribute path, with the objects each keeps by identity."""

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


_IMMUTABLE: OrderedDict[int, tuple[object, Hashable]] = OrderedDict()
"""Fingerprints of frozen objects (specs; frozen dataclasses of scalars, such as the
network hierarchy, or of read-only arrays, such as the group placements) by identity, each entry holding its object so that the id stays its
own; bounded like the memo."""


_IMMUTABLE_LOCK = threading.Lock()


def _remember(value: object, key: Hashable) -> Hashable:
    with _IMMUTABLE_LOCK:
        _IMMUTABLE[id(value)] = (value, key)
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


def _recent(entries: dict[Hashable, V], key: Hashable) -> V | None:
    """The entry of ``key`` in the least-recently-used order of ``entries`` (a dict in use
    order, oldest first), moved last as the most recently used; ``None`` if absent."""
    hit = entries.pop(key, None)
    if hit is not None:
        entries[key] = hit
    return hit


def _keep(entries: dict[Hashable, V], key: Hashable, value: V, maxsize: int) -> None:
    """``entries[key] = value`` as the most recently used, the least recently used entries
    evicted beyond ``maxsize``."""
    entries[key] = value
    while len(entries) > maxsize:
        del entries[next(iter(entries))]


@dataclass
class Memo(Generic[T]):
    """The memo of one function of an ``Env`` (see the module docstring)."""

    function: Callable[[Env], T]
    maxsize: int = MAXSIZE
    paths: tuple[str, ...] = ()
    entries: dict[Hashable, tuple[T, list[object]]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    getters: tuple[Callable[[Env], object], ...] = ()

    def key(self, env: Env, seen: Fingerprints | None = None) -> tuple[Hashable, list[object]]:
        """The key of ``env`` and the objects it holds by identity. ``seen`` (path ->
        fingerprint and its objects) shares the fingerprints of one ``env`` between the
        memos that read the same paths: each path is fingerprinted once per call."""
        refs: list[object] = []
        if len(self.getters) != len(self.paths):
            self.getters = tuple(_getter(p) for p in self.paths)
        if seen is None:
            return tuple([fingerprint(get(env), refs) for get in self.getters]), refs
        parts = []
        for path, get in zip(self.paths, self.getters, strict=True):
            known = seen.get(path)
            if known is None:
                own: list[object] = []
                known = seen[path] = (fingerprint(get(env), own), own)
            parts.append(known[0])
            refs += known[1]
        return tuple(parts), refs

    def __call__(self, env: Env, seen: Fingerprints | None = None) -> T:
        """``function(env)``, from the memo where a call read the same inputs before;
        ``seen``: see :meth:`key`."""
        if len(env.batch) != 1:
            return self.function(env)
        with self.lock:
            key, refs = self.key(env, seen)
            hit = _recent(self.entries, key)
            if hit is not None:
                self.hits += 1
                return hit[0]
        log: list[str] = []
        value = frozen(self.function(_Recorder(env, "", log)))  # type: ignore[arg-type]
        with self.lock:
            self.misses += 1
            new = tuple(p for p in dict.fromkeys(log) if p not in self.paths)
            if new:  # a longer key: the entries' keys omit these paths
                self.paths = self.paths + new
                self.entries.clear()
            if len(key) != len(self.paths):  # the schema grew since the lookup
                key, refs = self.key(env, seen)
            _keep(self.entries, key, (value, refs), self.maxsize)
        return value

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.paths = ()
            self.getters = ()
            self.hits = self.misses = 0


@dataclass
class ArgsMemo(Generic[T]):
    """The results of a pure function by the values of its arguments, for the parts of a
    one-strategy evaluation that depend on fewer strategy fields than the whole (the
    data-parallel sync and the sharded state read the parameter counts and the groups,
    not the micro-batch size or the recomputation): each argument is keyed by
    :func:`fingerprint` (arrays and NumPy scalars by dtype, shape and bytes, floats bit by
    bit, frozen objects by value or by identity, held by the entry), so a hit returns
    what the call would compute from those values. Results are made read-only
    (:func:`frozen`); at most ``maxsize`` entries, least recently used first out."""

    function: Callable[..., T]
    maxsize: int = MAXSIZE
    entries: dict[Hashable, tuple[T, list[object]]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, *args: object) -> T:
        refs: list[object] = []
        key = tuple([fingerprint(a, refs) for a in args])
        with self.lock:
            hit = _recent(self.entries, key)
            if hit is not None:
                self.hits += 1
                return hit[0]
        value = frozen(self.function(*args))
        with self.lock:
            self.misses += 1
            _keep(self.entries, key, (value, refs), self.maxsize)
        return value

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.hits = self.misses = 0
