"""The calibrated kernel model: fit errors with bounds that fail, invariants, tables."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.hardware.calibration import (
    WAVE_LOSS_FIT_MIN,
    architecture_wave_loss,
    cross_validate,
    curve_errors,
    fit_kernel_params,
    measured_calibration,
    published_records,
)
from deepflow.hardware.kernels import (
    attention_time,
    gemm_kernel_time,
    kernel_params,
    shipped_table,
    table_names,
)
from deepflow.hardware.roofline import gemm_time, memory_time
from deepflow.specs import accelerator_from
from deepflow.specs.accelerator import Precision

RECORDS = published_records()
_CV: dict[str, list] = {}

# Cross-validated targets (issue 12): GEMM 10 % per precision, attention 15 %, memory 5 %,
# no shape family worse than 25 %.
BOUNDS = {
    "gemm": 0.10,
    "grouped_gemm": 0.10,
    "attention": 0.15,
    "memory": 0.05,
    # no issue target: held to the family bound
    "memory.latency": 0.25,
    "elementwise": 0.25,
}
FAMILY_BOUND = 0.25
# Curves that do not meet the target yet: (accelerator, curve key) -> why.
KNOWN_GAPS = {
    # the measured H200 file (deepflow calibrate), also the H100's compute curves
    # host-timed eager ops whose host time scatters within one operator
    # (bench/elementwise_residuals.py); needs re-measuring with the fixed calibrate timer
    ("h200-sxm-141gb", "elementwise"): "23 %, rmsnorm 70 %: host-bound eager ops (noisy floor)",
}
# Met since dense GEMM curves choose among a tile set (kernels.py, GEMM_TILE_SET), held by
# the bounds above: a100 gemm.fp16 (was 12.0 %), h800 gemm.fp8 (10.8 %), mi300x gemm.fp8
# (12.8 %, skinny 37 %), h100/h200 gemm.fp32 (small family 27 %); since grouped curves add
# their unhidden output traffic and memory curves are per operation: b200 and h100/h200
# grouped_gemm.bf16 (were 14.7 %, 15 %), h200 memory (5.8 %); since the reduction has its
# own grid model (hardware/reduction.py): h200 memory.latency (was 14.6 %, read family 35 %);
# since tf32 curves have an operand-layout term (kernels.py, LAYOUT_PRECISIONS): h100/h200
# gemm.tf32 (were 15.2 %); since host-timed GEMMs are fitted with the loop's clock boost
# (hardware/clock_boost.py), accumulating GEMMs read their output and dense curves fit their
# overlap: b200 gemm.bf16 (was 11.4 %), gb200 gemm.fp8 (10.1 %).
MEASURED = {"h200-sxm-141gb": "h200-sxm-141gb", "h100-sxm5-80gb": "h200-sxm-141gb"}
"""Chips whose shipped table takes curves from a measured calibration file
(scripts/fit_kernels.py, MEASURED)."""


def _cv(name: str) -> list:
    if name not in _CV:
        _CV[name] = cross_validate(RECORDS[name], accelerator_from(name))
    return _CV[name]


def _cv_measured(name: str) -> list:
    key = f"measured:{name}"
    if key not in _CV:
        recs = measured_calibration(MEASURED[name])["measurements"]
        _CV[key] = cross_validate(recs, accelerator_from(name))
    return _CV[key]


def _key(e) -> str:
    return f"{e.curve}.{e.dtype}" if e.dtype else e.curve


def _cases() -> list:
    out = []
    for name in sorted(RECORDS):
        table = shipped_table(name)
        for key in table.fit_error:
            out.append((name, key))
    return out


@pytest.mark.parametrize(("name", "key"), _cases())
def test_cross_validated_fit_error(name: str, key: str, request: pytest.FixtureRequest) -> None:
    """Leave-one-shape-out error of each fitted curve (10 folds of shapes above 40 shapes),
    recomputed from the shipped tables with the fit the tables were made with."""
    shipped = shipped_table(name).fit_error[key]
    # the shipped table records the errors of the curve it holds: of the published fit, or
    # of the measured file's fit where the table takes that curve from it
    candidates = [e for e in _cv(name) if _key(e) == key]
    if name in MEASURED:
        candidates += [e for e in _cv_measured(name) if _key(e) == key]
    e = next(
        (c for c in candidates if c.samples == shipped["samples"]),
        candidates[0] if candidates else None,
    )
    assert e is not None, key
    print(
        f"{name:16s} {key:20s} n={e.samples:4d} mean {e.mean_abs:6.1%} worst family "
        f"{e.worst_family:6.1%} {e.families}"
    )
    assert shipped["loso_mean_abs"] == pytest.approx(e.mean_abs, abs=1e-4)
    gap = KNOWN_GAPS.get((name, key))
    ok = e.mean_abs <= BOUNDS[e.curve] and e.worst_family <= FAMILY_BOUND
    assert not (gap and ok), f"{name} {key} meets its bound: remove it from KNOWN_GAPS"
    if gap:
        request.applymarker(pytest.mark.xfail(strict=True, reason=gap))
    assert e.mean_abs <= BOUNDS[e.curve]
    assert e.worst_family <= FAMILY_BOUND


def test_measured_h200_curves_meet_the_issue_targets() -> None:
    """The measured H200 file (deepflow calibrate on one H200), cross-validated with the
    fit it ships with: GEMM bf16/fp16, fp8 and tf32 and the fp16 grouped host loop within
    10 %, attention within 15 %, no family of those above 25 %."""
    errors = {_key(e): e for e in _cv_measured("h200-sxm-141gb")}
    for key, bound in (
        ("gemm.fp16", 0.10),  # fp16 and bf16 pooled (one tensor-core rate)
        ("gemm.fp8", 0.10),
        ("gemm.tf32", 0.10),  # with the operand-layout term (was 15.2 %)
        # the fallback's host loop of dense fp16 GEMMs (was 27.9 % as a grouped kernel)
        ("grouped_gemm.fp16", 0.10),
        ("attention.bf16", 0.15),
        ("attention.fp16", 0.15),
    ):
        e = errors[key]
        print(f"{key:16s} n={e.samples:4d} {e.mean_abs:6.1%} worst {e.worst_family:6.1%}")
        assert e.mean_abs <= bound, key
        assert e.worst_family <= FAMILY_BOUND, key
    # the bandwidth within 5 % (each of copy, read and write by its own curve), and the
    # grouped bf16 and fp32 GEMMs (torch._grouped_mm's CUTLASS kernel and its fallback) within
    # 10 %
    assert errors["memory"].mean_abs <= 0.05
    for key in ("grouped_gemm.bf16", "grouped_gemm.fp32"):
        assert errors[key].mean_abs <= 0.10, key


def test_shipped_hopper_tables_agree_with_the_measured_h200() -> None:
    """The shipped H200 and H100 compute curves, checked (not refitted) against the
    measured H200 kernels: after taking the measured curves where the published fit
    disagreed, bf16 and fp8 GEMMs within 10 %, attention within 15 %."""
    recs = measured_calibration("h200-sxm-141gb")["measurements"]
    acc = accelerator_from("h200-sxm-141gb")
    for name in ("h200-sxm-141gb", "h100-sxm5-80gb"):
        errors = {_key(e): e for e in curve_errors(recs, acc, shipped_table(name))}
        for key, bound in (
            ("gemm.bf16", 0.10),
            ("gemm.fp8", 0.10),
            ("attention.bf16", 0.15),
        ):
            assert errors[key].mean_abs <= bound, (name, key, errors[key].mean_abs)


@pytest.mark.parametrize("name", ["a100-sxm4-80gb", "h800-sxm5-80gb"])
def test_shipped_tables_are_the_fit(name: str) -> None:
    """The shipped GEMM curves are what the one fit function gives on the shipped sources."""
    fitted = fit_kernel_params(RECORDS[name], accelerator_from(name))
    shipped = shipped_table(name)
    for dtype, curve in fitted.gemm.items():
        assert shipped.gemm[dtype] == curve


def test_small_dense_tables_share_their_architectures_wave_loss() -> None:
    """Dense GEMM tables of fewer than WAVE_LOSS_FIT_MIN shapes do not fit the wave loss:
    Hopper chips take the measured H200's, Blackwell chips the B200's; the reference tables
    fit their own; grouped GEMMs and chips without a richer table of their architecture fit
    theirs."""
    hopper = architecture_wave_loss(accelerator_from("h800-sxm5-80gb"))
    blackwell = architecture_wave_loss(accelerator_from("gb200"))
    assert hopper == architecture_wave_loss(accelerator_from("h100-sxm5-80gb"))
    assert hopper == measured_fit_wave_loss()
    assert blackwell == shipped_table("b200").gemm["bf16"].wave_loss
    assert architecture_wave_loss(accelerator_from("a100-sxm4-80gb")) is None
    assert architecture_wave_loss(accelerator_from("mi300x")) is None
    for name, dtype in (("h800-sxm5-80gb", "fp8"), ("gb200", "fp8"), ("h100-sxm5-80gb", "fp8")):
        shapes = {(r["m"], r["n"], r["k"]) for r in RECORDS[name] if r["kind"] == "gemm"}
        assert len(shapes) < WAVE_LOSS_FIT_MIN
        expected = blackwell if name == "gb200" else hopper
        fitted = fit_kernel_params(RECORDS[name], accelerator_from(name))
        assert fitted.gemm[dtype].wave_loss == expected, name
        assert shipped_table(name).gemm[dtype].wave_loss == expected, name
        assert f"wave loss {expected:g}" in shipped_table(name).source
    # grouped GEMMs keep their own fit (DeepGEMM's 10 grouped shapes on the H800)
    grouped = fit_kernel_params(RECORDS["h800-sxm5-80gb"], accelerator_from("h800-sxm5-80gb"))
    assert grouped.grouped_gemm["fp8"] == shipped_table("h800-sxm5-80gb").grouped_gemm["fp8"]


def measured_fit_wave_loss() -> float:
    recs = measured_calibration("h200-sxm-141gb")["measurements"]
    return fit_kernel_params(recs, accelerator_from("h200-sxm-141gb")).gemm["bf16"].wave_loss


@pytest.mark.parametrize(
    ("name", "rich", "sparse"),
    [("b200", "bf16", "fp8"), ("gb200", "fp8", "bf16"), ("h100-sxm5-80gb", "fp8", "bf16")],
)
def test_a_best_shape_row_sets_the_precision_ratio_not_the_level(name, rich, sparse) -> None:
    """A precision measured only by MAMF's best shape takes its peak fraction relative to the
    chip's shape table: MAMF measures both precisions on the chip, and the fitted curves
    reproduce MAMF's ratio of the two best-shape rates (within 1 %), whatever the absolute
    level of the shape table (the B200's SimuMax bf16 GEMMs run 0.48 of peak at MAMF's best
    bf16 shape, where MAMF measured 0.78; taking MAMF's fp8 point alone onto those shape
    terms gave an fp8 fraction of 0.90 against bf16's 0.525)."""
    from deepflow.hardware.calibration import _device, _mamf_records, published_references
    from deepflow.hardware.kernels import GemmSample, predict_gemm

    acc = accelerator_from(name)
    fitted = fit_kernel_params(RECORDS[name], acc, references=published_references().get(name, ()))
    rows = {r["dtype"]: r for preset, r in _mamf_records() if preset == name}
    assert set(rows) >= {"bf16", "fp8"}

    def rate(dtype: str) -> tuple[float, float]:
        """(model, MAMF) FLOP/s of MAMF's best shape of ``dtype``."""
        r = rows[dtype]
        sample = GemmSample(r["m"], r["n"], r["k"], 1.0)
        t = float(predict_gemm(fitted.gemm[dtype], [sample], _device(acc, dtype, 1.0), dtype)[0])
        flops = 2.0 * r["m"] * r["n"] * r["k"]
        return flops / t, flops / r["time_s"]

    model_s, meas_s = rate(sparse)
    model_r, meas_r = rate(rich)
    assert model_s / model_r == pytest.approx(meas_s / meas_r, rel=0.01)
    if name == "b200":
        assert fitted.gemm["fp8"].peak_fraction < 0.7  # not 0.90
        assert shipped_table("b200").gemm["fp8"] == fitted.gemm["fp8"]


def test_a_given_wave_loss_is_held_by_the_fit() -> None:
    """fit_gemm_curve holds a fixed wave loss (a fit that ignored it would move it)."""
    acc = accelerator_from("mi300x")
    for w in (0.0, 0.5, 1.0):
        fitted = fit_kernel_params(RECORDS["mi300x"], acc, wave_loss=w)
        assert fitted.gemm["fp8"].wave_loss == w
    assert fit_kernel_params(RECORDS["mi300x"], acc).gemm["fp8"].wave_loss not in (0.0, 0.5, 1.0)


def test_every_preset_table_exists() -> None:
    names = set(table_names())
    for preset in (
        "a100-sxm4-40gb",
        "a100-sxm4-80gb",
        "h100-sxm5-80gb",
        "h200-sxm-141gb",
        "h800-sxm5-80gb",
        "b200",
        "gb200",
        "mi300x",
    ):
        acc = accelerator_from(preset)
        assert acc.kernel_table in names
        params = kernel_params(acc)
        assert set(params.gemm) == {p.value for p in Precision}


def test_fp8_is_below_the_old_flat_fraction_on_hopper() -> None:
    """Azure's H100 FP8 GEMMs reach 61-70 % of 1,979 TFLOP/s at 4096-32768 cubed: the
    model must not assume 80 %."""
    acc = accelerator_from("h100-sxm5-80gb")
    peak = acc.peak(Precision.FP8)
    for n in (4096, 8192, 16384):
        t, _, _ = gemm_kernel_time(n, n, n, acc, peak, 2.0, 1, Precision.FP8)
        eff = 2.0 * n**3 / float(t) / peak
        assert 0.58 <= eff <= 0.72


dims = st.integers(min_value=1, max_value=1 << 16)


@settings(max_examples=60, deadline=None)
@given(
    m=dims,
    n=dims,
    k=dims,
    g=st.integers(1, 64),
    preset=st.sampled_from(["a100-sxm4-80gb", "h100-sxm5-80gb", "b200", "mi300x", "tpu-v4"]),
    dtype=st.sampled_from(["bf16", "fp8", "fp32"]),
)
def test_gemm_never_beats_the_roofline(m, n, k, g, preset, dtype) -> None:
    acc = accelerator_from(preset)
    precision = Precision(dtype)
    peak = acc.peak(precision)
    if peak <= 0:
        return
    t = float(gemm_time(m, n, k, acc, peak, 2.0, g, precision))
    assert t >= 2.0 * m * n * k * g / peak
    assert t >= (m * k + k * n) * g / acc.memory_bandwidth * 0.5


@settings(max_examples=60, deadline=None)
@given(
    m=dims,
    n=dims,
    k=dims,
    extra=st.integers(1, 4096),
    preset=st.sampled_from(["a100-sxm4-80gb", "h200-sxm-141gb", "b200", "gb200"]),
)
def test_gemm_time_grows_with_each_dimension(m, n, k, extra, preset) -> None:
    acc = accelerator_from(preset)
    peak = acc.peak(Precision.BF16)
    t = float(gemm_time(m, n, k, acc, peak))
    assert float(gemm_time(m + extra, n, k, acc, peak)) >= t * (1 - 1e-12)
    assert float(gemm_time(m, n + extra, k, acc, peak)) >= t * (1 - 1e-12)
    assert float(gemm_time(m, n, k + extra, acc, peak)) >= t * (1 - 1e-12)


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 8),
    h=st.integers(1, 128),
    s=st.integers(16, 1 << 15),
    d=st.sampled_from([64, 128, 192]),
)
def test_attention_causal_is_cheaper_and_backward_costs_more(b, h, s, d) -> None:
    acc = accelerator_from("b200")
    peak = acc.peak(Precision.BF16)
    f_full, b_full, _ = attention_time(b, h, s, s, d, d, False, acc, peak, Precision.BF16)
    f_causal, b_causal, _ = attention_time(b, h, s, s, d, d, True, acc, peak, Precision.BF16)
    assert float(f_causal) <= float(f_full)
    assert float(b_full) > float(f_full)
    assert float(b_causal) <= float(b_full)


