"""The dense GEMM curve's candidate tile set: the fastest candidate runs, each candidate at
the efficiency its operand intensity gives (kernels.py: gemm_terms, tile_efficiency)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.hardware.calibration import (
    KERNEL_TIMED,
    WAVE_LOSS_FIT_MIN,
    _fixed_terms,
    architecture_intensity,
    fit_kernel_params,
    published_records,
)
from deepflow.hardware.kernels import (
    GEMM_TILE_SET,
    gemm_kernel_time,
    gemm_terms,
    shipped_table,
    tile_efficiency,
)
from deepflow.specs import accelerator_from
from deepflow.specs.accelerator import Precision
from deepflow.specs.kernels import PRECISION_NAMES

SET_M = np.array([float(a) for a, _ in GEMM_TILE_SET])
SET_N = np.array([float(b) for _, b in GEMM_TILE_SET])

dims = st.integers(min_value=1, max_value=1 << 16)
curve_terms = {
    "eta": st.floats(0.2, 1.0),
    "wave_loss": st.floats(0.0, 1.0),
    "k_fill": st.floats(0.0, 1024.0),
    "h": st.floats(0.0, 512.0),
}


def _terms(m, n, k, tm, tn, eta, wave_loss, k_fill, h, units=132.0):
    return gemm_terms(m, n, k, 1.0, 1e15, 3e12, units, eta, tm, tn, wave_loss, k_fill, 0.0,
                      2.0, 2.0, 0, h)  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(m=dims, n=dims, k=dims, **curve_terms)
def test_the_set_runs_its_fastest_candidate(m, n, k, eta, wave_loss, k_fill, h) -> None:
    """The time of the set is the least of its candidates', each run as a one-tile curve
    at ``eta`` times its tile efficiency (a heuristic that picks the fastest kernel)."""
    _, compute, _ = _terms(m, n, k, SET_M, SET_N, eta, wave_loss, k_fill, h)
    eff = tile_efficiency(SET_M, SET_N, h)
    alone = [
        float(_terms(m, n, k, tm, tn, eta * e, wave_loss, k_fill, 0.0)[1])
        for tm, tn, e in zip(SET_M, SET_N, eff, strict=True)
    ]
    assert float(compute) == pytest.approx(min(alone), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(h=st.floats(0.0, 1e4), scale=st.sampled_from([1, 2, 4]))
def test_tile_efficiency_is_one_at_the_reference_and_falls_with_intensity(h, scale) -> None:
    """``a / (a + h)`` relative to the best tile: 1 at the tile of highest intensity, below
    1 for the others when ``h`` > 0, 1 everywhere at ``h`` = 0; larger tiles of the same
    shape (more multiply-adds per loaded element) are never less efficient."""
    eff = tile_efficiency(SET_M * scale, SET_N * scale, h)
    a = SET_M * SET_N / (SET_M + SET_N)
    assert np.all(eff <= 1.0 + 1e-12)
    assert eff[np.argmax(a)] == pytest.approx(1.0)
    if h == 0.0:
        assert np.allclose(eff, 1.0)
    order = np.argsort(a)
    assert np.all(np.diff(eff[order]) >= -1e-12)


def test_a_small_tile_wins_a_skinny_gemm_and_the_reference_a_large_one() -> None:
    """n = 64 on a 256x128 tile wastes half the tile; a 128x64 or 64x64 candidate does not,
    so the set is faster than the reference tile alone; at 8192 cubed every tile divides
    the shape and the reference tile (highest intensity) is the fastest."""
    args = (1.0, 0.5, 0.0, 32.0)  # eta, wave loss, k_fill, h
    skinny_set = float(_terms(8192, 64, 4096, SET_M, SET_N, *args)[1])
    skinny_ref = float(_terms(8192, 64, 4096, 256.0, 128.0, *args)[1])
    assert skinny_set < 0.8 * skinny_ref
    large_set = float(_terms(8192, 8192, 8192, SET_M, SET_N, *args)[1])
    large_ref = float(_terms(8192, 8192, 8192, 256.0, 128.0, *args)[1])
    assert large_set == pytest.approx(large_ref)


def test_one_candidate_is_the_one_tile_curve() -> None:
    """A one-tile curve (grouped GEMMs, accelerators without a table) is unchanged: a
    candidate axis of length one, or scalars, give the tile and wave quantization of the
    one tile (NVIDIA, Matrix Multiplication Background User's Guide)."""
    m, n, k = 1000.0, 3000.0, 512.0
    t_scalar = _terms(m, n, k, 128.0, 128.0, 0.7, 1.0, 100.0, 64.0)
    t_axis = _terms(m, n, k, np.array([128.0]), np.array([128.0]), 0.7, 1.0, 100.0, 64.0)
    tiles = np.ceil(m / 128) * np.ceil(n / 128)
    q_tile = m * n / (tiles * 128 * 128)
    q_wave = tiles / (np.ceil(tiles / 132) * 132)
    expected = 2 * m * n * k / (1e15 * 0.7 * q_tile * q_wave * k / (k + 100.0))
    assert float(t_scalar[1]) == pytest.approx(expected, rel=1e-12)
    assert float(t_axis[1]) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    shapes=st.lists(st.tuples(dims, dims, dims, st.integers(1, 8)), min_size=1, max_size=6),
    preset=st.sampled_from(["a100-sxm4-80gb", "h100-sxm5-80gb", "b200", "mi300x"]),
)
def test_a_batch_is_its_rows(shapes, preset) -> None:
    """The vectorized evaluation (precision codes and dense/grouped mixed in one array, the
    candidate axis last) gives each row what a call for that row alone gives."""
    acc = accelerator_from(preset)
    m, n, k, g = (np.array(c, dtype=float) for c in zip(*shapes, strict=True))
    codes = np.array([i % 2 * 2 for i in range(len(shapes))])  # fp32 / fp16 alternating
    assert PRECISION_NAMES[0] == "fp32" and PRECISION_NAMES[2] == "fp16"
    peak = np.array([acc.peak(Precision(PRECISION_NAMES[c])) for c in codes])
    batch = gemm_kernel_time(m, n, k, acc, peak, 2.0, g, codes)[0]
    for i in range(len(shapes)):
        one = gemm_kernel_time(m[i], n[i], k[i], acc, peak[i], 2.0, g[i], int(codes[i]))[0]
        assert float(batch[i]) == pytest.approx(float(one), rel=1e-12)


