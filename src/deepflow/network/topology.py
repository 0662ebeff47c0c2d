"""Link-level network graphs, routing, and the ``Topology`` interface.

A topology is a directed multigraph: nodes are accelerators (the *endpoints*, rank ``i``
sits on node ``endpoints[i]``) and switches; every physical full-duplex cable is two
directed links, each with its own bandwidth (bytes/s) and latency (s). Contention is
accounted per directed link, as in ASTRA-sim's congestion-aware analytical backend
(docs/reference/chakra-astra-msccl.md sec. 2.2).

Routing is deterministic: breadth-first shortest path with the lowest link id winning ties,
unless a builder installs another router (dimension-order routing for tori and ASTRA-sim
multi-dimensional networks, ECMP by hash for fat trees).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Topology(Protocol):
    """What the chunk-level simulator needs from a network.

    Contract: ``endpoints[i]`` is the node of rank ``i``; ``link_arrays()`` returns
    ``(src, dst, bandwidth, latency)`` arrays indexed by link id; ``route(a, b)`` returns
    the link ids a message from node ``a`` to node ``b`` traverses, in order (empty when
    ``a == b``); routes are deterministic.
    """

    @property
    def endpoints(self) -> tuple[int, ...]: ...

    def link_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...

    def route(self, src: int, dst: int) -> tuple[int, ...]: ...


Router = Callable[["LinkGraph", int, int], tuple[int, ...]]


@dataclass(frozen=True, eq=False)
class LinkGraph:
    """A concrete :class:`Topology`: arrays of directed links plus a router."""

    name: str
    num_nodes: int
    endpoints: tuple[int, ...]
    src: np.ndarray
    dst: np.ndarray
    bandwidth: np.ndarray
    latency: np.ndarray
    router: Router | None = None
    _cache: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict, repr=False)
    _out: list[list[int]] = field(default_factory=list, repr=False)

    @classmethod
    def build(
        cls,
        name: str,
        num_nodes: int,
        endpoints: Sequence[int],
        links: Sequence[tuple[int, int, float, float]],
        router: Router | None = None,
    ) -> LinkGraph:
        """Make a graph from ``(src, dst, bandwidth, latency)`` tuples (directed links)."""
        arr = np.asarray(links, dtype=np.float64).reshape(-1, 4)
        graph = cls(
            name,
            int(num_nodes),
            tuple(int(e) for e in endpoints),
            arr[:, 0].astype(np.int64),
            arr[:, 1].astype(np.int64),
            arr[:, 2].copy(),
            arr[:, 3].copy(),
            router,
        )
        out: list[list[int]] = [[] for _ in range(graph.num_nodes)]
        for lid, s in enumerate(graph.src.tolist()):
            out[s].append(lid)
        graph._out.extend(out)
        return graph

    @property
    def num_links(self) -> int:
        return int(self.src.size)

    def link_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.src, self.dst, self.bandwidth, self.latency

    def out_links(self, node: int) -> list[int]:
        return self._out[node]

    def link_between(self, a: int, b: int) -> int:
        """The lowest-id link from node ``a`` to node ``b`` (KeyError if none)."""
        for lid in self._out[a]:
            if self.dst[lid] == b:
                return lid
        raise KeyError(f"no link {a}->{b} in {self.name}")

    def route(self, src: int, dst: int) -> tuple[int, ...]:
        key = (src, dst)
        hit = self._cache.get(key)
        if hit is None:
            hit = () if src == dst else (self.router or shortest_path)(self, src, dst)
            self._cache[key] = hit
        return hit

    def injection_bandwidth(self, node: int) -> float:
        """Sum of the bandwidths of the links leaving ``node`` (bytes/s)."""
        return float(self.bandwidth[self._out[node]].sum())

    def with_links(
        self, links: Sequence[tuple[int, int, float, float]], name: str | None = None
    ) -> LinkGraph:
        """A copy with ``links`` replacing the link set (same nodes, endpoints, router)."""
        return LinkGraph.build(
            name or self.name, self.num_nodes, self.endpoints, links, self.router
        )


def shortest_path(graph: LinkGraph, src: int, dst: int) -> tuple[int, ...]:
    """Fewest-hop route by breadth-first search; ties go to the lowest link id, so the
    result is deterministic (Cormen et al., *Introduction to Algorithms*, 3rd ed., sec. 22.2).

    Messages are not routed *through* endpoints other than their own: an accelerator is not
    a router, except in graphs without switches (rings, tori, hybrid cube-meshes), where
    forwarding through a peer is the only path (NCCL's ``PATH_NVB`` case).
    """
    endpoints = set(graph.endpoints)
    has_switch = graph.num_nodes > len(endpoints)
    prev: dict[int, int] = {src: -1}
    queue = deque([src])
    while queue:
        node = queue.popleft()
        if node == dst:
            break
        if node != src and has_switch and node in endpoints:
            continue
        for lid in graph.out_links(node):
            nxt = int(graph.dst[lid])
            if nxt not in prev:
                prev[nxt] = lid
                queue.append(nxt)
    if dst not in prev:
        raise ValueError(f"{graph.name}: node {dst} unreachable from {src}")
    path: list[int] = []
    node = dst
    while node != src:
        lid = prev[node]
        path.append(lid)
        node = int(graph.src[lid])
    return tuple(reversed(path))


def link_loads(graph: Topology, src_nodes: object, dst_nodes: object, nbytes: object) -> np.ndarray:
    """Bytes carried by every directed link when each ``src -> dst`` message of ``nbytes``
    follows its route: the per-link accounting behind bisection and hot-spot analysis."""
    s = np.atleast_1d(np.asarray(src_nodes, dtype=np.int64))
    d = np.atleast_1d(np.asarray(dst_nodes, dtype=np.int64))
    b = np.broadcast_to(np.asarray(nbytes, dtype=np.float64), s.shape)
    links = graph.link_arrays()[0]
    load = np.zeros(links.size)
    for a, c, size in zip(s.tolist(), d.tolist(), b.tolist(), strict=True):
        for lid in graph.route(a, c):
            load[lid] += size
    return load
