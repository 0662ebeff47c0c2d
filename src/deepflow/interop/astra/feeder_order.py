"""The order in which ASTRA-sim issues the ready nodes of a custom collective's ET.

``CustomAlgorithm::issue_dep_free_nodes`` (astra-sim ``518bd51``,
``astra-sim/system/astraccl/custom_collectives/CustomAlgorithm.cc``) copies the feeder's
set of dependency-free nodes and issues them in that copy's iteration order; each send
enters the network at once (``Sys::sim_send`` with delay 0,
``CongestionAwareNetworkApi::sim_send``). On the congestion-aware network the order in
which simultaneous sends enter a shared link decides who waits, so the replay needs that
iteration order, not ascending ids.

The set is a ``std::unordered_set<NodeId>`` of Chakra's ``feeder_v3`` dependency resolver
(``_DependancyLayer``: ``add_node``, ``resolve_dependancy_free_nodes``, ``take_node``,
``finish_node`` in ``dependancy_solver.cpp``), whose children and parent sets are
unordered containers too. Their iteration order is that of GNU libstdc++'s ``_Hashtable``
for an integer key (identity hash, bucket ``id % bucket_count``), which :class:`CxxHashSet`
reproduces operation by operation:

* one singly linked list of nodes; a bucket holds the node *before* its first node; an
  insert goes to the front of its bucket, or, into an empty bucket, to the front of the
  list (``_M_insert_bucket_begin``);
* ``_Prime_rehash_policy``: no buckets before the first insert, then 13 (the first insert
  asks for at least 11), and on overflow of ``bucket_count`` elements the next listed prime
  at least twice as large (``_M_need_rehash``, ``_M_next_bkt``); a rehash walks the list
  and puts each node at the front of the new list when its bucket is new, else after the
  bucket's first (``_M_rehash_aux``);
* erase unlinks and fixes the neighbouring buckets (``_M_erase``,
  ``_M_remove_bucket_begin``); a copy keeps the order (``_M_assign``).

:class:`FeederOrder` applies the resolver's operations to these sets: ``add_node`` for
every node in file order (``ETFeeder::build_index_dependancy_cache``; the parents are an
``unordered_set`` filled with the data dependencies, then the control dependencies), the
initial free set in the order of the child-to-parents map, and on ``finish_node`` the
children in their set's order.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator

__all__ = ["CxxHashSet", "FeederOrder"]

# libstdc++ ``__prime_list`` (``src/shared/hashtable-aux.cc``), as far as replay sizes go
_PRIMES = (
    2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79,
    83, 89, 97, 103, 109, 113, 127, 137, 139, 149, 157, 167, 179, 193, 199, 211, 227, 241,
    257, 277, 293, 313, 337, 359, 383, 409, 439, 467, 503, 541, 577, 619, 661, 709, 761,
    823, 887, 953, 1031, 1109, 1193, 1289, 1381, 1493, 1613, 1741, 1879, 2029, 2179, 2357,
    2549, 2753, 2971, 3209, 3469, 3739, 4027, 4349, 4703, 5087, 5503, 5953, 6427, 6949,
    7517, 8123, 8783, 9497, 10273, 11113, 12011, 12983, 14033, 15173, 16411, 17749, 19183,
    20753, 22447, 24281, 26267, 28411, 30727, 33223, 35933, 38873, 42043, 45481, 49201,
    53201, 57557, 62233, 67307, 72817, 78779, 85229, 92203, 99733,
)  # fmt: skip
_FAST = (2, 2, 2, 3, 5, 5, 7, 7, 11, 11, 11, 11, 13, 13)
_BEFORE_BEGIN = -1  # the list head's id (node ids are not negative)


class CxxHashSet:
    """A ``std::unordered_set<uint64_t>`` of GNU libstdc++, iteration order included."""

    __slots__ = ("_buckets", "_count", "_next", "_next_resize")

    def __init__(self, items: Iterable[int] = ()) -> None:
        self._buckets: list[int | None] = [None]
        self._next: dict[int, int | None] = {_BEFORE_BEGIN: None}
        self._count = 0
        self._next_resize = 0
        for item in items:
            self.add(item)

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        return key in self._next and key != _BEFORE_BEGIN

    def __iter__(self) -> Iterator[int]:
        node = self._next[_BEFORE_BEGIN]
        while node is not None:
            yield node
            node = self._next[node]

    # -- _Prime_rehash_policy -----------------------------------------------------------
    def _next_bkt(self, n: int) -> int:
        if n < len(_FAST):
            if n == 0:
                return 1
            self._next_resize = _FAST[n]
            return _FAST[n]
        i = bisect.bisect_left(_PRIMES, n, lo=6)
        if i >= len(_PRIMES):
            raise OverflowError("more set elements than the replay's prime table covers")
        self._next_resize = _PRIMES[i]
        return _PRIMES[i]

    def _need_rehash(self, n_ins: int) -> int:
        n_bkt, n_elt = len(self._buckets), self._count
        if n_elt + n_ins > self._next_resize:
            min_bkts = max(n_elt + n_ins, 11 if self._next_resize == 0 else 0)
            if min_bkts >= n_bkt:
                return self._next_bkt(max(math.floor(min_bkts) + 1, n_bkt * 2))
            self._next_resize = n_bkt
        return 0

    def _rehash(self, n: int) -> None:
        buckets: list[int | None] = [None] * n
        nxt = self._next
        p = nxt[_BEFORE_BEGIN]
        nxt[_BEFORE_BEGIN] = None
        bbegin_bkt = 0
        while p is not None:
            following = nxt[p]
            bkt = p % n
            before = buckets[bkt]
            if before is None:
                nxt[p] = nxt[_BEFORE_BEGIN]
                nxt[_BEFORE_BEGIN] = p
                buckets[bkt] = _BEFORE_BEGIN
                if nxt[p] is not None:
                    buckets[bbegin_bkt] = p
                bbegin_bkt = bkt
            else:
                nxt[p] = nxt[before]
                nxt[before] = p
            p = following
        self._buckets = buckets

    # -- modifiers ----------------------------------------------------------------------
    def add(self, key: int) -> bool:
        """``insert``: ``False`` when ``key`` is there already."""
        if key in self:
            return False
        n = self._need_rehash(1)
        if n:
            self._rehash(n)
        nxt, buckets = self._next, self._buckets
        bkt = key % len(buckets)
        before = buckets[bkt]
        if before is not None:
            nxt[key] = nxt[before]
            nxt[before] = key
        else:
            first = nxt[_BEFORE_BEGIN]
            nxt[key] = first
            nxt[_BEFORE_BEGIN] = key
            if first is not None:
                buckets[first % len(buckets)] = key
            buckets[bkt] = _BEFORE_BEGIN
        self._count += 1
        return True

    def discard(self, key: int) -> bool:
        """``erase(key)``: ``False`` when ``key`` was not there."""
        if key not in self:
            return False
        nxt, buckets = self._next, self._buckets
        n = len(buckets)
        bkt = key % n
        prev = buckets[bkt]
        assert prev is not None
        while nxt[prev] != key:
            prev = nxt[prev]  # type: ignore[assignment]
        following = nxt[key]
        if prev == buckets[bkt]:
            next_bkt = following % n if following is not None else 0
            if following is None or next_bkt != bkt:
                if following is not None:
                    buckets[next_bkt] = buckets[bkt]
                if buckets[bkt] == _BEFORE_BEGIN:
                    nxt[_BEFORE_BEGIN] = following
                buckets[bkt] = None
        elif following is not None:
            next_bkt = following % n
            if next_bkt != bkt:
                buckets[next_bkt] = prev
        nxt[prev] = following
        del nxt[key]
        self._count -= 1
        return True


class _CxxMap:
    """A ``std::unordered_map<uint64_t, unordered_set<uint64_t>>``: the key order of a
    :class:`CxxHashSet`, and a value per key."""

    def __init__(self) -> None:
        self.keys = CxxHashSet()
        self.values: dict[int, CxxHashSet] = {}

    def get(self, key: int) -> CxxHashSet:
        """``operator[]``: the value, inserted empty when absent."""
        if key not in self.values:
            self.keys.add(key)
            self.values[key] = CxxHashSet()
        return self.values[key]

    def erase(self, key: int) -> None:
        if key in self.values:
            self.keys.discard(key)
            del self.values[key]


class FeederOrder:
    """The enabled-dependency layer of ``feeder_v3``'s resolver for one ET: which nodes
    are free, in the order ``issue_dep_free_nodes`` issues them."""

    def __init__(self, nodes: Iterable[tuple[int, Iterable[int]]]) -> None:
        """``nodes``: (id, parents) in file order, the parents data dependencies first."""
        self.child_map_parent = _CxxMap()
        self.parent_map_child = _CxxMap()
        for node, deps in nodes:
            parents = CxxHashSet(deps)
            self._allocate(node)
            for parent in parents:
                self._allocate(parent)
                self.child_map_parent.get(node).add(parent)
                self.parent_map_child.get(parent).add(node)
        self.free = CxxHashSet()
        for node in self.child_map_parent.keys:
            if not len(self.child_map_parent.values[node]):
                self.free.add(node)

    def _allocate(self, node: int) -> None:
        self.child_map_parent.get(node)
        self.parent_map_child.get(node)

    def take_all(self) -> list[int]:
        """The free nodes in iteration order (``issue_dep_free_nodes`` iterates a copy),
        each taken (``take_node``)."""
        nodes = list(self.free)
        for node in nodes:
            self.free.discard(node)
        return nodes

    def finish(self, node: int) -> None:
        """``finish_node``: children whose last parent this was become free."""
        for child in self.parent_map_child.get(node):
            parents = self.child_map_parent.get(child)
            parents.discard(node)
            if not len(parents):
                self.free.add(child)
        self.child_map_parent.erase(node)
        self.parent_map_child.erase(node)
