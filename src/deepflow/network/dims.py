"""Multi-dimensional networks in ASTRA-sim's sense.

ASTRA-sim describes a network as a list of dimensions, each a ring, a fully connected
clique or a switch of ``size`` NPUs, with a per-link bandwidth and latency; NPU ids are
mixed-radix with dimension 0 fastest (Won et al., "ASTRA-sim2.0", arXiv 2303.14006,
sec. III-B; docs/reference/chakra-astra-msccl.md sec. 2.2). A scale-up node joined by a
scale-out fabric is the two-dimensional case ``[switch(8), switch(k)]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from math import prod


class DimKind(str, Enum):
    """How the NPUs of one dimension are wired."""

    RING = "ring"
    FULLY_CONNECTED = "fully-connected"
    SWITCH = "switch"


@dataclass(frozen=True)
class NetworkDim:
    """One dimension: ``size`` NPUs wired as ``kind``; ``bandwidth`` (bytes/s, per link and
    direction) and ``latency`` (s, per link); ``efficiency`` is the fraction of the link
    bandwidth collectives reach (data with a source, never tuned per case)."""

    kind: DimKind
    size: int
    bandwidth: float
    latency: float = 0.0
    efficiency: float = 1.0

    def __post_init__(self) -> None:
        assert self.size >= 1, "a dimension has at least one NPU"
        assert self.bandwidth > 0, "bandwidth must be positive"

    @property
    def rank_bandwidth(self) -> float:
        """Bandwidth one NPU can inject into this dimension, per direction (bytes/s): one
        link on a switch, two on a ring, ``size - 1`` on a fully connected clique."""
        links = {DimKind.SWITCH: 1, DimKind.RING: 2, DimKind.FULLY_CONNECTED: self.size - 1}
        return self.bandwidth * max(1, links[self.kind])

    @property
    def hop_latency(self) -> float:
        """Latency of one message inside the dimension: a switch costs two link traversals
        (ASTRA-sim analytical backend, ``Switch`` = 2 hops)."""
        return self.latency * (2.0 if self.kind is DimKind.SWITCH else 1.0)


def hops(kind: DimKind, size: int, a: int, b: int) -> int:
    """Links a message crosses between positions ``a`` and ``b`` of one dimension: the
    shorter way round a ring, one link in a clique, two (up and down) through a switch
    (ASTRA-sim analytical backend, ``Ring``/``FullyConnected``/``Switch``; reference doc
    chakra-astra-msccl.md sec. 2.2). :func:`~deepflow.network.topologies.multi_dim` builds
    the same routes as link lists."""
    if a == b:
        return 0
    if kind is DimKind.RING:
        d = abs(a - b) % size
        return min(d, size - d)
    return 1 if kind is DimKind.FULLY_CONNECTED else 2


def coordinates(rank: int, sizes: Sequence[int]) -> tuple[int, ...]:
    """Mixed-radix coordinates of ``rank``, dimension 0 fastest: 47 in [2,8,4] -> (1,7,2)."""
    out = []
    for s in sizes:
        out.append(rank % s)
        rank //= s
    return tuple(out)


def total_npus(dims: Sequence[NetworkDim]) -> int:
    return prod(d.size for d in dims)
