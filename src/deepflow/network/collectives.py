"""Closed-form collective costs on a two-level hierarchy, vectorized with NumPy.

This is the fast path the training-step estimator calls with arrays of sizes and group
placements. Each level (scale-up domain, scale-out network) is a switched level with
per-accelerator bandwidth ``B = bandwidth * efficiency`` and per-message latency
``alpha``; one level's time is the chosen algorithm's closed form
(:mod:`deepflow.network.algorithms`, alpha-beta costs after Thakur, Rabenseifner and
Gropp, IJHPCA 2005, Table 1), with pipelined algorithms at their best chunk count.

Across the hierarchy an operation is hierarchical (NCCL's and ASTRA-sim's
multi-dimensional scheme, Rashidi et al., "ASTRA-SIM", ISPASS 2020, sec. IV-B):
reduce-scatter inside the scale-up domain over ``m`` members, the inter-domain collective
on the ``1/m`` shard with the ``m`` members' NICs in parallel, then all-gather inside the
domain. All sizes are bytes, times seconds; every argument may be a NumPy array.
"""

from __future__ import annotations

import numpy as np

from deepflow.network.algorithms import ALGORITHMS
from deepflow.network.hierarchy import (
    GroupPlacement,
    Hierarchy,
    Level,
    one_element,
    one_float,
    scalar_placement,
)
from deepflow.network.ops import Algorithm, Collective
from deepflow.network.programs import ProgramAlgorithm
from deepflow.network.xp import f64, select

__all__ = [
    "Algorithm",
    "Collective",
    "bus_bandwidth",
    "collective_time",
    "level_time",
    "p2p_time",
    "program_time",
]


def level_time(
    op: Collective, algorithm: Algorithm, size: object, n: object, level: Level
) -> np.ndarray:
    """One collective over ``n`` ranks on a single switched level (vectorized).

    Algorithms that do not implement ``op`` (the tree and in-network reduction have no
    all-to-all, the tree only all-reduces) fall back to the ring; ``HIERARCHICAL`` is the
    ring on each level.
    """
    impl = ALGORITHMS.get(algorithm, ALGORITHMS[Algorithm.RING])
    if not impl.supports(op, 2 if algorithm is not Algorithm.HALVING_DOUBLING else 4):
        impl = ALGORITHMS[Algorithm.RING]
    nn = f64(n)
    t = impl.closed_form(op, size, nn, level.effective_bandwidth, level.latency, None)
    return select(nn > 1, t, 0.0)


def program_time(
    op: Collective,
    size: object,
    group: GroupPlacement,
    hierarchy: Hierarchy,
    algorithm: ProgramAlgorithm,
) -> np.ndarray:
    """Time of ``op`` run by a step-program ``algorithm`` (vectorized).

    The program's closed form (:class:`~deepflow.network.programs.ProgramAlgorithm`) is
    evaluated on the scale-up level when the group fits one domain and on the scale-out
    level when it spans several: a flat program does not say which of its messages stay
    inside a domain, so the slower level bounds every message (for a placement-aware cost,
    simulate the program on a link-level topology, :func:`~deepflow.network.programs.
    simulate_program`). Where the group size differs from the program's rank count, or the
    program implements another collective, the ring is used.
    """
    s = np.asarray(size, dtype=np.float64)
    n, k = np.asarray(group.size), np.asarray(group.domains)
    up, out = hierarchy.scale_up, hierarchy.scale_out
    ring = collective_time(op, s, group, hierarchy, Algorithm.RING)
    if op is not algorithm.program.op:
        return ring
    bw = np.where(k > 1, out.effective_bandwidth, up.effective_bandwidth)
    lat = np.where(k > 1, out.latency, up.latency)
    custom = algorithm.closed_form(op, s, n, bw, lat)
    return np.where(n == algorithm.program.ranks, custom, ring)


