"""Ring algorithms (Patarasuk and Yuan, JPDC 69, 2009; Thakur, Rabenseifner and Gropp,
"Optimization of collective communication operations in MPICH", IJHPCA 19, 2005, sec. 4).

Rank ``i`` sends to ``i + 1``. With ``S`` the buffer, ``B`` the per-rank bandwidth and
``alpha`` the per-message latency (Thakur et al., Table 1):

* reduce-scatter, all-gather: ``(n-1) (alpha + S/(n B))``;
* all-reduce (reduce-scatter then all-gather): ``2 (n-1) (alpha + S/(n B))``;
* all-to-all as ``n-1`` shift exchanges (Thakur et al. sec. 4.6, pairwise exchange):
  ``(n-1) (alpha + S/(n B))``;
* broadcast and reduce as a pipelined chain of ``k`` chunks:
  ``(n-1) alpha + (n+k-2) S/(k B)`` (:func:`~deepflow.network.algorithms.base.pipelined`).

The reference topology is a non-blocking switch: one port of ``B`` per rank, ``alpha`` per
message (two links of ``alpha/2``).
"""

from __future__ import annotations

import numpy as np

from deepflow.network.algorithms.base import pipelined, unsupported
from deepflow.network.ops import Collective
from deepflow.network.schedule import Round, Schedule, slots_for
from deepflow.network.topologies import switch
from deepflow.network.topology import LinkGraph
from deepflow.network.xp import f64, maximum, select


def ring_reduce_scatter_rounds(n: int, k: int) -> list[Round]:
    """Step ``t``: rank ``i`` reduces its block ``(i - t - 1) mod n`` into rank ``i + 1``;
    after ``n - 1`` steps rank ``i`` holds block ``i`` complete."""
    i = np.arange(n)
    return [
        Round.of(i, (i + 1) % n, ((i - t - 1) % n) * k, ((i - t - 1) % n) * k, k, True)
        for t in range(n - 1)
    ]


def ring_all_gather_rounds(n: int, k: int) -> list[Round]:
    """Step ``t``: rank ``i`` forwards block ``(i - t) mod n`` to rank ``i + 1``."""
    i = np.arange(n)
    return [
        Round.of(i, (i + 1) % n, ((i - t) % n) * k, ((i - t) % n) * k, k, False)
        for t in range(n - 1)
    ]


class Ring:
    """Ring collectives; see the module docstring for the costs."""

    name = "ring"
    in_network = False

    def supports(self, op: Collective, n: int) -> bool:
        return n >= 1

    def schedule(self, op: Collective, n: int, size: float, chunks: int = 1) -> Schedule:
        k = max(1, int(chunks))
        rounds: list[Round] = []
        i = np.arange(n)
        if op is Collective.ALL_REDUCE:
            rounds = ring_reduce_scatter_rounds(n, k) + ring_all_gather_rounds(n, k)
        elif op is Collective.REDUCE_SCATTER:
            rounds = ring_reduce_scatter_rounds(n, k)
        elif op is Collective.ALL_GATHER:
            rounds = ring_all_gather_rounds(n, k)
        elif op is Collective.ALL_TO_ALL:
            # blocking pairwise exchange: step t begins when step t-1 is complete
            rounds = [
                Round.of(i, (i + t) % n, (i + t) % n, n + i, 1, False, barrier=t > 1)
                for t in range(1, n)
            ]
        elif op in (Collective.BROADCAST, Collective.REDUCE):
            for t in range(n + k - 2):
                pos = np.arange(n - 1)  # chain position of the sender
                c = t - pos
                ok = (c >= 0) & (c < k)
                p, c = pos[ok], c[ok]
                if op is Collective.BROADCAST:
                    rounds.append(Round.of(p, p + 1, c, c, 1, False))
                else:  # reduce towards rank 0: position p sends from rank n-1-p
                    rounds.append(Round.of(n - 1 - p, n - 2 - p, c, c, 1, True))
        else:  # pragma: no cover - closed enum
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
        # arrays, or NumPy scalars where the caller passes scalars (deepflow.network.xp)
        s, nn, b, a = f64(size), f64(n), f64(bandwidth), f64(latency)
        step = a + s / (maximum(nn, 1.0) * b)
        if op is Collective.ALL_REDUCE:
            t = 2.0 * (nn - 1.0) * step
        elif op in (Collective.REDUCE_SCATTER, Collective.ALL_GATHER, Collective.ALL_TO_ALL):
            t = (nn - 1.0) * step
        else:
            t = pipelined(nn - 1.0, s, b, a, chunks)
        return select(nn > 1, t, 0.0)

    def reference_topology(self, n: int, bandwidth: float, latency: float) -> LinkGraph:
        return switch(n, bandwidth, latency / 2.0)
