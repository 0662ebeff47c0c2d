"""Bubble fractions of pipeline schedules on uniform stages (closed forms), and the 1F1B
span on uneven stages against an event-by-event run of the schedule."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.estimate.pipeline import (
    GPIPE,
    INTERLEAVED,
    ZERO_BUBBLE,
    bubble_fraction,
    one_f_one_b_span,
    pipeline_time,
)
from deepflow.parallel.batch import SCHEDULES
from deepflow.specs.strategy import PipelineSchedule

ONE_F_ONE_B = SCHEDULES.index(PipelineSchedule.ONE_F_ONE_B)


def bubble_of(p, m, v, schedule, t=1.0, w=0.0):
    stages = np.full((p, 1), t)
    wgrad = np.full((p, 1), w)
    steady, bubble = pipeline_time(
        stages, wgrad, np.array([m]), np.array([v]), np.array([schedule])
    )
    return float(bubble[0] / steady[0])


@given(st.integers(1, 64), st.integers(1, 512))
def test_1f1b_and_gpipe_bubble_is_p_minus_1_over_m(p, m):
    # Narayanan et al. 2021, sec. 2.2.1: (p - 1) / m
    assert bubble_of(p, m, 1, ONE_F_ONE_B) == pytest.approx((p - 1) / m)
    assert bubble_of(p, m, 1, GPIPE) == pytest.approx((p - 1) / m)


@given(st.integers(1, 64), st.integers(1, 512), st.integers(1, 8))
def test_interleaved_bubble_is_p_minus_1_over_vm(p, m, v):
    # Narayanan et al. 2021, sec. 2.2.2: (p - 1) / (v m)
    assert bubble_of(p, m, v, INTERLEAVED) == pytest.approx((p - 1) / (v * m))
    assert bubble_fraction(p, m, v) == pytest.approx((p - 1) / (v * m))


def test_hand_worked_example():
    # p = 8 stages, m = 32 micro-batches: 7/32 = 21.9 % for 1F1B, 7/64 with 2 chunks
    assert bubble_of(8, 32, 1, ONE_F_ONE_B) == pytest.approx(0.21875)
    assert bubble_of(8, 32, 2, INTERLEAVED) == pytest.approx(0.109375)


@given(st.integers(2, 32), st.integers(1, 256), st.floats(0.05, 0.45))
def test_zero_bubble_beats_1f1b(p, m, w_share):
    # ZB-H1 (Qi et al. 2023, sec. 3.1): (p-1)(F+B-W) instead of (p-1)(F+B+W)
    t = 1.0
    w = w_share * t
    zb = bubble_of(p, m, 1, ZERO_BUBBLE, t, w)
    one = bubble_of(p, m, 1, ONE_F_ONE_B, t, w)
    assert zb < one
    assert zb == pytest.approx((p - 1) * (t - 2 * w) / (m * t))


def test_end_to_end_bubble_matches_closed_form():
    # uniform stages need the embedding and head to be negligible: a deep model, big vocab off
    from tests.core.helpers import scenario

    from deepflow.estimate import predict

    sc = scenario(
        model={"preset": "gpt3-175b", "vocab_size": 8},
        gpus=64,
        gbs=64,
        tp=8,
        pp=8,
        micro_batch_size=1,
    )
    p = predict(sc)
    share = p.breakdown_s["pipeline_bubble"] / (
        p.step_time_s
        - p.breakdown_s["pipeline_bubble"]
        - p.breakdown_s["dp_comm"]
        - p.breakdown_s["optimizer"]
    )
    assert share == pytest.approx(7 / 64, rel=0.02)


def _one_f_one_b_reference(F, B, m):
    """Event-by-event run of Megatron-LM's non-interleaved 1F1B order (warm-up forwards,
    one forward and one backward in turn, cool-down backwards) on stage times F, B."""
    p = len(F)
    orders = []
    for i in range(p):
        warm = min(p - i - 1, m)
        ops = [("F", k) for k in range(warm)]
        f, b = warm, 0
        while f < m:
            ops += [("F", f), ("B", b)]
            f, b = f + 1, b + 1
        ops += [("B", k) for k in range(b, m)]
        orders.append(ops)
    done, ptr, clock = {}, [0] * p, [0.0] * p
    progress = True
    while progress:
        progress = False
        for i in range(p):
            while ptr[i] < len(orders[i]):
                kind, k = orders[i][ptr[i]]
                if kind == "F":
                    dep = ("F", i - 1, k) if i > 0 else None
                else:
                    dep = ("B", i + 1, k) if i < p - 1 else ("F", i, k)
                if dep is not None and dep not in done:
                    break
                start = max(clock[i], done[dep] if dep else 0.0)
                clock[i] = start + (F[i] if kind == "F" else B[i])
                done[(kind, i, k)] = clock[i]
                ptr[i] += 1
                progress = True
    return max(clock)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.5, 12.0), min_size=2, max_size=8),
    st.floats(1.5, 3.0),
    st.integers(1, 8),
)
def test_one_f_one_b_span_matches_the_schedule_run_event_by_event(forward, ratio, per_stage):
    p = len(forward)
    m = p * per_stage
    backward = [f * ratio for f in forward]
    exact = _one_f_one_b_reference(forward, backward, m)
    T = np.array([[f + b] for f, b in zip(forward, backward, strict=True)])
    span = float(one_f_one_b_span(T, np.array([[f] for f in forward]), np.array([m]))[0])
    # never longer than the schedule; exact when the last stage is the slowest, and within
    # a few per cent otherwise (near-ties with few micro-batches)
    assert span <= exact * (1 + 1e-9)
    assert span >= exact * (0.95 if per_stage == 1 else 0.99)
    if T[-1, 0] >= T.max():
        assert span == pytest.approx(exact, rel=1e-9)
    # the old closed form, sum - max, is never shorter
    assert T.sum() + (m - 1) * T.max() >= exact * (1 - 1e-9)
