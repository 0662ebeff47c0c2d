"""Recursive halving and doubling on a power-of-two group (Thakur et al., IJHPCA 2005,
sec. 4.4-4.5; Rabenseifner's all-reduce, ICCS 2004).

In step ``s`` of the reduce-scatter rank ``i`` exchanges half of its current range with
partner ``i XOR n/2^(s+1)``; the all-gather retraces the steps with doubling ranges:

* reduce-scatter, all-gather: ``log2(n) alpha + (n-1)/n * S / B``;
* all-reduce: ``2 log2(n) alpha + 2 (n-1)/n * S / B``;
* broadcast and reduce on a binomial tree: ``log2(n) (alpha + S / B)``.

All-to-all is not implemented (its log-step form is Bruck's algorithm).
"""

from __future__ import annotations

import numpy as np

from deepflow.errors import ConfigError
from deepflow.network.algorithms.base import unsupported
from deepflow.network.ops import Collective
from deepflow.network.schedule import Round, Schedule, slots_for
from deepflow.network.topologies import switch
from deepflow.network.topology import LinkGraph


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def halving_rounds(n: int, k: int) -> list[Round]:
    i = np.arange(n)
    rounds = []
    span = n
    while span > 1:
        half = span // 2
        lo = (i // span) * span
        upper = (i & half) != 0
        send_lo = np.where(upper, lo, lo + half)  # the half the partner keeps
        rounds.append(Round.of(i, i ^ half, send_lo * k, send_lo * k, half * k, True))
        span = half
    return rounds


def doubling_rounds(n: int, k: int) -> list[Round]:
    i = np.arange(n)
    rounds = []
    span = 1
    while span < n:
        lo = (i // span) * span
        rounds.append(Round.of(i, i ^ span, lo * k, lo * k, span * k, False))
        span *= 2
    return rounds


class HalvingDoubling:
    """Halving-doubling collectives; see the module docstring for the costs."""

    name = "halving-doubling"
    in_network = False

    def supports(self, op: Collective, n: int) -> bool:
        return _is_pow2(n) and op is not Collective.ALL_TO_ALL

    def schedule(self, op: Collective, n: int, size: float, chunks: int = 1) -> Schedule:
        if op is Collective.ALL_TO_ALL:
            raise unsupported(self.name, op)
        if not _is_pow2(n):
            raise ConfigError(f"halving-doubling needs a power-of-two group, got {n}", "n")
        k = max(1, int(chunks))
        i = np.arange(n)
        if op is Collective.ALL_REDUCE:
            rounds = halving_rounds(n, k) + doubling_rounds(n, k)
        elif op is Collective.REDUCE_SCATTER:
            rounds = halving_rounds(n, k)
        elif op is Collective.ALL_GATHER:
            rounds = doubling_rounds(n, k)
        elif op is Collective.BROADCAST:
            rounds, d = [], 1
            while d < n:
                rounds.append(Round.of(i[:d], i[:d] + d, 0, 0, k, False))
                d *= 2
        else:  # reduce
            rounds, d = [], n // 2
            while d >= 1:
                rounds.append(Round.of(i[d : 2 * d], i[d : 2 * d] - d, 0, 0, k, True))
                d //= 2
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
        nn = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
        b = np.asarray(bandwidth, dtype=np.float64)
        a = np.asarray(latency, dtype=np.float64)
        steps = np.ceil(np.log2(nn))
        frac = (nn - 1.0) / nn
        if op is Collective.ALL_REDUCE:
            t = 2.0 * (steps * a + frac * s / b)
        elif op in (Collective.BROADCAST, Collective.REDUCE):
            t = steps * (a + s / b)
        else:
            t = steps * a + frac * s / b
        return np.where(nn > 1, t, 0.0)

    def reference_topology(self, n: int, bandwidth: float, latency: float) -> LinkGraph:
        return switch(n, bandwidth, latency / 2.0)
