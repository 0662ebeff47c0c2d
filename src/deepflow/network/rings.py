"""How many rings a node's links can carry at once: the bandwidth of multi-ring collectives.

NCCL runs a ring collective as several rings ("channels") at once, each routed over its
own links, and searches the node topology for the set of rings that moves the most data
(Jeaugey, "NCCL 2.0", GTC 2017; ``src/graph/search.cc``). On a switch every rank has one
port and the rings share it; on a direct-wired node such as the DGX-1 hybrid cube-mesh the
achievable ring count depends on which GPUs take part, which is why the measured bus
bandwidth of a V100 node is not monotonic in the GPU count.

:func:`ring_count` finds the largest number of directed Hamiltonian rings over ``ranks``
that fit the link capacities, each ring consuming one ``unit`` of bandwidth on every link it
crosses. A hop between ranks uses their direct link; only when no ring exists that way does
a hop through an intermediate GPU become allowed (NCCL's ``PATH_NVB``, NVLink through a
peer, NCCL 2.9). Exhaustive search: meant for nodes of up to about 8-12 GPUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise, permutations

import numpy as np

from deepflow.network.topology import LinkGraph


def _cycles(graph: LinkGraph, ranks: tuple[int, ...], forward: bool) -> list[tuple[int, ...]]:
    """Directed Hamiltonian cycles over ``ranks`` (starting at ``ranks[0]``) as link lists."""
    hop: dict[tuple[int, int], tuple[int, ...]] = {}
    for a in ranks:
        for b in ranks:
            if a == b:
                continue
            try:
                hop[(a, b)] = (graph.link_between(a, b),)
            except KeyError:
                if forward:
                    hop[(a, b)] = graph.route(a, b)
    first, rest = ranks[0], ranks[1:]
    out = []
    for perm in permutations(rest):
        order = (first, *perm, first)
        pairs = list(pairwise(order))
        if all(p in hop for p in pairs):
            out.append(tuple(lid for p in pairs for lid in hop[p]))
    return out


def _pack(cycles: list[tuple[int, ...]], capacity: np.ndarray, bound: int) -> int:
    """Largest multiset of ``cycles`` fitting ``capacity`` (depth-first, best first)."""
    best = 0
    uses = [np.bincount(np.asarray(c), minlength=capacity.size) for c in cycles]

    def search(start: int, cap: np.ndarray, count: int) -> None:
        nonlocal best
        best = max(best, count)
        if best >= bound:
            return
        for i in range(start, len(uses)):
            if (uses[i] <= cap).all():
                search(i, cap - uses[i], count + 1)
                if best >= bound:
                    return

    search(0, capacity, 0)
    return best


@lru_cache(maxsize=256)
def _ring_count(graph: LinkGraph, ranks: tuple[int, ...], unit: float) -> int:
    capacity = np.floor(graph.bandwidth / unit + 1e-9).astype(np.int64)
    # every ring leaves and enters each rank once: out-capacity bounds the count
    bound = min(int(capacity[graph.out_links(r)].sum()) for r in ranks)
    for forward in (False, True):
        cycles = _cycles(graph, ranks, forward)
        if cycles:
            found = _pack(cycles, capacity, bound)
            if found:
                return found
    return 0


def ring_count(graph: LinkGraph, ranks: Sequence[int], unit: float | None = None) -> int:
    """Number of rings of ``unit`` bytes/s (default: the slowest link) that ``ranks`` can
    run at once on ``graph``; 1 for two ranks sharing one link, 0 when no ring exists."""
    ranks = tuple(int(r) for r in ranks)
    if len(ranks) < 2:
        return 0
    if len(ranks) == 2:
        a, b = ranks
        u = unit or float(graph.bandwidth.min())
        lids = [graph.link_between(a, b)] if b in graph.dst[graph.out_links(a)] else []
        path = lids or list(graph.route(a, b))
        back = list(graph.route(b, a))
        return int(min(graph.bandwidth[path + back].min() / u + 1e-9, 10**9))
    return _ring_count(graph, ranks, unit or float(graph.bandwidth.min()))


def ring_bandwidth(graph: LinkGraph, ranks: Sequence[int], unit: float | None = None) -> float:
    """Aggregate ring bandwidth (bytes/s per rank and direction): rings x unit."""
    u = unit or float(graph.bandwidth.min())
    return ring_count(graph, ranks, u) * u
