"""Per-device operator cost: a roofline with shape-dependent GEMM efficiency.

Time of a kernel = max(compute time, memory time) + launch overhead (Williams, Waterman,
Patterson 2009, "Roofline"). Compute time divides FLOPs by the achievable rate:

    rate = peak(precision) x matmul_efficiency x tile_efficiency x wave_efficiency

* ``matmul_efficiency`` is the largest fraction of peak a large GEMM reaches on this
  accelerator (calibration data on the accelerator spec, with its source);
* tile quantization: a GEMM's output is computed in ``tile_m x tile_n`` tiles, so
  ``ceil(M/tm) ceil(N/tn)`` tiles are computed for ``M N`` useful outputs;
* wave quantization: tiles run in waves of ``compute_units`` (one tile per SM), so the last
  partial wave idles the rest (NVIDIA, "Matrix Multiplication Background User's Guide",
  sections "Tile Quantization" and "Wave Quantization");
* pipeline fill: a tile's main loop over K is preceded by filling a multistage load pipeline,
  ``K / (K + stages * tile_k)``;
* split-K (:func:`split_k_gemm_time`): a GEMM whose output has too few tiles to fill the
  device runs as ``s`` GEMMs over ``K / s`` side by side, then reduces the partial outputs.

Memory time divides the bytes moved by the achievable bandwidth (``memory_efficiency`` x
data-sheet bandwidth). Every function is vectorized: arguments broadcast as NumPy arrays.
"""

from __future__ import annotations

import numpy as np

from deepflow.specs.accelerator import AcceleratorSpec


def gemm_efficiency(
    m: object, n: object, accelerator: AcceleratorSpec, batch: object = 1, k: object = None
) -> np.ndarray:
    """Fraction of peak reached by ``batch`` GEMMs with an ``m x n`` output each and inner
    dimension ``k`` (``None``: long enough for the pipeline fill not to matter)."""
    eff = accelerator.efficiency
    m = np.maximum(np.asarray(m, dtype=np.float64), 1.0)
    n = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    tiles_m = np.ceil(m / eff.tile_m)
    tiles_n = np.ceil(n / eff.tile_n)
    tile_eff = (m * n) / (tiles_m * eff.tile_m * tiles_n * eff.tile_n)
    tiles = tiles_m * tiles_n * np.asarray(batch, dtype=np.float64)
    waves = np.ceil(tiles / accelerator.compute_units)
    wave_eff = tiles / (waves * accelerator.compute_units)
    if k is None:
        return eff.matmul * tile_eff * wave_eff
    # each output tile streams K through a software pipeline of ``pipeline_stages`` slices of
    # ``tile_k``; the fill is not overlapped with math (NVIDIA CUTLASS, "Efficient GEMM in
    # CUDA", software pipelining), so the tile takes K + stages * tile_k cycles' worth of K
    kk = np.maximum(np.asarray(k, dtype=np.float64), 1.0)
    fill_eff = kk / (kk + eff.pipeline_stages * eff.tile_k)
    return eff.matmul * tile_eff * wave_eff * fill_eff


def gemm_time(
    m: object,
    n: object,
    k: object,
    accelerator: AcceleratorSpec,
    peak: object,
    elem_bytes: object = 2.0,
    batch: object = 1,
) -> np.ndarray:
    """Time of ``batch`` GEMMs ``[m, k] x [k, n]`` (seconds) at dense rate ``peak`` (FLOP/s)
    with ``elem_bytes``-wide operands."""
    m = np.asarray(m, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    b = np.asarray(batch, dtype=np.float64)
    flops = 2.0 * m * n * k * b
    rate = np.asarray(peak, dtype=np.float64) * gemm_efficiency(m, n, accelerator, b, k)
    compute = np.where(flops > 0, flops / np.maximum(rate, 1e-30), 0.0)
    bytes_moved = (m * k + k * n + m * n) * b * np.asarray(elem_bytes, dtype=np.float64)
    memory = bytes_moved / (accelerator.memory_bandwidth * accelerator.efficiency.memory)
    overhead = np.where(flops > 0, accelerator.efficiency.kernel_overhead, 0.0)
    return np.maximum(compute, memory) + overhead


def memory_time(
    bytes_moved: object, accelerator: AcceleratorSpec, kernels: object = 1
) -> np.ndarray:
    """Time of memory-bound kernels moving ``bytes_moved`` bytes (seconds)."""
    moved = np.asarray(bytes_moved, dtype=np.float64)
    bandwidth = accelerator.memory_bandwidth * accelerator.efficiency.memory
    overhead = np.asarray(kernels, dtype=np.float64) * accelerator.efficiency.kernel_overhead
    return np.where(moved > 0, moved / bandwidth + overhead, 0.0)


SPLIT_K = (1, 2, 4, 8, 16, 32, 64)
"""Split-K factors a GEMM may use (powers of two, as cuBLAS heuristics pick)."""


def split_k_gemm_time(
    m: float,
    n: float,
    k: float,
    accelerator: AcceleratorSpec,
    peak: float,
    elem_bytes: float = 2.0,
    batch: float = 1,
) -> float:
    """Time of ``batch`` GEMMs ``[m, k] x [k, n]`` at the best split-K factor ``s``:
    ``s`` GEMMs over ``ceil(k / s)`` each, run side by side, plus the reduction of the ``s``
    partial outputs (read ``s``, write one). Libraries split K when the output has too few
    tiles to fill the device, as in the weight gradient of an early convolution,
    ``[C_in k_h k_w, N H W] x [N H W, C_out]`` (NVIDIA CUTLASS, "Efficient GEMM in CUDA",
    parallelized reductions). Factors leave each slice at least ``tile_k`` deep."""
    tile_k = accelerator.efficiency.tile_k
    splits = np.array([s for s in SPLIT_K if s == 1 or k // s >= tile_k], dtype=np.float64)
    t = gemm_time(m, n, np.ceil(k / splits), accelerator, peak, elem_bytes, batch * splits)
    reduce = memory_time((splits + 1.0) * m * n * batch * elem_bytes, accelerator)
    return float(np.min(t + np.where(splits > 1, reduce, 0.0)))