def test_memory_time_is_bandwidth_bound() -> None:
    acc = accelerator_from("h100-sxm5-80gb")
    t = float(memory_time(4e9, acc))
    assert 4e9 / acc.memory_bandwidth < t < 4e9 / (0.8 * acc.memory_bandwidth)
    assert float(memory_time(0.0, acc)) == 0.0


def test_tables_are_valid_yaml_with_sources() -> None:
    for name in table_names():
        table = shipped_table(name)
        assert "scripts/fit_kernels.py" in table.source
        assert np.isfinite(table.gemm[next(iter(table.gemm))].peak_fraction)
        # the generated file says so
        from importlib import resources

        text = (
            resources.files("deepflow.hardware") / "data" / "kernels" / f"{name}.yaml"
        ).read_text()
        assert text.startswith("# Generated by scripts/fit_kernels.py")
        assert yaml.safe_load(text)["schema"] == "deepflow.calibration/1"


def test_kernel_timed_sources_fit_their_own_latency() -> None:
    """DeepGEMM times kernels on the device (bench_kineto): its 18 dense fp8 shapes, fewer
    than LATENCY_FIT_MIN, still fit the GEMM latency instead of taking the launch overhead;
    host-timed tables of as few shapes (the Azure A100 table) keep the launch overhead."""
    from deepflow.hardware.calibration import KERNEL_TIMED, LATENCY_FIT_MIN

    assert "deepgemm" in KERNEL_TIMED
    h800 = accelerator_from("h800-sxm5-80gb")
    shapes = {(r["m"], r["n"], r["k"]) for r in RECORDS["h800-sxm5-80gb"] if r["kind"] == "gemm"}
    assert len(shapes) < LATENCY_FIT_MIN
    fitted = fit_kernel_params(RECORDS["h800-sxm5-80gb"], h800)
    assert fitted.gemm["fp8"].latency_s != h800.efficiency.kernel_overhead
    assert fitted.gemm["fp8"].latency_s < h800.efficiency.kernel_overhead
    a100 = accelerator_from("a100-sxm4-80gb")
    assert fit_kernel_params(RECORDS["a100-sxm4-80gb"], a100).gemm["fp16"].latency_s == (
        a100.efficiency.kernel_overhead
    )