def collective_time(
    op: Collective,
    size: object,
    group: GroupPlacement,
    hierarchy: Hierarchy,
    algorithm: Algorithm | ProgramAlgorithm = Algorithm.RING,
) -> np.ndarray:
    """Time of collective ``op`` on ``size`` bytes over ``group`` (vectorized).

    ``size`` is the full buffer of one rank: the vector being all-reduced, the gathered
    result of an all-gather, the input of a reduce-scatter, or the bytes a rank holds
    before an all-to-all. ``algorithm`` is a built-in :class:`Algorithm` or an algorithm
    given as a step program (an imported MSCCL-IR file; see :func:`program_time`).
    On the ring, a one-strategy group (one-element arrays) with a float or one-element size
    is evaluated on NumPy scalars (:mod:`deepflow.network.xp`, the same bits) and returned
    as a one-element array.
    """
    if isinstance(algorithm, ProgramAlgorithm):
        return program_time(op, size, group, hierarchy, algorithm)
    if algorithm is Algorithm.RING and one_element(group):
        kind = type(size)
        if kind is float or kind is np.float64:
            one = size
        elif one_float(size):
            one = size[0]  # type: ignore[index]
        else:
            one = None
        if one is not None:
            # one strategy: the same lines on NumPy scalars (deepflow.network.xp, the ring's
            # closed form), the one element returned in a one-element array
            t = collective_time(op, np.float64(one), scalar_placement(group), hierarchy, algorithm)
            return np.array([t])
    s = f64(size)  # an array, or a NumPy scalar for one strategy (deepflow.network.xp)
    m, k = group.members_per_domain, group.domains
    up, out = hierarchy.scale_up, hierarchy.scale_out
    if op is Collective.ALL_TO_ALL:
        # direct exchange: (m-1)/n of the data moves inside the domain, (n-m)/n across;
        # the two fabrics run concurrently (Rajbhandari et al. 2022, DeepSpeed-MoE, sec. 5.2)
        n = group.size
        intra = (m - 1.0) * up.latency + (m - 1.0) / n * s / up.effective_bandwidth
        inter = (n - m) / m * out.latency + (n - m) / n * s / out.effective_bandwidth
        return select(n > 1, np.maximum(intra, inter), 0.0)
    if op is Collective.ALL_REDUCE:
        inner = level_time(Collective.REDUCE_SCATTER, algorithm, s, m, up)
        inner = inner + level_time(Collective.ALL_GATHER, algorithm, s, m, up)
        outer = level_time(op, algorithm, s / m, k, out)
        return inner + outer
    if op in (Collective.REDUCE_SCATTER, Collective.ALL_GATHER):
        return level_time(op, algorithm, s, m, up) + level_time(op, algorithm, s / m, k, out)
    # broadcast / reduce: across domains first (or last), then inside the domain
    return level_time(op, algorithm, s, k, out) + level_time(op, algorithm, s, m, up)


def p2p_time(size: object, crosses_domain: object, hierarchy: Hierarchy) -> np.ndarray:
    """Point-to-point transfer of ``size`` bytes between two ranks: ``alpha + S / B``
    (Hockney, Parallel Computing 20, 1994, eq. 1), on the level the pair spans."""
    s = np.asarray(size, dtype=np.float64)
    up, out = hierarchy.scale_up, hierarchy.scale_out
    t_up = up.latency + s / up.effective_bandwidth
    t_out = out.latency + s / out.effective_bandwidth
    return np.where(np.asarray(crosses_domain, dtype=bool), t_out, t_up)


def bus_bandwidth(op: Collective, size: float, n: int, time_s: float) -> float:
    """nccl-tests bus bandwidth (bytes/s): algbw x 2(n-1)/n for all-reduce, x (n-1)/n for
    reduce-scatter, all-gather and all-to-all, x 1 for broadcast and reduce (NVIDIA
    nccl-tests, doc/PERFORMANCE.md)."""
    if time_s <= 0 or n <= 1:
        return 0.0
    algbw = size / time_s
    if op in (Collective.BROADCAST, Collective.REDUCE):
        return algbw
    factor = 2.0 * (n - 1) / n if op is Collective.ALL_REDUCE else (n - 1) / n
    return algbw * factor
