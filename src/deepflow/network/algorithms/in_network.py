"""In-network reduction: switches reduce and multicast (NVIDIA NVLink SHARP, "NVLS", in
NVSwitch 3; InfiniBand SHARP, Graham et al., "Scalable Hierarchical Aggregation Protocol",
COMHPC 2016, sec. III).

Every rank streams its buffer in ``k`` chunks to the switch, which reduces chunk ``c`` when
all ranks' copies have arrived and multicasts it back, one copy per down port. Per rank the
bytes cross its port once each way, so all-reduce approaches ``S / B``, half the traffic
of a ring. With ``alpha`` per message and ``B`` per port:

* all-reduce and reduce-scatter (the buffer streams as ``n k`` slots):
  ``alpha + S/B + S/(n k B)``, one slot of pipeline fill;
* all-gather: ``alpha + (n-1)/n S/B + S/(n k B)``;
* broadcast and reduce (``k`` slots): ``alpha + S/B + S/(k B)``.

The aggregation point is schedule endpoint ``n`` (the switch node of the topology).
"""

from __future__ import annotations

import numpy as np

from deepflow.network.algorithms.base import unsupported
from deepflow.network.ops import Collective
from deepflow.network.schedule import Round, Schedule, slots_for
from deepflow.network.topologies import switch
from deepflow.network.topology import LinkGraph


class InNetwork:
    """Switch-resident reduction and multicast; see the module docstring."""

    name = "in-network"
    in_network = True

    def supports(self, op: Collective, n: int) -> bool:
        return op is not Collective.ALL_TO_ALL and n >= 1

    def schedule(self, op: Collective, n: int, size: float, chunks: int = 1) -> Schedule:
        if op is Collective.ALL_TO_ALL:
            raise unsupported(self.name, op)
        k = max(1, int(chunks))
        m = slots_for(op, n, k)
        sw = n
        ranks = np.arange(n)
        # slot-major order: every rank's chunk c before anyone's chunk c+1 (FIFO order)
        slot_m, rank_m = np.divmod(np.arange(m * n), n)
        rounds: list[Round]
        if op is Collective.ALL_REDUCE:
            up = Round.of(rank_m, sw, slot_m, slot_m, 1, True)
            down = Round.of(sw, rank_m, slot_m, slot_m, 1, False)
            rounds = [up, down]
        elif op is Collective.REDUCE_SCATTER:
            up = Round.of(rank_m, sw, slot_m, slot_m, 1, True)
            s = np.arange(m)
            rounds = [up, Round.of(sw, s // k, s, s, 1, False)]
        elif op is Collective.ALL_GATHER:
            c, r = np.divmod(np.arange(k * n), n)
            up = Round.of(r, sw, r * k + c, r * k + c, 1, False)
            s = np.repeat(np.arange(m), n)
            dst = np.tile(ranks, m)
            keep = dst != s // k
            rounds = [up, Round.of(sw, dst[keep], s[keep], s[keep], 1, False)]
        elif op is Collective.BROADCAST:
            c = np.arange(k)
            s = np.repeat(c, n - 1)
            dst = np.tile(np.arange(1, n), k)
            rounds = [Round.of(0, sw, c, c, 1, False), Round.of(sw, dst, s, s, 1, False)]
        else:  # reduce to rank 0
            rounds = [
                Round.of(rank_m, sw, slot_m, slot_m, 1, True),
                Round.of(sw, 0, np.arange(m), np.arange(m), 1, False),
            ]
        if n == 1:
            rounds = []
        return Schedule(op, n, n + 1, m, float(size), tuple(rounds))

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
        k = np.inf if chunks is None else np.asarray(chunks, dtype=np.float64)
        if op in (Collective.ALL_REDUCE, Collective.REDUCE_SCATTER):
            t = a + s / b + s / (nn * k * b)
        elif op is Collective.ALL_GATHER:
            t = a + (nn - 1.0) / nn * s / b + s / (nn * k * b)
        else:
            t = a + s / b + s / (k * b)
        return np.where(nn > 1, t, 0.0)

    def reference_topology(self, n: int, bandwidth: float, latency: float) -> LinkGraph:
        return switch(n, bandwidth, latency / 2.0)