def test_grouped_gemm_launch_is_chosen_by_the_fit() -> None:
    """Transformer Engine's grouped GEMM (SimuMax's B200 table) issues one cuBLAS GEMM per
    group over four streams; DeepGEMM's (the H800 table) is one persistent kernel: the fit
    tells them apart, and the per-group launch pays its latency once per round of groups."""
    from deepflow.hardware.kernels import TE_GROUPED_STREAMS, gemm_terms

    assert shipped_table("b200").grouped_gemm["bf16"].group_streams == TE_GROUPED_STREAMS
    assert shipped_table("h800-sxm5-80gb").grouped_gemm["fp8"].group_streams == 0

    def t(groups: float, streams: int, latency: float) -> float:
        args = (1e15, 8e12, 148.0, 0.5, 128.0, 128.0, 1.0, 0.0, latency, 2.0, 2.0)
        return float(gemm_terms(256.0, 4096.0, 4096.0, groups, *args, streams)[0])

    # 16 groups over 4 streams: 4 rounds of latency; one kernel: one latency
    assert t(16, 4, 10e-6) - t(16, 4, 0.0) == pytest.approx(40e-6)
    assert t(16, 0, 10e-6) - t(16, 0, 0.0) == pytest.approx(10e-6)
    # 4 groups of 2 x 32 = 64 tiles run together: 256 tiles on 148 units, two waves of which
    # the second is 108/148 full; one kernel of 16 groups: 1024 tiles, 7 waves, 1024/1036
    assert t(16, 4, 0.0) / t(16, 0, 0.0) == pytest.approx((1024 / 1036) / (256 / 296))
    # one group is one kernel either way
    assert t(1, 4, 10e-6) == pytest.approx(t(1, 0, 10e-6))


