"""The host-timed loop's clock boost, the output traffic of an accumulating GEMM, and the
dense overlap shared by the fit and the estimator."""

from __future__ import annotations

import numpy as np
import pytest

from deepflow.hardware.calibration import SIMUMAX_GEMM_LOOP, _device, _fit_eta, published_records
from deepflow.hardware.clock_boost import host_loop_time, sustained_time
from deepflow.hardware.kernels import (
    GEMM_TILE_SET,
    Device,
    GemmSample,
    fit_gemm_curve,
    gemm_kernel_time,
    gemm_terms,
    kernel_params,
    output_bytes,
    predict_gemm,
)
from deepflow.specs import accelerator_from
from deepflow.specs.kernels import GemmCurve

WARMUP, TIMED = 25, 75


def test_a_loop_inside_the_window_is_timed_at_the_boost_clock() -> None:
    # 0.1 ms at the sustained clock, 0.08 ms boosted: 100 calls = 8 ms, inside 40 ms
    t = host_loop_time(1e-4, 1.25, 0.040, WARMUP, TIMED)
    assert float(t) == pytest.approx(8e-5)


def test_a_loop_past_the_window_is_timed_at_the_sustained_clock() -> None:
    # 10 ms sustained, 8 ms boosted: 5 calls in the 40 ms window, all warm-up
    t = host_loop_time(1e-2, 1.25, 0.040, WARMUP, TIMED)
    assert float(t) == pytest.approx(1e-2)


def test_a_window_that_ends_in_the_timed_calls_mixes_the_two_clocks() -> None:
    # 1 ms sustained, 0.8 ms boosted: the 40 ms window holds 50 calls, 25 of them timed;
    # mean (25 x 0.8 + 50 x 1.0) / 75 = 0.9333 ms
    t = host_loop_time(1e-3, 1.25, 0.040, WARMUP, TIMED)
    assert float(t) == pytest.approx(70.0 / 75.0 * 1e-3)
    # and back: the sustained time of that measured time is 1 ms
    assert float(sustained_time(t, 1.25, 0.040, WARMUP, TIMED)) == pytest.approx(1e-3)


def test_the_sustained_time_inverts_the_loop_in_every_case() -> None:
    kernel = np.geomspace(1e-6, 1e-1, 200)
    for boost, window in ((1.0, 0.0), (1.3, 0.025), (1.6, 0.2)):
        measured = host_loop_time(kernel, boost, window, WARMUP, TIMED)
        assert np.all(measured <= kernel * (1 + 1e-12))
        assert np.all(np.diff(measured) > 0)  # one measured time per kernel time
        back = sustained_time(measured, boost, window, WARMUP, TIMED)
        np.testing.assert_allclose(back, kernel, rtol=1e-9)


def test_a_record_without_a_host_loop_is_its_kernel_time() -> None:
    assert float(host_loop_time(3e-3, 1.3, 0.025, 0, 0)) == 3e-3
    assert float(sustained_time(3e-3, 1.3, 0.025, 0, 0)) == 3e-3


def test_the_simumax_loop_is_25_warm_up_and_75_timed_calls() -> None:
    assert SIMUMAX_GEMM_LOOP == (25, 75)
    recs = [r for r in published_records()["b200"] if r["kind"] == "gemm"]
    simumax = [r for r in recs if r["source"] == "simumax"]
    assert len(simumax) == 514
    assert all((r["warmup_calls"], r["timed_calls"]) == (25, 75) for r in simumax)
    assert not any("timed_calls" in r for r in recs if r["source"] != "simumax")


def test_an_accumulating_gemm_reads_and_writes_its_output() -> None:
    assert float(output_bytes(4.0, True)) == 8.0
    assert float(output_bytes(2.0, True)) == 4.0
    assert float(output_bytes(2.0, False)) == 2.0
    # 1024^3 bf16 inputs into an fp32 main gradient: (2 x 1024^2 x 2 + 1024^2 x 8) bytes
    bw = 1e12
    _, _, memory = gemm_terms(1024, 1024, 1024, 1, 1e15, bw, 132, 1.0, 128, 128, 1.0, 0.0,
                              0.0, 2.0, output_bytes(4.0, True))  # fmt: skip
    assert float(memory) == pytest.approx(12 * 2**20 / bw)


def test_simumax_weight_gradients_accumulate_and_the_others_do_not() -> None:
    recs = [r for r in published_records()["b200"] if r["kind"] == "gemm"]
    by_family: dict[str, set[float]] = {}
    for r in recs:
        if r["source"] == "simumax":
            by_family.setdefault(r["family"], set()).add(r["out_bytes"])
    # wgrad into an fp32 (8 bytes read + written) or a bf16 (4) main gradient
    assert by_family == {"fwd (TN)": {2.0}, "dgrad (NN)": {2.0}, "wgrad (NT)": {4.0, 8.0}}


