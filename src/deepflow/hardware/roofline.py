"""Per-device operator cost: the roofline entry points the evaluators call.

Time of a kernel = max(compute time, memory time) + a fixed per-kernel latency (Williams,
Waterman, Patterson 2009, "Roofline"), with the calibrated, per-(accelerator, precision)
curves of :mod:`deepflow.hardware.kernels`: GEMM (peak-achievable fraction, tile and wave
quantization, K-depth fill, latency, memory roof), grouped GEMM, and streaming kernels
(achievable bandwidth). This module keeps the signatures the estimator, the simulator's
lowering and the operator simulator share:

* :func:`gemm_time`, :func:`gemm_efficiency`, :func:`memory_time`;
* split-K (:func:`split_k_gemm_time`): a GEMM whose output has too few tiles to fill the
  device runs as ``s`` GEMMs over ``K / s`` side by side, then reduces the partial outputs.

Every function is vectorized: arguments broadcast as NumPy arrays.
"""

from __future__ import annotations

import numpy as np

from deepflow.hardware.grouped_tiles import UnevenRows
from deepflow.hardware.kernels import gemm_kernel_time, stream_time
from deepflow.specs.accelerator import AcceleratorSpec


def gemm_efficiency(
    m: object,
    n: object,
    accelerator: AcceleratorSpec,
    batch: object = 1,
    k: object = None,
    dtype: object = None,
) -> np.ndarray:
    """Fraction of peak reached by the compute part of ``batch`` GEMMs with an ``m x n``
    output each and inner dimension ``k`` (``None``: long enough for the K-depth fill not to
    matter), from the calibrated GEMM curve (:mod:`deepflow.hardware.kernels`)."""
    kk = 1e12 if k is None else k
    peak = 1e15
    _, compute, _ = gemm_kernel_time(m, n, kk, accelerator, peak, 2.0, batch, dtype)
    flops = (
        2.0
        * np.maximum(np.asarray(m, dtype=np.float64), 1.0)
        * np.maximum(np.asarray(n, dtype=np.float64), 1.0)
        * np.maximum(np.asarray(kk, dtype=np.float64), 1.0)
        * np.asarray(batch, dtype=np.float64)
    )
    return flops / (peak * compute)


def gemm_time(
    m: object,
    n: object,
    k: object,
    accelerator: AcceleratorSpec,
    peak: object,
    elem_bytes: object = 2.0,
    batch: object = 1,
    dtype: object = None,
    eta_scale: object = 1.0,
    uneven_rows: UnevenRows | None = None,
    mn_major: bool = False,
) -> np.ndarray:
    """Time of ``batch`` GEMMs ``[m, k] x [k, n]`` (seconds) at dense rate ``peak`` (FLOP/s)
    with ``elem_bytes``-wide outputs, at precision ``dtype`` (a precision code, an array of
    codes in ``Precision`` order, a name, or ``None`` for bf16): the calibrated GEMM curve
    (grouped curve for ``batch > 1``) of :func:`deepflow.hardware.kernels.gemm_kernel_time`,
    its peak-achievable fraction times ``eta_scale`` (per strategy where an array).
    ``uneven_rows``: the ``batch`` groups' row counts when they vary around the mean ``m``
    (MoE experts), each group padded to whole row tiles
    (:class:`deepflow.hardware.grouped_tiles.UnevenRows`); ``None``: equal groups.
    ``mn_major``: both operands are MN-major, the weight gradient ``dY^T X`` of a linear
    layer (at the curve's ``mn_major_fraction``, :func:`deepflow.hardware.kernels.operands_factor`)."""
    m = np.asarray(m, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    b = np.asarray(batch, dtype=np.float64)
    t, _, _ = gemm_kernel_time(
        m, n, k, accelerator, peak, elem_bytes, b, dtype, eta_scale, uneven_rows, mn_major
    )
    return np.where(m * n * k * b > 0, t, 0.0)


def memory_time(
    bytes_moved: object, accelerator: AcceleratorSpec, kernels: object = 1
) -> np.ndarray:
    """Time of memory-bound kernels moving ``bytes_moved`` bytes (seconds): the calibrated
    streaming curve (achievable bandwidth + per-kernel latency)."""
    return stream_time(bytes_moved, accelerator, kernels)


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
    dtype: object = None,
    mn_major: bool = False,
) -> float:
    """Time of ``batch`` GEMMs ``[m, k] x [k, n]`` at the best split-K factor ``s``
    (``mn_major``: both operands MN-major, :func:`gemm_time`):
    ``s`` GEMMs over ``ceil(k / s)`` each, run side by side, plus the reduction of the ``s``
    partial outputs (read ``s``, write one). Libraries split K when the output has too few
    tiles to fill the device, as in the weight gradient of an early convolution,
    ``[C_in k_h k_w, N H W] x [N H W, C_out]`` (NVIDIA CUTLASS, "Efficient GEMM in CUDA",
    parallelized reductions). Factors leave each slice at least ``tile_k`` deep."""
    tile_k = accelerator.efficiency.tile_k
    splits = np.array([s for s in SPLIT_K if s == 1 or k // s >= tile_k], dtype=np.float64)
    t = gemm_time(
        m,
        n,
        np.ceil(k / splits),
        accelerator,
        peak,
        elem_bytes,
        batch * splits,
        dtype,
        mn_major=mn_major,
    )
    reduce = memory_time((splits + 1.0) * m * n * batch * elem_bytes, accelerator)
    return float(np.min(t + np.where(splits > 1, reduce, 0.0)))