def test_simumax_grouped_backward_shapes() -> None:
    """SimuMax lists each grouped GEMM by its forward shape; the records carry the GEMM each
    stage runs: dgrad contracts N, wgrad contracts the group's tokens and accumulates into
    the main gradient, read and written: 8 bytes per element in fp32, 4 in bf16 (SimuMax
    measures every wgrad shape with both, ``main_grad_dtype`` of its shape key)."""
    grouped = [r for r in RECORDS["b200"] if r["kind"] == "grouped_gemm"]
    fwd = {(r["groups"], r["m"], r["n"], r["k"]) for r in grouped if r["family"].endswith("fwd")}
    wgrad: dict[tuple, list[tuple[float, float]]] = {}
    for r in grouped:
        g = r["groups"]
        if r["family"].endswith("bwd_grad_act"):
            assert (g, r["m"], r["k"], r["n"]) in fwd
        elif r["family"].endswith("bwd_grad_w"):
            assert (g, r["k"], r["m"], r["n"]) in fwd
            wgrad.setdefault((g, r["m"], r["n"], r["k"]), []).append((r["out_bytes"], r["time_s"]))
    both = {shape: runs for shape, runs in wgrad.items() if len({b for b, _ in runs}) == 2}
    assert len(both) >= 10
    for shape, runs in wgrad.items():
        assert {b for b, _ in runs} <= {4.0, 8.0}, shape
    for shape, runs in both.items():
        # the fp32 main gradient is the slower of the two (twice the output traffic)
        assert max(runs)[1] > min(runs)[1], shape


