"""Time of a full reduction (``x.sum()``) on a GPU: how many thread blocks PyTorch launches.

``deepflow calibrate`` measures the memory ``read`` operation as ``src.sum()`` of a float32
buffer (:func:`deepflow.hardware.calibrate.measure.memory_cases`). Unlike a copy or a
fill, whose element-wise kernels cover the buffer with as many blocks as it needs, PyTorch's
reduction kernel sizes its grid by a heuristic, ``setReduceConfig`` in
``aten/src/ATen/native/cuda/Reduce.cuh``, which for a full reduction of ``n`` contiguous
elements (one output, the reduced dimension the fastest-moving) works out as:

* the input is read in vectors of 4 (``input_vec_size``) when ``n > 128``, so the reduced
  dimension is ``dim0 = n / 4``; the block is one row of ``w = min(last_pow2(dim0), 512)``
  threads (``set_block_dimension`` with one output: ``block_height`` 1,
  ``MAX_NUM_THREADS`` 512);
* each thread sums ``v = ceil(n / w)`` values (``values_per_thread``);
* only when ``v >= 256`` (``max_values_per_thread``) is the input split across
  ``c = max(min(U (2048 / w), ceil(v / 16)), ceil(v / 256))`` blocks (``ctas_per_output``:
  ``U`` multiprocessors, 2048 resident threads each, ``min_values_per_thread`` 16), which
  then combine their partial sums through global memory (``global_reduce``: a staging
  buffer and a semaphore that ``launch_reduce_kernel`` zeroes with ``cudaMemsetAsync``
  before the kernel); otherwise **one block** reads the whole input.

So a reduction of up to 512 KiB of float32 (``v < 256``) runs on one block of one SM, and
its time grows at that block's streaming rate, about 19 GB/s on the H200 (4 KiB in 4.9 us,
256 KiB in 18.1 us), a 200th of the device's; from 1 MiB the grid grows to 32, 128, 512
blocks and the global combine adds a fixed cost. The model::

    c = ctas(n)                                  (above)
    t = t_0 + [c > 1] t_g + bytes / min(BW mu, c b_cta)

``t_0`` (the kernel latency), ``mu`` (the fraction of the data-sheet bandwidth ``BW``),
``b_cta`` (one block's streaming rate) and ``t_g`` (the global combine: the semaphore
memset and the last block's pass over the partial sums) are fitted to the measured sweep by
:func:`fit_reduction_curve`. The resident-thread count (2048 per SM) is that of compute
capabilities 8.0, 9.0 and 10.0 (CUDA C++ Programming Guide, "Compute Capabilities",
maximum resident threads per SM); ROCm builds change the heuristic (``#ifdef USE_ROCM``)
and are not modelled here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepflow.hardware.kernels import _log_error, _refine

__all__ = [
    "REDUCTION_OP",
    "ReductionCurve",
    "fit_reduction_curve",
    "reduction_ctas",
    "reduction_time",
]

REDUCTION_OP = "read"
"""The memory operation of a calibration file that is a full reduction (``src.sum()``)."""
REDUCTION_ELEMENT_BYTES = 4
"""Bytes per element of the measured reduction (float32, ``_memory_run``)."""

INPUT_VEC_SIZE = 4
"""``ReduceConfig::input_vec_size``: elements per vectorized load along the reduced dim."""
VECTORIZE_MIN_DIM = 128
"""The input is vectorized when the reduced dimension is longer than this."""
MAX_NUM_THREADS = 512
"""``ReduceConfig::MAX_NUM_THREADS``: threads per block."""
MIN_VALUES_PER_THREAD = 16
MAX_VALUES_PER_THREAD = 256
"""``setReduceConfig``'s ``min_values_per_thread`` / ``max_values_per_thread``."""
THREADS_PER_SM = 2048
"""Resident threads per multiprocessor (``maxThreadsPerMultiProcessor``), CC 8.0-10.0."""


def reduction_ctas(elements: object, compute_units: int) -> np.ndarray:
    """Thread blocks of PyTorch's full reduction of ``elements`` contiguous values on a GPU
    of ``compute_units`` multiprocessors (``setReduceConfig``, module docstring)."""
    n = np.maximum(np.asarray(elements, dtype=np.float64), 1.0)
    dim0 = np.where(n > VECTORIZE_MIN_DIM, n / INPUT_VEC_SIZE, n)
    width = np.where(
        dim0 < MAX_NUM_THREADS, 2.0 ** np.floor(np.log2(np.maximum(dim0, 1.0))), MAX_NUM_THREADS
    )
    per_thread = np.ceil(n / width)
    target = compute_units * np.floor(THREADS_PER_SM / width)
    split = np.maximum(
        np.minimum(target, np.ceil(per_thread / MIN_VALUES_PER_THREAD)),
        np.ceil(per_thread / MAX_VALUES_PER_THREAD),
    )
    return np.where(per_thread >= MAX_VALUES_PER_THREAD, split, 1.0)


@dataclass(frozen=True)
class ReductionCurve:
    """Fitted terms of :func:`reduction_time` (module docstring)."""

    fraction: float
    latency_s: float
    cta_bandwidth: float
    global_reduce_s: float


def reduction_time(
    bytes_moved: object, bandwidth: float, compute_units: int, curve: ReductionCurve
) -> np.ndarray:
    """``t = t_0 + [c > 1] t_g + bytes / min(BW mu, c b_cta)`` of a full reduction reading
    ``bytes_moved`` bytes (float32 elements) on ``compute_units`` multiprocessors."""
    b = np.asarray(bytes_moved, dtype=np.float64)
    c = reduction_ctas(b / REDUCTION_ELEMENT_BYTES, compute_units)
    rate = np.minimum(bandwidth * curve.fraction, c * curve.cta_bandwidth)
    return curve.latency_s + np.where(c > 1, curve.global_reduce_s, 0.0) + b / rate


def fit_reduction_curve(
    bytes_moved: Sequence[float], times: Sequence[float], bandwidth: float, compute_units: int
) -> ReductionCurve:
    """The four terms of :func:`reduction_time` of least mean absolute log error of time
    (the deterministic grid search of :func:`deepflow.hardware.kernels.fit_gemm_curve`)."""
    b = np.asarray(bytes_moved, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if b.size == 0 or np.any(b <= 0) or np.any(t <= 0):
        raise ValueError("fit_reduction_curve needs positive bytes and times")
    c = reduction_ctas(b / REDUCTION_ELEMENT_BYTES, compute_units)
    split = c > 1

    def objective(t0, mu, cta, tg):
        pred = t0 + np.where(split, tg, 0.0) + b / np.minimum(bandwidth * mu, c * cta)
        return _log_error(pred, t)

    # latency 1-20 us, fraction 0.3-1.2, one block 1-100 GB/s, combine 0.1-30 us
    bounds = [(1e-6, 2e-5), (0.3, 1.2), (1e9, 1e11), (1e-7, 3e-5)]
    # 15 points a side and 20 rounds: the combine, a few microseconds that moves only the
    # split sizes, is not lost to the other terms in an early round
    x, _ = _refine(objective, bounds, [True, False, True, True], rounds=20, points=15)
    return ReductionCurve(
        fraction=float(f"{x[1]:.4g}"),
        latency_s=float(f"{x[0]:.3g}"),
        cta_bandwidth=float(f"{x[2]:.3g}"),
        global_reduce_s=float(f"{x[3]:.3g}"),
    )
