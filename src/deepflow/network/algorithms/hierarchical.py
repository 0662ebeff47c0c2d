"""Hierarchical (multi-dimensional) collectives, ASTRA-sim's ``localBWAware`` scheme
(Rashidi et al., "ASTRA-SIM", ISPASS 2020, sec. IV-B; Won et al., arXiv 2303.14006,
sec. III-C; chakra-astra-msccl.md sec. 2.6).

On dimensions of sizes ``n_0 .. n_{D-1}`` (dimension 0 fastest, usually the scale-up
domain), an all-reduce runs a reduce-scatter inside dimension 0 on the whole buffer, then
in dimension 1 on the ``1/n_0`` shard, ..., an all-reduce in the last dimension on
``S / (n_0 ... n_{D-2})``, and all-gathers back down. Each phase is a one-dimensional
algorithm (ring by default) in every group of that dimension at once, so with
``S_d = S / (n_0 ... n_{d-1})``:

    T_AR = sum_{d<D-1} [T_RS(S_d, n_d) + T_AG(S_d, n_d)] + T_AR(S_{D-1}, n_{D-1})

Reduce-scatter and all-gather alone visit the dimensions in ascending and descending order.
Their output blocks come out dimension-major: rank ``(c_0, c_1, ...)`` holds block
``c_0 n/n_0 + c_1 n/(n_0 n_1) + ...``; a local re-indexing (free here) restores rank order.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import numpy as np

from deepflow.errors import ConfigError
from deepflow.network.algorithms.base import CollectiveAlgorithm, unsupported
from deepflow.network.algorithms.ring import Ring
from deepflow.network.dims import DimKind, NetworkDim, coordinates
from deepflow.network.ops import Collective
from deepflow.network.schedule import Round, Schedule
from deepflow.network.topologies import multi_dim
from deepflow.network.topology import LinkGraph

_OPS = (Collective.ALL_REDUCE, Collective.REDUCE_SCATTER, Collective.ALL_GATHER)


class Hierarchical:
    """Multi-dimensional composition of a one-dimensional ``inner`` algorithm.

    ``closed_form`` takes ``bandwidth`` and ``latency`` as one value per dimension (a
    sequence, or an array whose last axis is the dimension).
    """

    in_network = False

    def __init__(self, sizes: Sequence[int], inner: CollectiveAlgorithm | None = None) -> None:
        self.sizes = tuple(int(s) for s in sizes)
        if not self.sizes or min(self.sizes) < 1:
            raise ConfigError(f"dimension sizes must be positive, got {self.sizes}", "dims")
        self.inner = inner or Ring()
        self.name = f"hierarchical[{'x'.join(map(str, self.sizes))}]({self.inner.name})"

    def supports(self, op: Collective, n: int) -> bool:
        return (
            op in _OPS
            and n == prod(self.sizes)
            and all(self.inner.supports(Collective.REDUCE_SCATTER, s) for s in self.sizes)
        )

    def _phases(self, op: Collective) -> list[tuple[Collective, int]]:
        last = len(self.sizes) - 1
        if op is Collective.ALL_REDUCE:
            up = [(Collective.REDUCE_SCATTER, d) for d in range(last)]
            return [
                *up,
                (Collective.ALL_REDUCE, last),
                *[(Collective.ALL_GATHER, d) for _, d in reversed(up)],
            ]
        if op is Collective.REDUCE_SCATTER:
            return [(op, d) for d in range(len(self.sizes))]
        return [(op, d) for d in reversed(range(len(self.sizes)))]

    def schedule(self, op: Collective, n: int, size: float, chunks: int = 1) -> Schedule:
        if not self.supports(op, n):
            raise unsupported(self.name, op, n)
        k = max(1, int(chunks))
        m = n * k
        sizes = self.sizes
        coords = np.array([coordinates(r, sizes) for r in range(n)]).reshape(n, len(sizes))
        strides = [prod(sizes[:d]) for d in range(len(sizes))]
        rounds: list[Round] = []
        for phase_op, d in self._phases(op):
            nd = sizes[d]
            if nd == 1:
                continue
            region = m // prod(sizes[:d])
            base = np.zeros(n, dtype=np.int64)
            for e in range(d):
                base += coords[:, e] * (m // prod(sizes[: e + 1]))
            leaders = np.nonzero(coords[:, d] == 0)[0]
            members = leaders[:, None] + np.arange(nd)[None, :] * strides[d]  # (G, nd)
            inner = self.inner.schedule(phase_op, nd, float(region), region // nd)
            if inner.slots != region or inner.endpoints != nd:
                raise ConfigError(f"{self.inner.name} cannot be nested in {self.name}", "algorithm")
            gbase = base[leaders][:, None]
            for r in inner.rounds:
                rounds.append(
                    Round.of(
                        members[:, r.src],
                        members[:, r.dst],
                        gbase + r.src_slot,
                        gbase + r.dst_slot,
                        r.count,
                        np.broadcast_to(r.reduce, (len(leaders), len(r))),
                    )
                )
        block = [
            sum(int(coords[r, e]) * (n // prod(sizes[: e + 1])) for e in range(len(sizes)))
            for r in range(n)
        ]
        blocks = tuple(block) if op is not Collective.ALL_REDUCE else ()
        return Schedule(op, n, n, m, float(size), tuple(rounds), blocks)

    def closed_form(
        self,
        op: Collective,
        size: object,
        n: object,
        bandwidth: object,
        latency: object,
        chunks: object = 1,
    ) -> np.ndarray:
        if op not in _OPS:
            raise unsupported(self.name, op)
        s = np.asarray(size, dtype=np.float64)
        bw = np.asarray(bandwidth, dtype=np.float64)
        lat = np.broadcast_to(np.asarray(latency, dtype=np.float64), bw.shape)
        total = np.zeros(np.broadcast_shapes(s.shape, bw.shape[:-1]))
        for phase_op, d in self._phases(op):
            data = s / prod(self.sizes[:d])
            total = total + self.inner.closed_form(
                phase_op, data, self.sizes[d], bw[..., d], lat[..., d]
            )
        return total

    def reference_topology(self, n: int, bandwidth: object, latency: object) -> LinkGraph:
        bw = np.broadcast_to(np.asarray(bandwidth, dtype=np.float64), (len(self.sizes),))
        lat = np.broadcast_to(np.asarray(latency, dtype=np.float64), (len(self.sizes),))
        dims = [
            NetworkDim(DimKind.SWITCH, s, float(b), float(a) / 2.0)
            for s, b, a in zip(self.sizes, bw, lat, strict=True)
        ]
        return multi_dim(dims)
