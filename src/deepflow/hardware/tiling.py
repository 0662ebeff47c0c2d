"""Hierarchical roofline with GEMM tiling over a generated memory hierarchy.

A GEMM ``C[M, N] = A[M, K] B[K, N]`` runs as output tiles: each level of the hierarchy
holds an ``m x n`` tile of C (accumulated in fp32) and streams slices of ``k_s`` columns of
A and rows of B through double buffers, so a tile fits a level of ``S`` bytes when

    4 m n + 2 e k_s (m + n) <= S                     (e = bytes per operand element)

and the traffic from the level above is (output-stationary dataflow; the count of
Hong & Kung 1981, "I/O complexity: the red-blue pebble game", for blocked matrix product):

    Q(m, n) = e (M K ceil(N / n) + K N ceil(M / m) + M N)

A reads once per column block of tiles, B once per row block, C is written once (the C
write-back is always counted, unlike the public DeepFlow code, reference sec. 8.4). The
traffic out of each level is set by the tile of the next non-empty level inside it: DRAM's
by the L2 tile (one chip-wide instance), L2's by the L1 tile of one unit (summed over the
units, the same formula), L1's by the kernel's register tile (``tile_m x tile_n`` of the
accelerator's efficiency block), whose operand delivery is inside the datapath energy and
is not timed. Time is the maximum over the levels and the compute (Williams et al. 2009,
"Roofline", extended to several levels as in DeepFlow ``time_calculation.py``):

    T = max(F / (peak * matmul_efficiency), max_i Q_i / BW_i) + kernel overhead

Tiles are chosen per level among powers of two up to the matrix sides (never larger than the
matrix, reference sec. 8.5) by least traffic, in one vectorized pass over the candidates.
An empty level (capacity 0) is skipped: the level inside it draws from the level outside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepflow.specs.accelerator import AcceleratorSpec
from deepflow.tech.generator import MemoryHierarchy

ACC_BYTES = 4.0  # fp32 accumulators
K_SLICE = 64  # columns of A / rows of B per pipeline slice (CUTLASS sm80 default tile_k)
_CANDIDATES = 2.0 ** np.arange(3, 15)  # 8 ... 16384


def best_tile(
    m: float, n: float, k: float, capacity: float, elem: float
) -> tuple[float, float, float]:
    """The ``(tile_m, tile_n, traffic_bytes)`` of least traffic that fits ``capacity``
    bytes; ``(1, 1, traffic)`` if no candidate fits."""
    tm = np.minimum(_CANDIDATES, m)[:, None]
    tn = np.minimum(_CANDIDATES, n)[None, :]
    ks = min(k, K_SLICE)
    fits = ACC_BYTES * tm * tn + 2.0 * elem * ks * (tm + tn) <= capacity
    traffic = elem * (m * k * np.ceil(n / tn) + k * n * np.ceil(m / tm) + m * n)
    traffic = np.where(fits, traffic, np.inf)
    i = int(np.argmin(traffic))
    if not np.isfinite(traffic.flat[i]):
        return 1.0, 1.0, elem * (2.0 * m * n * k + m * n)
    r, c = np.unravel_index(i, traffic.shape)
    return float(tm[r, 0]), float(tn[0, c]), float(traffic.flat[i])


@dataclass(frozen=True)
class TiledGemm:
    """Hierarchical-roofline result of one GEMM. ``traffic`` and ``level_time`` are keyed
    by the level the bytes come *from* (``dram``, then SRAM level names)."""

    flops: float
    compute_time: float
    traffic: dict[str, float]
    level_time: dict[str, float]
    tiles: dict[str, tuple[float, float]]
    time: float

    @property
    def bound(self) -> str:
        """``compute`` or the level whose bandwidth sets the time."""
        worst = max(self.level_time, key=self.level_time.__getitem__, default="compute")
        return worst if self.level_time.get(worst, 0.0) > self.compute_time else "compute"


def tiled_gemm(
    m: float,
    n: float,
    k: float,
    accelerator: AcceleratorSpec,
    hierarchy: MemoryHierarchy,
    peak: float,
    elem: float = 2.0,
) -> TiledGemm:
    """Time of one ``[m, k] x [k, n]`` GEMM on ``accelerator`` with memory ``hierarchy``."""
    eff = accelerator.efficiency
    flops = 2.0 * m * n * k
    compute = flops / max(peak * eff.matmul, 1e-30)
    # levels outermost first: (name, bandwidth, consumer capacity per instance, instances)
    sram = [lv for lv in reversed(hierarchy.sram) if lv.capacity > 0]
    sources = [("dram", hierarchy.dram_bandwidth * eff.memory)] + [
        (lv.name, lv.bandwidth) for lv in sram
    ]
    consumers: list[tuple[str, float, int]] = [
        (lv.name, lv.instance_capacity, lv.instances) for lv in sram
    ]
    register_bytes = ACC_BYTES * eff.tile_m * eff.tile_n + 2.0 * elem * K_SLICE * (
        eff.tile_m + eff.tile_n
    )
    consumers.append(("registers", register_bytes, accelerator.compute_units))
    traffic: dict[str, float] = {}
    level_time: dict[str, float] = {}
    tiles: dict[str, tuple[float, float]] = {}
    for (src, bandwidth), (dst, capacity, _instances) in zip(sources, consumers, strict=True):
        tm, tn, q = best_tile(m, n, k, capacity, elem)
        if src == "dram":  # compulsory traffic: every operand once
            q = max(q, elem * (m * k + k * n + m * n))
        tiles[dst] = (tm, tn)
        traffic[src] = q
        level_time[src] = q / bandwidth if bandwidth > 0 else np.inf
    time = max(compute, *level_time.values()) + eff.kernel_overhead
    return TiledGemm(flops, compute, traffic, level_time, tiles, time)


def tiled_matmul_efficiency(
    shapes: Sequence[tuple[float, float, float]],
    accelerator: AcceleratorSpec,
    hierarchy: MemoryHierarchy,
    peak: float,
    elem: float = 2.0,
) -> float:
    """FLOP-weighted share of the compute-bound time that ``shapes`` reach through the
    hierarchy: ``sum compute_time / sum max(compute, levels)`` (launch overhead excluded),
    in (0, 1]. Multiplying an accelerator's ``efficiency.matmul`` by it carries the SRAM
    sizes and bandwidths of a generated design into the closed-form evaluator."""
    compute = 0.0
    bound = 0.0
    for m, n, k in shapes:
        g = tiled_gemm(m, n, k, accelerator, hierarchy, peak, elem)
        compute += g.compute_time
        bound += max(g.compute_time, *g.level_time.values())
    return float(compute / bound) if bound > 0 else 1.0


def bytes_per_flop(
    shapes: Sequence[tuple[float, float, float]],
    accelerator: AcceleratorSpec,
    hierarchy: MemoryHierarchy,
    peak: float,
    elem: float = 2.0,
) -> dict[str, float]:
    """Bytes moved out of each level per GEMM FLOP, FLOP-weighted over ``shapes`` (for
    data-movement energy)."""
    flops = 0.0
    moved: dict[str, float] = {}
    for m, n, k in shapes:
        g = tiled_gemm(m, n, k, accelerator, hierarchy, peak, elem)
        flops += g.flops
        for name, q in g.traffic.items():
            moved[name] = moved.get(name, 0.0) + q
    return {name: q / flops for name, q in moved.items()} if flops > 0 else {}