def test_the_estimator_uses_the_fitted_dense_overlap() -> None:
    """One definition: the estimator's dense GEMM time is the fit's prediction at the
    sustained clock, with the curve's overlap (< 1 on the B200: the unhidden output traffic
    is added, not dropped)."""
    acc = accelerator_from("b200")
    params = kernel_params(acc)
    curve = params.gemm["bf16"]
    assert 0.0 < curve.overlap < 1.0
    assert curve.clock_boost > 1.0 and curve.boost_window_s > 0.0
    assert params.memory is not None
    device = _device(acc, "bf16", params.memory.fraction)
    shapes = [(4096, 512, 4096, 2.0), (16384, 8192, 4096, 8.0), (256, 7168, 4096, 2.0)]
    samples = [GemmSample(m, n, k, 1.0, out_bytes=o) for m, n, k, o in shapes]
    fitted = predict_gemm(curve, samples, device, "bf16", harness=False)
    m, n, k, o = (np.array(x, dtype=float) for x in zip(*shapes, strict=True))
    t, compute, memory = gemm_kernel_time(m, n, k, acc, device.peak, o, 1, "bf16")
    np.testing.assert_allclose(t, fitted, rtol=1e-12)
    # the overlap term is in both: full overlap would be faster by (1 - o) min(c, m)
    np.testing.assert_allclose(
        t - np.maximum(compute, memory) - curve.latency_s,
        (1.0 - curve.overlap) * np.minimum(compute, memory),
        rtol=1e-9,
    )


