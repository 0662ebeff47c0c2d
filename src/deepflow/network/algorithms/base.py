"""The interface every collective algorithm implements, and the bound none may beat.

An algorithm is two views of one thing: a *schedule* (who sends which chunk where, in which
step, see :mod:`deepflow.network.schedule`) that the chunk-level simulator runs on any
topology, and a *closed form*: the exact time of that schedule on the algorithm's reference
topology, vectorized with NumPy for search. The shared conformance suite
(``tests/network/test_conformance.py``) holds every implementation to the contract below.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from deepflow.errors import ConfigError
from deepflow.network.ops import Collective
from deepflow.network.schedule import Schedule
from deepflow.network.topology import LinkGraph


@runtime_checkable
class CollectiveAlgorithm(Protocol):
    """Contract.

    * ``supports(op, n)``: whether the algorithm implements ``op`` on ``n`` ranks.
    * ``schedule(op, n, size, chunks)``: the lowered schedule; after it, every rank holds
      what ``op`` promises (checked symbolically); ``chunks`` pipelines the buffer.
    * ``closed_form(op, size, n, bandwidth, latency, chunks)``: seconds, vectorized over
      ``size``, ``n``, ``bandwidth`` (bytes/s per rank and direction) and ``latency`` (s per
      message); equal to the simulated time of ``schedule`` on ``reference_topology``.
      ``chunks=None`` picks the pipelining depth that minimizes the time.
    * ``reference_topology(n, bandwidth, latency)``: the network the closed form describes.
    """

    name: str
    in_network: bool

    def supports(self, op: Collective, n: int) -> bool: ...

    def schedule(self, op: Collective, n: int, size: float, chunks: int = 1) -> Schedule: ...

    def closed_form(
        self,
        op: Collective,
        size: object,
        n: object,
        bandwidth: object,
        latency: object,
        chunks: object = 1,
    ) -> np.ndarray: ...

    def reference_topology(self, n: int, bandwidth: float, latency: float) -> LinkGraph: ...


def unsupported(name: str, op: Collective, n: int | None = None) -> ConfigError:
    where = f" on {n} ranks" if n is not None else ""
    return ConfigError(f"algorithm {name!r} does not implement {op.value}{where}", "algorithm")


def bandwidth_bound(
    op: Collective, size: object, n: object, injection_bandwidth: object, in_network: bool = False
) -> np.ndarray:
    """Lower bound on a collective's time from the bytes a rank must move through its
    ports of total ``injection_bandwidth`` (bytes/s per direction).

    All-reduce: every rank sends and receives at least ``2 (n-1)/n * S`` (Patarasuk and
    Yuan, "Bandwidth optimal all-reduce algorithms for clusters of workstations", JPDC 69,
    2009, sec. 3), or ``S`` when switches reduce (in-network). Reduce-scatter, all-gather,
    all-to-all: ``(n-1)/n * S``. Broadcast and reduce: ``S``.
    """
    s = np.asarray(size, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    b = np.asarray(injection_bandwidth, dtype=np.float64)
    frac = (nn - 1.0) / np.maximum(nn, 1.0)
    if op is Collective.ALL_REDUCE:
        volume = np.minimum(2.0 * frac, 1.0) * s if in_network else 2.0 * frac * s
    elif op in (Collective.BROADCAST, Collective.REDUCE):
        volume = s
    else:
        volume = frac * s
    return np.where(nn > 1, volume / np.where(b > 0, b, np.inf), 0.0)


def pipelined(depth: object, size: object, bandwidth: object, latency: object, chunks: object):
    """A chain of ``depth`` hops streaming ``S`` bytes in ``k`` chunks:
    ``depth * alpha + (k + depth - 1) * S / (k B)``.

    Each hop adds one latency and one chunk time; a sender's consecutive chunks follow each
    other back to back (the gap is the chunk's serialization, LogGP's ``G``: Alexandrov et
    al., "LogGP", SPAA 1995, sec. 2). ``chunks=None`` is the streaming limit
    ``depth * alpha + S / B``.
    """
    s = np.asarray(size, dtype=np.float64)
    b = np.asarray(bandwidth, dtype=np.float64)
    a = np.asarray(latency, dtype=np.float64)
    dd = np.asarray(depth, dtype=np.float64)
    if chunks is None:
        return dd * a + s / b
    k = np.asarray(chunks, dtype=np.float64)
    return dd * a + (k + dd - 1.0) * s / (k * b)
