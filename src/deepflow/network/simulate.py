"""Chunk-level simulation of a collective schedule over a link-level topology.

Every transfer of a :class:`~deepflow.network.schedule.Schedule` follows its route through
the :class:`~deepflow.network.topology.Topology`. Each directed link is a FIFO server that
is busy ``bytes / bandwidth`` per transfer (ASTRA-sim's congestion-aware analytical
backend, docs/reference/chakra-astra-msccl.md sec. 2.2), with one difference: switching is
*cut-through* rather than store-and-forward, as NVSwitch and InfiniBand switches are. A
transfer's head moves on after each link's latency, and its tail can leave a link no
earlier than it arrived there:

    start_h  = max(head_h, free[l_h])             head_{h+1} = start_h + latency[l_h]
    finish_h = max(start_h + bytes / bw[l_h], tail_h)    tail_{h+1} = finish_h + latency[l_h]

so one uncontended message costs ``sum(latency) + bytes / min(bw)``, the alpha-beta model
of Hockney ("The communication challenge for MPP", Parallel Computing 20, 1994, eq. 1).

A transfer may start once every slot it reads has arrived (data dependencies follow the
data; no explicit dependency lists are needed). Rounds are processed in order, all
transfers of a round at once with NumPy; inside a round a link serves transfers in order
of arrival (FIFO per link and direction). Across rounds a link serves an earlier round's
transfers first, and within a round hop ``h`` before hop ``h + 1``: a documented
simplification that is exact whenever a link is not shared by transfers of different
rounds or hop positions at the same time (all the uncontended cases the conformance suite
compares with closed forms).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepflow.network.schedule import Schedule
from deepflow.network.topology import Topology


@dataclass(frozen=True)
class SimResult:
    """Outcome of :func:`simulate`: the makespan (s), when each endpoint received its last
    byte, and per-link accounting (bytes carried, seconds busy)."""

    time: float
    endpoint_finish: np.ndarray
    link_bytes: np.ndarray
    link_busy: np.ndarray

    def link_utilization(self) -> np.ndarray:
        """Busy fraction of every link over the makespan."""
        return self.link_busy / self.time if self.time > 0 else np.zeros_like(self.link_busy)


def endpoint_nodes(schedule: Schedule, topology: Topology) -> np.ndarray:
    """Node of each schedule endpoint: ranks on ``topology.endpoints``, extra endpoints on
    the topology's non-accelerator nodes (switches) in id order."""
    ranks = list(topology.endpoints[: schedule.ranks])
    assert len(ranks) == schedule.ranks, "topology has fewer accelerators than the schedule"
    extra = schedule.endpoints - schedule.ranks
    if extra:
        src, dst, _, _ = topology.link_arrays()
        others = sorted(set(np.concatenate([src, dst]).tolist()) - set(topology.endpoints))
        assert len(others) >= extra, "schedule needs in-network nodes the topology lacks"
        ranks += others[:extra]
    return np.asarray(ranks, dtype=np.int64)


def _routes(topology: Topology, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    paths = [topology.route(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    hops = max((len(p) for p in paths), default=0)
    out = np.full((len(paths), max(hops, 1)), -1, dtype=np.int64)
    for i, p in enumerate(paths):
        out[i, : len(p)] = p
    return out


def _fifo(
    links: np.ndarray,
    head: np.ndarray,
    tail: np.ndarray,
    service: np.ndarray,
    free: np.ndarray,
    num_links: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Start and finish times of transfers queued FIFO on ``links``.

    The recurrence ``f_i = max(c_i, f_{i-1} + s_i)`` with ``c_i = max(head_i + s_i,
    tail_i)`` and ``f_{-1} = free`` unrolls (max-plus algebra, Baccelli et al., *Synchronization
    and Linearity*, 1992, sec. 7.2) to ``f_i = P_i + max(free, max_{j<=i} (c_j - P_j))`` with
    ``P`` the running service sum, which NumPy evaluates per link segment.
    """
    c = np.maximum(head + service, tail)
    if np.bincount(links, minlength=num_links).max(initial=0) <= 1:
        f0 = free[links]
        return np.maximum(head, f0), np.maximum(c, f0 + service)
    order = np.lexsort((np.arange(links.size), head, links))
    ls, hs, ss, cs = links[order], head[order], service[order], c[order]
    first = np.ones(ls.size, dtype=bool)
    first[1:] = ls[1:] != ls[:-1]
    seg = np.cumsum(first) - 1
    total = np.cumsum(ss)
    base = (total - ss)[first][seg]
    prefix = total - base
    v = cs - prefix
    span = float(v.max() - v.min()) + 1.0
    cm = np.maximum.accumulate(v + seg * span) - seg * span
    f = prefix + np.maximum(free[ls], cm)
    prev = np.empty_like(f)
    prev[1:] = f[:-1]
    prev[first] = free[ls[first]]
    start = np.maximum(hs, prev)
    out_s, out_f = np.empty_like(start), np.empty_like(f)
    out_s[order], out_f[order] = start, f
    return out_s, out_f


def simulate(
    schedule: Schedule, topology: Topology, nodes: Sequence[int] | None = None
) -> SimResult:
    """Simulate ``schedule`` on ``topology``; ``nodes`` maps endpoints to nodes (default
    :func:`endpoint_nodes`)."""
    node_of = (
        np.asarray(nodes, dtype=np.int64)
        if nodes is not None
        else endpoint_nodes(schedule, topology)
    )
    _, _, bw, lat = topology.link_arrays()
    num_links = bw.size
    free = np.zeros(num_links)
    busy = np.zeros(num_links)
    carried = np.zeros(num_links)
    ready = np.zeros((schedule.endpoints, schedule.slots))
    finish = np.zeros(schedule.endpoints)
    cache: dict[bytes, np.ndarray] = {}
    slot_bytes = schedule.slot_bytes
    for rnd in schedule.rounds:
        k = rnd.count
        if k == 1:
            t0 = ready[rnd.src, rnd.src_slot]
        else:
            t0 = ready[rnd.src[:, None], rnd.src_slot[:, None] + np.arange(k)].max(axis=1)
        if rnd.barrier:
            t0 = np.maximum(t0, finish.max(initial=0.0))
        key = rnd.src.tobytes() + rnd.dst.tobytes()
        routes = cache.get(key)
        if routes is None:
            routes = _routes(topology, node_of[rnd.src], node_of[rnd.dst])
            cache[key] = routes
        nbytes = k * slot_bytes
        head, tail = t0.copy(), t0.copy()
        for h in range(routes.shape[1]):
            col = routes[:, h]
            act = col >= 0
            full = bool(act.all())
            lk = col if full else col[act]
            if lk.size == 0:
                continue
            service = nbytes / bw[lk]
            hh, tt = (head, tail) if full else (head[act], tail[act])
            start, fin = _fifo(lk, hh, tt, service, free, num_links)
            np.maximum.at(free, lk, fin)
            np.add.at(busy, lk, service)
            np.add.at(carried, lk, nbytes)
            if full:
                head, tail = start + lat[lk], fin + lat[lk]
            else:
                head[act], tail[act] = start + lat[lk], fin + lat[lk]
        if k == 1:
            np.maximum.at(ready, (rnd.dst, rnd.dst_slot), tail)
        else:
            idx = rnd.dst_slot[:, None] + np.arange(k)
            np.maximum.at(ready, (np.repeat(rnd.dst, k), idx.ravel()), np.repeat(tail, k))
        np.maximum.at(finish, rnd.dst, tail)
    return SimResult(float(finish.max(initial=0.0)), finish[: schedule.ranks], carried, busy)