def _synthetic(curve: GemmCurve, device: Device, boost: float, window: float) -> list[GemmSample]:
    """SimuMax-like samples: times from ``curve`` through a host loop at the given clock."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(60):
        m, n, k = (float(2 ** rng.integers(8, 15)) for _ in range(3))
        o = float(rng.choice([2.0, 8.0]))
        s = GemmSample(m, n, k, 1.0, out_bytes=o, host_loop=(WARMUP, TIMED))
        kernel = predict_gemm(curve, [s], device, "bf16", harness=False)
        t = float(host_loop_time(kernel, boost, window, WARMUP, TIMED)[0])
        out.append(GemmSample(m, n, k, t, out_bytes=o, host_loop=(WARMUP, TIMED)))
    return out


def test_the_fit_finds_the_clock_and_the_overlap_of_a_host_timed_table() -> None:
    """Samples made from a known curve through a 25 + 75 call loop with a 1.3x boost for
    25 ms: the staged fit finds a boost and a window near those and an overlap near the
    curve's, and is several times closer to the measured times than a fit without the loop
    (within the resolution of the main fit's grid, :func:`kernels._fit_terms`, whose coarse
    ``eta`` and latency the boost partly absorbs)."""
    acc = accelerator_from("b200")
    device = _device(acc, "bf16", 0.8)
    truth = GemmCurve(
        peak_fraction=0.5,
        tile_m=256,
        tile_n=128,
        tiles=GEMM_TILE_SET,
        k_fill=100.0,
        latency_s=5e-6,
        overlap=0.5,
    )
    samples = _synthetic(truth, device, 1.3, 0.025)
    fitted = fit_gemm_curve(
        samples, device, "bf16", tiles=GEMM_TILE_SET, fixed_intensity=0.0, staged_overlap=True
    )
    print(fitted)
    assert 1.1 < fitted.clock_boost < 1.4
    assert 0.025 / 1.5 < fitted.boost_window_s < 0.025 * 1.5
    assert fitted.overlap == pytest.approx(0.5, abs=0.15)
    measured = np.array([s.time_s for s in samples])
    errors = predict_gemm(fitted, samples, device, "bf16") / measured - 1
    plain = fit_gemm_curve(
        [GemmSample(s.m, s.n, s.k, s.time_s, out_bytes=s.out_bytes) for s in samples],
        device,
        "bf16",
        tiles=GEMM_TILE_SET,
        fixed_intensity=0.0,
    )
    plain_errors = predict_gemm(plain, samples, device, "bf16") / measured - 1
    print(np.mean(np.abs(errors)), np.mean(np.abs(plain_errors)))
    assert 3.0 * np.mean(np.abs(errors)) < np.mean(np.abs(plain_errors))


def test_the_peak_fraction_of_one_point_is_matched_with_an_overlap_term() -> None:
    """``_fit_eta`` searches ``eta``: the unhidden output traffic does not scale with
    ``1 / eta``, so a ratio of times would miss the point."""
    acc = accelerator_from("b200")
    device = _device(acc, "bf16", 0.8)
    base = GemmCurve(peak_fraction=1.0, tiles=GEMM_TILE_SET, tile_m=256, tile_n=128,
                     latency_s=5e-6, overlap=0.3)  # fmt: skip
    probe = GemmSample(8192, 8192, 1024, 1.0, out_bytes=8.0)
    truth = base.model_copy(update={"peak_fraction": 0.6})
    t = float(predict_gemm(truth, [probe], device, "bf16")[0])
    sample = GemmSample(8192, 8192, 1024, t, out_bytes=8.0)
    assert _fit_eta([sample], base, device, "bf16") == pytest.approx(0.6, abs=0.001)


def test_a_seven_point_grid_narrows_only_with_a_shorter_reach() -> None:
    """``_refine`` keeps ``reach`` steps either side of the best point: with 7 points and
    the default 3 the range stays whole (the best of a fixed grid, 0.5 of 0, 1/6 ... 1 for
    an optimum at 0.52), with 2 it narrows onto the optimum."""
    from deepflow.hardware.kernels import _refine

    def objective(x):
        return np.abs(x[..., 0] - 0.52)

    fixed, _ = _refine(objective, [(0.0, 1.0)], [False], rounds=10, points=7)
    narrowed, _ = _refine(objective, [(0.0, 1.0)], [False], rounds=10, points=7, reach=2.0)
    assert float(fixed[0]) == pytest.approx(0.5)
    assert float(narrowed[0]) == pytest.approx(0.52, abs=0.005)


def test_simumax_fast_mode_is_short_loops_only() -> None:
    """The numbers docs/hardware.md quotes ("Clock of a host-timed table") from SimuMax's
    B200 GEMM efficiencies: no 100-call loop over 82 ms reaches 0.58 of peak, loops over
    100 ms run at 0.38-0.55; one shape and layout timed twice keeps its mode, one shape in
    two layouts does not."""
    recs = [
        r for r in published_records()["b200"] if r["kind"] == "gemm" and r["source"] == "simumax"
    ]
    peak = 2250e12  # the CSV's peak_tflops_assumed, SimuMax's B200 dense bf16 peak

    def eff(r) -> float:
        return 2.0 * r["m"] * r["n"] * r["k"] / r["time_s"] / peak

    loop = {id(r): 100.0 * r["time_s"] for r in recs}
    assert max(loop[id(r)] for r in recs if eff(r) >= 0.58) < 0.082
    long = [eff(r) for r in recs if loop[id(r)] > 0.1]
    assert min(long) > 0.375 and max(long) < 0.555

    def of(m, n, k, family):
        return sorted(round(eff(r), 2) for r in recs
                      if (r["m"], r["n"], r["k"], r["family"]) == (m, n, k, family))  # fmt: skip

    assert of(10240, 8192, 4096, "wgrad (NT)") == [0.6, 0.64]
    assert of(4096, 4096, 3584, "fwd (TN)") == [0.39]
    assert of(4096, 4096, 3584, "dgrad (NN)") == [0.64]


def test_only_a_table_with_two_output_widths_fits_the_dense_overlap() -> None:
    """SimuMax's B200 table times each weight gradient into an fp32 and a bf16 main
    gradient and fits its dense overlap; the measured H200 file has no such pair and keeps
    1; the GB200's 9 Azure shapes take the B200's (same architecture), the A100's 8 keep 1."""
    from deepflow.hardware.calibration import (
        _output_widths,
        _overlap_terms,
        measured_calibration,
    )
    from deepflow.hardware.kernels import shipped_table

    b200 = [r for r in published_records()["b200"] if r["kind"] == "gemm"]
    h200 = [r for r in measured_calibration("h200-sxm-141gb")["measurements"]
            if r["kind"] == "gemm"]  # fmt: skip
    assert _output_widths(b200) and not _output_widths(h200)
    assert _overlap_terms(b200, accelerator_from("b200")) == (1.0, True)
    assert _overlap_terms(h200, accelerator_from("h200-sxm-141gb")) == (1.0, False)
    b200_o = shipped_table("b200").gemm["bf16"].overlap
    assert shipped_table("gb200").gemm["fp8"].overlap == b200_o < 1.0
    assert shipped_table("h200-sxm-141gb").gemm["bf16"].overlap == 1.0
    assert shipped_table("a100-sxm4-80gb").gemm["fp16"].overlap == 1.0


def test_a_training_step_outlasts_the_boost_window() -> None:
    """docs/hardware.md: the curve predicts the sustained clock because a step keeps the
    GPU busy far longer than the fitted window (SimuMax's 44 B200 steps: 0.26-11.3 s)."""
    import csv
    from importlib import resources

    from deepflow.hardware.kernels import shipped_table

    node = resources.files("deepflow.validation") / "data" / "simumax_b200"
    text = (node / "b200_megatron_runs.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    steps = [float(r["iter_time_s"]) for r in rows if r.get("iter_time_s")]
    assert len(steps) == 44
    assert min(steps) == pytest.approx(0.26, abs=0.005)
    assert max(steps) == pytest.approx(11.3, abs=0.05)
    assert min(steps) > 10 * shipped_table("b200").gemm["bf16"].boost_window_s