def test_grouped_weight_gradient_output_traffic_is_not_hidden() -> None:
    """The B200 grouped curve fits an overlap well below 1: a wgrad GEMM of 128 tokens per
    expert with an fp32 main gradient takes about the bf16 one's time plus the extra output
    bytes at the memory bandwidth (measured: 11.0 ms against 6.0 ms for 256 experts of
    4096 x 7168). The dense curves hide more of theirs (a dense GEMM's tiles run over
    the whole device, other tiles' main loops covering one tile's epilogue), but not all
    on the B200."""
    b200 = shipped_table("b200")
    assert b200.grouped_gemm["bf16"].overlap < 0.5
    assert b200.grouped_gemm["bf16"].overlap < b200.gemm["bf16"].overlap < 1.0
    acc = accelerator_from("b200")
    args = (4096.0, 7168.0, 128.0, acc, acc.peak(Precision.BF16))
    t32 = float(gemm_kernel_time(*args, out_bytes=8.0, groups=256, dtype="bf16")[0])
    t16 = float(gemm_kernel_time(*args, out_bytes=4.0, groups=256, dtype="bf16")[0])
    assert t32 / t16 == pytest.approx(11.0355 / 6.0407, rel=0.15)


def test_group_launch_follows_the_library_code() -> None:
    """SimuMax (Transformer Engine) launches per group over four streams; PyTorch's
    ``_grouped_mm`` is one kernel only for bf16 on Hopper/Blackwell, a per-group loop
    otherwise; DeepGEMM and torch.bmm are one kernel."""
    from deepflow.hardware.calibration import group_launch

    te = [{"source": "simumax"}]
    torch_mm = [{"impl": "grouped_mm"}]
    assert group_launch(te, "bf16") == 4
    assert group_launch([{"source": "deepgemm"}], "fp8") == 0
    assert group_launch([{"impl": "bmm"}], "fp16") == 0
    assert group_launch(torch_mm, "bf16", accelerator_from("h200-sxm-141gb")) == 0
    assert group_launch(torch_mm, "fp16", accelerator_from("h200-sxm-141gb")) == 1
    assert group_launch(torch_mm, "bf16", accelerator_from("a100-sxm4-80gb")) == 1
