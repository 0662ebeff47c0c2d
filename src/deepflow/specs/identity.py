"""A bounded cache of a function of one frozen object, keyed on that object's identity.

``deepflow.predict`` in an optimizer loop passes the same model and system objects on every
call, with another strategy. What depends on the model or system alone (the network
hierarchy, the accelerator's peak table) is then computed once per object instead of once
per call. The key is the object's ``id``; each entry holds a reference to its object, so
that the identity cannot be reused by another object while the entry lives, and the
objects are frozen pydantic specs, so that what the function read cannot change. A new
object equal to an old one (a scenario loaded again) is a miss: it computes the same value
once more. Least recently used entries go first past :data:`MAXSIZE`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

MAXSIZE = 32
"""Objects remembered per function."""


class IdentityCache(Generic[K, V]):
    """``function(obj)`` remembered per object (see the module docstring)."""

    def __init__(self, function: Callable[[K], V], maxsize: int = MAXSIZE) -> None:
        self.function = function
        self.maxsize = maxsize
        self.entries: OrderedDict[int, tuple[K, V]] = OrderedDict()
        self.lock = threading.Lock()

    def __call__(self, obj: K) -> V:
        key = id(obj)
        hit = self.entries.get(key)
        if hit is not None and hit[0] is obj:
            return hit[1]
        value = self.function(obj)
        with self.lock:
            self.entries[key] = (obj, value)
            self.entries.move_to_end(key)
            while len(self.entries) > self.maxsize:
                self.entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
