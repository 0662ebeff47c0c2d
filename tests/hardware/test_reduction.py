"""The full-reduction model (PyTorch's ``setReduceConfig`` grid): hand-worked grids, fit
recovery, and the measured H200 ``read`` sweep."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.hardware.calibration import cross_validate, is_reduction, measured_calibration
from deepflow.hardware.reduction import (
    ReductionCurve,
    fit_reduction_curve,
    reduction_ctas,
    reduction_time,
)
from deepflow.specs import accelerator_from

H200 = "h200-sxm-141gb"


@pytest.mark.parametrize(
    ("elements", "ctas"),
    [
        # 1,024 floats: dim0 = 256 (vectorized by 4), block 256 threads, 4 values each
        (1024, 1),
        # 65,536 floats (256 KiB): block 512, 128 values per thread < 256: one block
        (65536, 1),
        # 262,144 (1 MiB): 512 values per thread; min(132 * 4, 512 / 16) = 32 blocks
        (262144, 32),
        # 1 Mi floats: 2,048 per thread: min(528, 128) = 128
        (1 << 20, 128),
        # 4 Mi: 8,192 per thread: min(528, 512) = 512
        (1 << 22, 512),
        # 16 Mi: min(528, 2048) = 528, above ceil(32768 / 256) = 128
        (1 << 24, 528),
        # 256 Mi (1 GiB): 524,288 per thread: at most 256 each, 2,048 blocks
        (1 << 28, 2048),
    ],
)
def test_reduction_grid_by_hand(elements: int, ctas: int) -> None:
    """Blocks of a full float32 reduction on 132 SMs (H200), worked from Reduce.cuh's
    ``setReduceConfig`` as in the comments."""
    assert reduction_ctas(elements, 132) == ctas


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 1 << 32), units=st.integers(1, 200))
def test_grid_never_shrinks_as_the_input_grows(n: int, units: int) -> None:
    assert reduction_ctas(2 * n, units) >= reduction_ctas(n, units) >= 1


def test_reduction_time_by_hand() -> None:
    """One block: 4 us + 262,144 B at 20 GB/s = 17.1072 us; 32 blocks at 1 MiB: 4 + 3 us
    + 1,048,576 B / min(4e12, 32 x 20e9 = 6.4e11) = 8.6384 us."""
    curve = ReductionCurve(fraction=0.8, latency_s=4e-6, cta_bandwidth=20e9, global_reduce_s=3e-6)
    t = reduction_time([262144, 1048576], 5e12, 132, curve)
    assert t == pytest.approx([17.1072e-6, 8.6384e-6], rel=1e-9)


@settings(max_examples=15, deadline=None)
@given(
    mu=st.floats(0.5, 1.0),
    cta=st.floats(5e9, 5e10),
    t0=st.floats(2e-6, 8e-6),
    tg=st.floats(1e-6, 1e-5),
)
def test_fit_recovers_its_own_curve(mu: float, cta: float, t0: float, tg: float) -> None:
    """Times made by the model over the calibrate sweep (4 KiB to 4 GiB) give back its four
    terms (the combine, a few microseconds next to the latency, to 5 % of the two)."""
    b = np.array([4 << (10 + 2 * i) for i in range(10)] + [2 << 30, 4 << 30], dtype=float)
    truth = ReductionCurve(mu, t0, cta, tg)
    fit = fit_reduction_curve(b, reduction_time(b, 4.8e12, 132, truth), 4.8e12, 132)
    assert fit.fraction == pytest.approx(mu, rel=0.03)
    assert fit.latency_s == pytest.approx(t0, rel=0.05)
    assert fit.cta_bandwidth == pytest.approx(cta, rel=0.05)
    assert fit.global_reduce_s == pytest.approx(tg, abs=0.05 * (t0 + tg))


def test_measured_read_sweep_follows_the_grid() -> None:
    """The H200 file's reduction: one block up to 256 KiB (18.1 us), so the leave-one-size-out
    error of the small sizes (``memory.latency``, read family) is under the 25 % family
    bound, and one block streams at 10-40 GB/s."""
    recs = measured_calibration(H200)["measurements"]
    read = [r for r in recs if r["kind"] == "memory" and r["op"] == "read"]
    assert is_reduction(read)
    acc = accelerator_from(H200)
    curve = fit_reduction_curve(
        [r["bytes"] for r in read], [r["time_s"] for r in read], acc.memory_bandwidth, 132
    )
    assert 10e9 < curve.cta_bandwidth < 40e9
    errs = {e.curve: e for e in cross_validate([r for r in recs if r["kind"] == "memory"], acc)}
    assert errs["memory.latency"].families["read"] < 0.25
    assert errs["memory"].families["read"] < 0.05
