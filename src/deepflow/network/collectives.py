"""Closed-form collective costs on a two-level hierarchy, vectorized with NumPy.

Cost model: the alpha-beta (latency-bandwidth) model of Hockney, with the per-algorithm
step counts and volumes of Thakur, Rabenseifner and Gropp, "Optimization of Collective
Communication Operations in MPICH" (IJHPCA 2005), Table 1 / sec. 4:

* ring all-reduce on n ranks: 2(n-1) alpha + 2 (n-1)/n * S / B;
* ring reduce-scatter and all-gather: (n-1) alpha + (n-1)/n * S / B (S = full buffer);
* tree (double binary tree, NCCL): 2 log2(n) alpha + 2 S / B for all-reduce
  (Sanders, Speck, Traeff 2009, pipelined two-tree bound);
* all-to-all (direct): (n-1) alpha + (n-1)/n * S / B per rank, S = bytes each rank holds.

Across the hierarchy an operation is hierarchical (NCCL's and ASTRA-sim's multi-dimensional
scheme, Rashidi et al. 2020, "ASTRA-SIM", sec. IV): reduce-scatter inside the scale-up
domain over m members, the inter-domain collective on the 1/m shard with the m members'
NICs working in parallel, then all-gather inside the domain.
All sizes are bytes, times seconds; every argument may be a NumPy array (broadcast).
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from deepflow.network.hierarchy import GroupPlacement, Hierarchy, Level


class Collective(str, Enum):
    ALL_REDUCE = "all-reduce"
    REDUCE_SCATTER = "reduce-scatter"
    ALL_GATHER = "all-gather"
    ALL_TO_ALL = "all-to-all"
    BROADCAST = "broadcast"
    REDUCE = "reduce"


class Algorithm(str, Enum):
    RING = "ring"
    TREE = "tree"


def _flat(
    op: Collective, algorithm: Algorithm, size: np.ndarray, n: np.ndarray, level: Level
) -> np.ndarray:
    """One collective over ``n`` ranks on a single level (a flat network)."""
    bw = level.effective_bandwidth
    alpha = level.latency
    active = n > 1
    safe_n = np.maximum(n, 1.0)
    frac = (safe_n - 1.0) / safe_n
    if op is Collective.ALL_REDUCE:
        if algorithm is Algorithm.TREE:
            t = 2.0 * np.log2(safe_n) * alpha + 2.0 * size / bw
        else:
            t = 2.0 * (safe_n - 1.0) * alpha + 2.0 * frac * size / bw
    elif op in (Collective.REDUCE_SCATTER, Collective.ALL_GATHER, Collective.ALL_TO_ALL):
        t = (safe_n - 1.0) * alpha + frac * size / bw
    elif op in (Collective.BROADCAST, Collective.REDUCE):
        # pipelined ring/chain broadcast: latency grows with n, bandwidth term ~ S/B
        t = (safe_n - 1.0) * alpha + size / bw
    else:  # pragma: no cover - enum is closed
        raise AssertionError(op)
    return np.where(active, t, 0.0)


def collective_time(
    op: Collective,
    size: object,
    group: GroupPlacement,
    hierarchy: Hierarchy,
    algorithm: Algorithm = Algorithm.RING,
) -> np.ndarray:
    """Time of collective ``op`` on ``size`` bytes over ``group`` (vectorized).

    ``size`` is the full buffer of one rank: the vector being all-reduced, the gathered
    result of an all-gather, the input of a reduce-scatter, or the bytes a rank holds
    before an all-to-all.
    """
    s = np.asarray(size, dtype=np.float64)
    m, k = group.members_per_domain, group.domains
    up, out = hierarchy.scale_up, hierarchy.scale_out
    if op is Collective.ALL_TO_ALL:
        # direct exchange: (m-1)/n of the data moves inside the domain, (n-m)/n across;
        # the two fabrics run concurrently (Rajbhandari et al. 2022, DeepSpeed-MoE, sec. 5.2)
        n = group.size
        intra = (m - 1.0) * up.latency + (m - 1.0) / n * s / up.effective_bandwidth
        inter = (n - m) / m * out.latency + (n - m) / n * s / out.effective_bandwidth
        return np.where(n > 1, np.maximum(intra, inter), 0.0)
    if op is Collective.ALL_REDUCE:
        inner = _flat(Collective.REDUCE_SCATTER, algorithm, s, m, up) * 2.0
        if algorithm is Algorithm.TREE:
            inner = _flat(op, algorithm, s, m, up)
        outer = _flat(op, algorithm, s / m, k, out)
        return inner + outer
    if op in (Collective.REDUCE_SCATTER, Collective.ALL_GATHER):
        return _flat(op, algorithm, s, m, up) + _flat(op, algorithm, s / m, k, out)
    # broadcast / reduce: chain through domains, then inside the domain
    return _flat(op, algorithm, s, k, out) + _flat(op, algorithm, s, m, up)


def p2p_time(size: object, crosses_domain: object, hierarchy: Hierarchy) -> np.ndarray:
    """Point-to-point transfer of ``size`` bytes between two ranks (alpha + S / B)."""
    s = np.asarray(size, dtype=np.float64)
    up, out = hierarchy.scale_up, hierarchy.scale_out
    t_up = up.latency + s / up.effective_bandwidth
    t_out = out.latency + s / out.effective_bandwidth
    return np.where(np.asarray(crosses_domain, dtype=bool), t_out, t_up)


def bus_bandwidth(op: Collective, size: float, n: int, time_s: float) -> float:
    """nccl-tests bus bandwidth (bytes/s): algbw x 2(n-1)/n for all-reduce, x (n-1)/n for
    reduce-scatter, all-gather and all-to-all (NVIDIA nccl-tests, doc/PERFORMANCE.md)."""
    if time_s <= 0 or n <= 1:
        return 0.0
    algbw = size / time_s
    factor = {Collective.ALL_REDUCE: 2.0 * (n - 1) / n}.get(op, (n - 1) / n)
    if op in (Collective.BROADCAST, Collective.REDUCE):
        factor = 1.0
    return algbw * factor
