"""The tf32 operand-layout term and the host loop of PyTorch's grouped-GEMM fallback."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.errors import ConfigError
from deepflow.hardware.calibration import gemm_layout, measured_calibration, published_records
from deepflow.hardware.kernels import (
    Device,
    GemmSample,
    fit_host_loop_curve,
    fit_operands_factor,
    gemm_kernel_time,
    gemm_terms,
    operands_factor,
    predict_gemm,
    shipped_table,
)
from deepflow.hardware.roofline import gemm_time
from deepflow.specs import accelerator_from
from deepflow.specs.accelerator import Precision
from deepflow.specs.kernels import GemmCurve, check_record

H200 = accelerator_from("h200-sxm-141gb")
DEVICE = Device(peak=1e15, memory_bandwidth=4.8e12, compute_units=132, memory_fraction=0.9)


def _t(groups: float, streams: int, host: float, m: float = 128.0) -> float:
    """One 128 x 128 tile per group at eta 1 (2 m^2 k / 1e15 s each), no latency."""
    args = (1e15, 4e12, 132.0, 1.0, 128.0, 128.0, 1.0, 0.0, 0.0, 2.0, 2.0)
    return float(gemm_terms(m, m, 4096.0, groups, *args, streams, host_issue=host)[0])


def test_host_loop_takes_the_longer_of_the_host_and_the_device() -> None:
    """16 groups issued one at a time by a host that needs 25 us per group: a 128 x 128 x
    4096 GEMM takes 2 * 128^2 * 4096 / 1e15 = 0.134 us on the device, so the loop takes the
    host's 16 x 25 = 400 us; groups of 8192 x 8192 x 4096 take 549.8 us each on the device
    (the host waits for nothing): 16 x 549.8 us."""
    assert _t(16, 1, 25e-6) == pytest.approx(400e-6)
    device = 2 * 8192**2 * 4096 / 1e15
    # 64 x 64 = 4096 tiles per group, 32 waves of 132 units (the last 4096/4224 full)
    per_group = device * (4224 / 4096)
    assert _t(16, 1, 25e-6, 8192.0) == pytest.approx(16 * per_group)
    assert _t(16, 1, 0.0, 8192.0) == pytest.approx(16 * per_group)


def test_operands_factor_is_the_fraction_only_where_both_operands_are_mn_major() -> None:
    assert operands_factor([True, False], 0.6).tolist() == [0.6, 1.0]


def test_measured_tf32_weight_gradients_are_slower_and_16_bit_ones_are_not() -> None:
    """On the H200 table a large tf32 GEMM with both operands MN-major takes ``1 /
    mn_major_fraction`` the K-major compute term (the latency and the unhidden memory
    term aside); bf16 has no layout term (Hopper's tensor cores read 16-bit operands in
    either order)."""
    tf32 = shipped_table("h200-sxm-141gb").gemm["tf32"]
    assert 0.5 < tf32.mn_major_fraction < 0.8
    assert shipped_table("h200-sxm-141gb").gemm["bf16"].mn_major_fraction == 1.0
    peak = H200.peak(Precision.TF32)
    m = n = k = 16384.0
    t, plain, memory = gemm_kernel_time(m, n, k, H200, peak, 4.0, 1, "tf32")
    t_x, crossed, _ = gemm_kernel_time(m, n, k, H200, peak, 4.0, 1, "tf32", mn_major=True)
    assert float(crossed / plain) == pytest.approx(1.0 / tf32.mn_major_fraction, rel=1e-6)
    # compute-bound: the time is the compute term, the unhidden memory and the latency
    hidden = (1.0 - tf32.overlap) * float(memory)
    assert float(t_x - t) == pytest.approx(float(crossed - plain), rel=1e-9)
    assert float(t) == pytest.approx(float(plain) + hidden + tf32.latency_s, rel=1e-9)
    bf16_peak = H200.peak(Precision.BF16)
    assert gemm_time(m, n, k, H200, bf16_peak, 2.0, 1, "bf16", mn_major=True) == pytest.approx(
        gemm_time(m, n, k, H200, bf16_peak, 2.0, 1, "bf16")
    )


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 40000),
    n=st.integers(1, 40000),
    k=st.integers(1, 40000),
    g=st.sampled_from([1, 4, 16]),
    dtype=st.sampled_from(["fp32", "tf32", "fp16", "bf16", "fp8"]),
)
def test_mn_major_operands_never_make_a_gemm_faster(m, n, k, g, dtype) -> None:
    peak = H200.peak(Precision(dtype))
    plain = gemm_time(m, n, k, H200, peak, 2.0, g, dtype)
    crossed = gemm_time(m, n, k, H200, peak, 2.0, g, dtype, mn_major=True)
    assert crossed >= plain * (1 - 1e-12)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 20000),
    k=st.integers(1, 20000),
    g=st.integers(1, 64),
    streams=st.sampled_from([1, 4]),
    host=st.floats(1e-7, 1e-3),
)
def test_a_host_loop_is_never_faster_than_its_device_or_its_host(m, k, g, streams, host) -> None:
    t0 = _t(g, streams, 0.0, float(m))
    args = (1e15, 4e12, 132.0, 1.0, 128.0, 128.0, 1.0, 0.0, 0.0, 2.0, 2.0)
    t = float(gemm_terms(m, m, k, g, *args, streams, host_issue=host)[0])
    rounds = np.ceil(g / streams)
    assert t >= max(float(gemm_terms(m, m, k, g, *args, streams)[0]), rounds * host) * (1 - 1e-12)
    assert t0 > 0


def test_fits_recover_the_terms_that_made_the_samples() -> None:
    """Samples made by a curve with ``mn_major_fraction`` 0.6 and ``host_issue_s`` 30 us give
    those values back (each a one-parameter log-grid fit, a final step under 1 %)."""
    base = GemmCurve(peak_fraction=0.7, tile_m=128, tile_n=128, k_fill=64.0, latency_s=5e-6)
    shapes = [(4096, 4096, 4096), (8192, 4096, 2048), (2048, 8192, 8192), (1024, 1024, 8192)]
    truth = base.model_copy(update={"mn_major_fraction": 0.6})
    crossed = [GemmSample(m=a, n=b, k=c, time_s=1.0, mn_major=True) for a, b, c in shapes]
    times = predict_gemm(truth, crossed, DEVICE, "tf32")
    crossed = [
        GemmSample(m=s.m, n=s.n, k=s.k, time_s=float(t), mn_major=True)
        for s, t in zip(crossed, times, strict=True)
    ]
    assert fit_operands_factor(crossed, base, DEVICE, "tf32") == pytest.approx(0.6, rel=0.015)

    loop = base.model_copy(update={"group_streams": 1, "host_issue_s": 30e-6})
    groups = [GemmSample(m=a, n=768, k=2048, groups=16, time_s=1.0) for a in (64, 128, 256, 1024)]
    times = predict_gemm(loop, groups, DEVICE, "fp16")
    groups = [
        GemmSample(m=s.m, n=s.n, k=s.k, groups=16, time_s=float(t))
        for s, t in zip(groups, times, strict=True)
    ]
    fitted = fit_host_loop_curve(groups, base, DEVICE, "fp16")
    assert fitted.group_streams == 1
    assert fitted.host_issue_s == pytest.approx(30e-6, rel=0.015)


def test_layouts_of_the_calibrate_sweep_and_of_records() -> None:
    """A record's ``layout`` wins; a ``deepflow calibrate`` record without one (the H200
    file) takes the sweep's layout of its shape (a Llama-8B-like layer at 4096 tokens: the
    forward 4096 x 6144 x 4096 ``nt``, the input gradient 4096 x 4096 x 6144 ``nn``, the
    weight gradient 6144 x 4096 x 4096 ``tn``); a published record's layout is unknown."""

    def rec(m: int, n: int, k: int, **more: object) -> dict:
        return {"kind": "gemm", "dtype": "tf32", "m": m, "n": n, "k": k, **more}

    assert gemm_layout(rec(4096, 6144, 4096)) == "nt"
    assert gemm_layout(rec(4096, 4096, 6144)) == "nn"
    assert gemm_layout(rec(6144, 4096, 4096)) == "tn"
    assert gemm_layout(rec(6144, 4096, 4096, layout="nt")) == "nt"
    assert gemm_layout({**rec(6144, 4096, 4096), "dtype": "fp8"}) == "nt"  # TN only
    assert gemm_layout(rec(6144, 4096, 4096, source="azure")) is None
    assert all(gemm_layout(r) is None for r in published_records()["h100-sxm5-80gb"])
    measured = measured_calibration("h200-sxm-141gb")["measurements"]
    tf32 = [r for r in measured if r["kind"] == "gemm" and r["dtype"] == "tf32"]
    assert sum(gemm_layout(r) == "tn" for r in tf32) == 14


def test_a_bad_layout_names_the_field() -> None:
    with pytest.raises(ConfigError, match="layout") as err:
        check_record(
            {
                "kind": "gemm",
                "dtype": "tf32",
                "m": 8,
                "n": 8,
                "k": 8,
                "time_s": 1e-6,
                "layout": "x",
            },
            "measurements[3]",
        )
    assert "measurements[3].layout" in str(err.value)


def test_the_fallback_host_loop_is_fitted_but_not_shipped() -> None:
    """The H200 file's fp16 grouped records (``_grouped_mm_fallback``) fit a host loop of the
    dense fp16 curve in the file's own fitted block; the shipped H200 and H100 tables, which
    describe grouped kernels, do not take it (their fp16 grouped GEMM is unchanged)."""
    own = measured_calibration("h200-sxm-141gb")["fitted"]["grouped_gemm"]["fp16"]
    assert own["group_streams"] == 1 and 1e-5 < own["host_issue_s"] < 5e-5
    for name in ("h200-sxm-141gb", "h100-sxm5-80gb"):
        table = shipped_table(name)
        assert all(c.host_issue_s == 0.0 for c in table.grouped_gemm.values())
        assert "fp16" not in table.grouped_gemm