def test_dense_tables_hold_the_tile_set_and_grouped_tables_one_tile() -> None:
    for name in ("a100-sxm4-80gb", "h100-sxm5-80gb", "b200", "gb200", "h800-sxm5-80gb", "mi300x"):
        table = shipped_table(name)
        for curve in table.gemm.values():
            assert curve.tiles == GEMM_TILE_SET
            assert (curve.tile_m, curve.tile_n) == (256, 128)  # highest intensity of the set
        for curve in table.grouped_gemm.values():
            assert curve.tiles == ()


def test_small_tables_take_the_architectures_operand_intensity() -> None:
    """Dense tables of fewer than WAVE_LOSS_FIT_MIN shapes hold ``h``: Hopper and Blackwell
    chips at their architecture's richest table's, the A100 and MI300X (no richer table)
    at 0; DeepGEMM's kernel-timed H800 table fits its own (another library's kernels)."""
    records = published_records()
    hopper = architecture_intensity(accelerator_from("h100-sxm5-80gb"))
    blackwell = architecture_intensity(accelerator_from("gb200"))
    assert hopper == architecture_intensity(accelerator_from("h200-sxm-141gb"))
    assert blackwell == shipped_table("b200").gemm["bf16"].operand_intensity
    assert architecture_intensity(accelerator_from("a100-sxm4-80gb")) is None
    for name, dtype, expected in (
        ("h100-sxm5-80gb", "fp8", hopper),
        ("gb200", "fp8", blackwell),
        ("a100-sxm4-80gb", "fp16", 0.0),
        ("mi300x", "fp8", 0.0),
    ):
        shapes = {(r["m"], r["n"], r["k"]) for r in records[name] if r["kind"] == "gemm"}
        assert len(shapes) < WAVE_LOSS_FIT_MIN
        fitted = fit_kernel_params(records[name], accelerator_from(name))
        assert fitted.gemm[dtype].operand_intensity == expected, name
        assert shipped_table(name).gemm[dtype].operand_intensity == expected, name
    h800 = [r for r in records["h800-sxm5-80gb"] if r["kind"] == "gemm"]
    assert {r["source"] for r in h800} <= set(KERNEL_TIMED)
    assert len({(r["m"], r["n"], r["k"]) for r in h800}) < WAVE_LOSS_FIT_MIN
    # DeepGEMM's own value is fitted (None: not held), the wave loss still the Hopper one
    _, wave, h = _fixed_terms(h800, accelerator_from("h800-sxm5-80gb"), None)
    assert h is None
    assert wave is not None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(dims, dims, dims, st.integers(1, 64)), min_size=1, max_size=8),
    st.floats(0.0, 1.0),
    st.floats(0.0, 512.0),
    st.booleans(),
)
def test_few_shapes_broadcast_the_candidates_to_the_same_bits(
    shapes, wave_loss, h, per_shape_tiles
) -> None:
    """A few shapes (one strategy's GEMMs) take the candidate tiles along a broadcast axis
    (``BROADCAST_CANDIDATES_MAX``); the one-candidate-at-a-time loop of larger batches gives
    the same times, compute and memory terms, bit for bit."""
    import deepflow.hardware.kernels as kernels

    m, n, k, g = (np.array([s[i] for s in shapes], dtype=np.float64) for i in range(4))
    tm = np.broadcast_to(SET_M, (len(shapes), len(SET_M))) if per_shape_tiles else SET_M
    tn = np.broadcast_to(SET_N, (len(shapes), len(SET_N))) if per_shape_tiles else SET_N
    args = dict(
        m=m, n=n, k=k, groups=g, peak=1e15, bandwidth=3e12, units=132.0, eta=0.8,
        tile_m=tm, tile_n=tn, wave_loss=wave_loss, k_fill=64.0, latency=5e-6,
        in_bytes=2.0, out_bytes=2.0, intensity=h, overlap=0.6,
    )  # fmt: skip
    broadcast = gemm_terms(**args)
    saved = kernels.BROADCAST_CANDIDATES_MAX
    kernels.BROADCAST_CANDIDATES_MAX = 0
    try:
        looped = gemm_terms(**args)
    finally:
        kernels.BROADCAST_CANDIDATES_MAX = saved
    for a, b in zip(broadcast, looped, strict=True):
        assert a.shape == b.shape
        assert a.tobytes() == b.tobytes()
