"""Bubble fractions of pipeline schedules on uniform stages (closed forms)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepflow.estimate.pipeline import (
    GPIPE,
    INTERLEAVED,
    ZERO_BUBBLE,
    bubble_fraction,
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
