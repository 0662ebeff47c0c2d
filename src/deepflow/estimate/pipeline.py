"""Pipeline schedules: step time of the pipeline and in-flight micro-batches per stage.

With ``m`` micro-batches, ``p`` stages whose per-micro-batch time (forward + backward of
all their chunks) is ``T_i``, and ``v`` chunks per stage:

* GPipe (Huang et al. 2019) and 1F1B (Narayanan et al. 2021, sec. 2.2.1):
  ``T = m max_i T_i + (sum_i T_i - max_i T_i)``; on uniform stages the bubble is
  ``(p - 1) T`` and the bubble fraction ``(p - 1) / m``. For GPipe (two flow shops of
  identical jobs) this is exact on any stage times. For 1F1B it is exact when the slowest
  stage is the last one, and too long when it is further up: the stages after it return
  gradients faster than it works, so part of their fill and drain hides behind its own
  warm-up forwards and cool-down backwards. Given each stage's forward time ``F_i``
  (``B_i = T_i - F_i``), :func:`one_f_one_b_span` gives the span exactly for that case
  (uneven pipelines, :mod:`deepflow.parallel.pipeline_split`);
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


def one_f_one_b_span(
    stage_times: np.ndarray, stage_forward: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """Time from the first forward to the last backward of non-interleaved 1F1B
    (PipeDream-Flush; Megatron-LM's ``forward_backward_pipelining_without_interleaving``:
    stage ``i`` runs ``p - i - 1`` warm-up forwards, then one forward and one backward in
    turn, then the remaining backwards), for stage times ``T_i`` and forward times ``F_i``
    of shape ``(stages, strategies)``, ``B_i = T_i - F_i``.

    Suppose stage ``j`` is never idle between its first and its last pass except while it
    waits for its first and its last gradient. Its first pass starts after the forwards of
    the stages before it, ``S_{j-1} = sum_{i<j} F_i`` (their backwards come after its last
    one: ``sum_{i<j} (F_i + B_i)`` in all). Its first backward needs micro-batch 0 to go
    ``d`` more stages down and back, while it runs ``d`` more forwards of its own, for every
    depth ``d = k - j``: it waits
    ``W_j = max(0, max_{k>j} [sum_{j<i<=k} T_i - (k - j) F_j])``, and at the end, by the same
    argument on backwards, ``C_j = max(0, max_{k>j} [sum_{j<i<=k} T_i - (k - j) B_j])``.
    The span is the longest of these paths:

        span = max_j [ m T_j + sum_{i<j} T_i + W_j + C_j ].

    On uniform stages every ``j`` gives ``(m + p - 1) T``; when the last stage is the
    slowest it is ``m max T + sum T - max T``; against an event-driven run of the schedule
    it is exact unless several stages are nearly as slow and ``m`` is close to ``p``
    (then a few per cent short; ``tests/core/test_pipeline_schedules.py``).
    """
    p = stage_times.shape[0]
    prefix = np.cumsum(stage_times, axis=0)  # S_k = sum_{i<=k} T_i
    before = prefix - stage_times  # sum_{i<j} T_i
    # down[j, k] = sum_{j<i<=k} T_i and depth[j, k] = k - j, for k > j
    down = prefix[None, :, :] - prefix[:, None, :]
    depth = (np.arange(p)[None, :] - np.arange(p)[:, None]).astype(float)[:, :, None]
    later = depth > 0
    backward = stage_times - stage_forward
    warm = np.where(later, down - depth * stage_forward[:, None, :], 0.0).max(axis=1)
    cool = np.where(later, down - depth * backward[:, None, :], 0.0).max(axis=1)
    paths = m * stage_times + before + np.maximum(warm, 0.0) + np.maximum(cool, 0.0)
    return paths.max(axis=0)


def pipeline_time(
    stage_times: np.ndarray,
    stage_weight_grads: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    schedule: np.ndarray,
    stage_forward: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pipeline time and bubble for stage times of shape ``(stages, strategies)``.

    Returns ``(steady, bubble)``: ``steady = m max_i T_i`` and the bubble, whose sum is the
    time from the first forward to the last backward. With ``stage_forward`` (the forward
    part of each stage's time), non-interleaved 1F1B takes :func:`one_f_one_b_span`.
    """
    t_max = stage_times.max(axis=0)
    fill = stage_times.sum(axis=0) - t_max
    p = stage_times.shape[0]
    if stage_forward is not None and p > 1:
        # 1F1B, one chunk per stage, slowest stage not the last (where sum - max is exact)
        cols = np.flatnonzero(
            (schedule != GPIPE)
            & (schedule != ZERO_BUBBLE)
            & (v <= 1)
            & (np.argmax(stage_times[::-1], axis=0) != 0)
        )
        if cols.size:
            m = np.broadcast_to(m, t_max.shape)
            span = one_f_one_b_span(stage_times[:, cols], stage_forward[:, cols], m[cols])
            fill = fill.copy()
            fill[cols] = np.minimum(fill[cols], span - m[cols] * t_max[cols])
    zero_bubble = np.asarray(schedule == ZERO_BUBBLE)
    if not zero_bubble.any():  # the zero-bubble fill below would be selected nowhere
        return m * t_max, np.where(zero_bubble, 0.0, fill / v)
    zb_times = stage_times - 2.0 * stage_weight_grads
    zb_fill = np.maximum(
        zb_times.sum(axis=0)
        - zb_times[np.argmax(stage_times, axis=0), np.arange(stage_times.shape[1])],
        0.0,
    )
    bubble = np.where(zero_bubble, zb_fill, fill / v)
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
