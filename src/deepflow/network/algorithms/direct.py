"""Direct (one-shot) algorithms: every rank talks to every peer at once (Thakur et al.,
IJHPCA 2005, sec. 4; NCCL's and ASTRA-sim's ``direct``).

On a switch with one port of ``B`` per rank the ``n - 1`` messages of a rank share its port
(FIFO), so with ``alpha`` per message:

* reduce-scatter, all-gather, all-to-all: ``alpha + (n-1)/n * S / B``;
* all-reduce (direct reduce-scatter, then direct all-gather): ``2 alpha + 2 (n-1)/n * S/B``;
* broadcast (the root sends to each peer) and reduce (each peer sends to the root):
  ``alpha + (n-1) S / B``.

Messages are issued in shift order (rank ``i`` first to ``i+1``, then ``i+2`` ...), so no
two arrive at one port at once (Bruck et al., IEEE TPDS 8(11), 1997, sec. 3).
"""

from __future__ import annotations

import numpy as np

from deepflow.network.algorithms.base import unsupported
from deepflow.network.ops import Collective
from deepflow.network.schedule import Round, Schedule, slots_for
from deepflow.network.topologies import switch
from deepflow.network.topology import LinkGraph


def _shift_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.repeat(np.arange(1, n), n)
    i = np.tile(np.arange(n), n - 1)
    return i, (i + t) % n


class Direct:
    """Direct collectives; see the module docstring for the costs."""

    name = "direct"
    in_network = False

    def supports(self, op: Collective, n: int) -> bool:
        return n >= 1

    def schedule(self, op: Collective, n: int, size: float, chunks: int = 1) -> Schedule:
        k = max(1, int(chunks))
        src, dst = _shift_pairs(n)
        rs = Round.of(src, dst, dst * k, dst * k, k, True)
        ag = Round.of(src, dst, src * k, src * k, k, False)
        peers = np.arange(1, n)
        rounds: list[Round]
        if op is Collective.ALL_REDUCE:
            rounds = [rs, ag]
        elif op is Collective.REDUCE_SCATTER:
            rounds = [rs]
        elif op is Collective.ALL_GATHER:
            rounds = [ag]
        elif op is Collective.ALL_TO_ALL:
            rounds = [Round.of(src, dst, dst, n + src, 1, False)]
        elif op is Collective.BROADCAST:
            rounds = [Round.of(0, peers, 0, 0, k, False)]
        elif op is Collective.REDUCE:
            rounds = [Round.of(peers, 0, 0, 0, k, True)]
        else:  # pragma: no cover
            raise unsupported(self.name, op)
        if n == 1:
            rounds = []
        return Schedule(op, n, n, slots_for(op, n, k), float(size), tuple(rounds))

    def closed_form(
        self,
        op: Collective,
        size: object,
        n: object,
        bandwidth: object,
        latency: object,
        chunks: object = 1,
    ) -> np.ndarray:
        s = np.asarray(size, dtype=np.float64)
        nn = np.asarray(n, dtype=np.float64)
        b = np.asarray(bandwidth, dtype=np.float64)
        a = np.asarray(latency, dtype=np.float64)
        frac = (nn - 1.0) / np.maximum(nn, 1.0)
        if op is Collective.ALL_REDUCE:
            t = 2.0 * (a + frac * s / b)
        elif op in (Collective.BROADCAST, Collective.REDUCE):
            t = a + (nn - 1.0) * s / b
        else:
            t = a + frac * s / b
        return np.where(nn > 1, t, 0.0)

    def reference_topology(self, n: int, bandwidth: float, latency: float) -> LinkGraph:
        return switch(n, bandwidth, latency / 2.0)
