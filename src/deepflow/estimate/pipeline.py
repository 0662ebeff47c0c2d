"""Pipeline schedules: step time of the pipeline and in-flight micro-batches per stage.

With ``m`` micro-batches, ``p`` stages whose per-micro-batch time (forward + backward of
all their chunks) is ``T_i``, and ``v`` chunks per stage:

* 1F1B and GPipe (Narayanan et al. 2021, sec. 2.2.1; Huang et al. 2019):
  ``T = m max_i T_i + (sum_i T_i - max_i T_i)``; on uniform stages the bubble is
  ``(p - 1) T`` and the bubble fraction ``(p - 1) / m``;
* interleaved 1F1B (Narayanan et al. 2021, sec. 2.2.2): chunks are ``1/v`` of a stage, so
  the fill and drain shrink by ``v``: ``T = m max_i T_i + (sum_i T_i - max_i T_i) / v``,
  bubble fraction ``(p - 1) / (v m)``;
* zero-bubble ZB-H1 (Qi et al. 2023, arXiv 2401.10241, sec. 3.1): weight-gradient work
  ``W`` is deferred into the bubble, which shrinks from ``(p-1)(F + B + W)`` to
  ``(p-1)(F + B - W)``: fill and drain use ``T_i - 2 W_i``.

In-flight micro-batches on stage ``i`` (0-based), which sets its activation memory:
1F1B and ZB-H1 ``min(p - i, m)``; GPipe ``m``; interleaved ``((p - i - 1) 2 + (v - 1) p + 1) / v``
micro-batches' worth (Megatron-LM's warm-up count; for ``i = 0`` this is
``p (1 + (p - 1)/(p v))``, Korthikanti et al. 2022, sec. 4.2.3).
"""

from __future__ import annotations

import numpy as np

from deepflow.parallel.batch import SCHEDULES
from deepflow.specs.strategy import PipelineSchedule

GPIPE = SCHEDULES.index(PipelineSchedule.GPIPE)
INTERLEAVED = SCHEDULES.index(PipelineSchedule.INTERLEAVED)
ZERO_BUBBLE = SCHEDULES.index(PipelineSchedule.ZERO_BUBBLE)


def pipeline_time(
    stage_times: np.ndarray,
    stage_weight_grads: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    schedule: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pipeline time and bubble for stage times of shape ``(stages, strategies)``.

    Returns ``(steady, bubble)``: ``steady = m max_i T_i`` and the bubble, whose sum is the
    time from the first forward to the last backward.
    """
    t_max = stage_times.max(axis=0)
    fill = stage_times.sum(axis=0) - t_max
    zb_times = stage_times - 2.0 * stage_weight_grads
    zb_fill = np.maximum(
        zb_times.sum(axis=0)
        - zb_times[np.argmax(stage_times, axis=0), np.arange(stage_times.shape[1])],
        0.0,
    )
    bubble = np.where(schedule == ZERO_BUBBLE, zb_fill, fill / v)
    return m * t_max, bubble


def bubble_fraction(p: int, m: int, v: int = 1) -> float:
    """Closed-form bubble fraction of (interleaved) 1F1B on uniform stages:
    ``(p - 1) / (v m)`` (Narayanan et al. 2021, sec. 2.2.2)."""
    return (p - 1) / (v * m)


def in_flight(
    stage: np.ndarray, p: np.ndarray, m: np.ndarray, v: np.ndarray, schedule: np.ndarray
) -> np.ndarray:
    """Micro-batches' worth of activations stage ``stage`` holds at its peak."""
    one_f_one_b = np.minimum(p - stage, m)
    chunks = (p - stage - 1) * 2 + (v - 1) * p + 1
    interleaved = np.minimum(chunks, m * v) / v
    return np.where(
        schedule == GPIPE,
        m,
        np.where((schedule == INTERLEAVED) & (v > 1), interleaved, one_f_one_b),
    )
