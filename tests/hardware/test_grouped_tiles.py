"""Expected row tiles of a grouped GEMM under uneven per-expert rows
(deepflow.hardware.grouped_tiles) and the grouped GEMM time built on them (issue 14)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.hardware.grouped_tiles import UnevenRows, expected_row_tiles, normal_sf
from deepflow.hardware.roofline import gemm_time
from deepflow.specs import accelerator_from
from deepflow.specs.accelerator import Precision


def _sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _brute(mu: float, sigma: float, t: float) -> float:
    """``sum_{j >= 0} P(X > j t)`` for ``X ~ N(mu, sigma)``, every term summed."""
    top = int((mu + 12.0 * sigma) / t) + 2
    return sum(_sf((j * t - mu) / sigma) for j in range(top + 1))


def test_normal_sf_matches_erfc():
    z = np.linspace(-9.0, 9.0, 181)
    want = np.array([_sf(v) for v in z])
    assert np.max(np.abs(normal_sf(z) - want)) < 2e-7
    assert np.all(np.abs(normal_sf(z) - want) <= 1.2e-7 * want + 1e-12)


def test_hand_worked_tiles():
    # equal groups (no spread): the mean's tiles, a whole tile more one row past a boundary
    assert float(expected_row_tiles(512, 0.0, 128)) == 4.0
    assert float(expected_row_tiles(513, 0.0, 128)) == 5.0
    # 480 rows, sigma 32, 128-row tiles: boundaries 0, 128, 256 certain; 384 at +3 sigma
    # (Phi(3) = 0.998650), 512 at -1 sigma (Phi(-1) = 0.158655), 640 at -5 sigma (3e-7)
    want = 3.0 + 0.998650 + 0.158655
    assert float(expected_row_tiles(480, 32.0, 128)) == pytest.approx(want, abs=2e-6)
    # a balanced expert of 512 rows (EP 8, Qwen3) under forced balance: binomial sampling,
    # sigma = sqrt(512 (1 - 8/128)) = 21.9; the 512 boundary sits at the mean: half a tile
    assert float(expected_row_tiles(512, math.sqrt(480.0), 128)) == pytest.approx(4.5, abs=1e-6)
    # spread over several tiles: the fractional part is uniform, each expert's last tile
    # half full on average: R / t + g / 2 over g experts
    assert float(expected_row_tiles(5000, 1100, 256)) == pytest.approx(5000 / 256 + 0.5, abs=1e-4)


@settings(max_examples=200, deadline=None)
@given(
    mu=st.floats(1.0, 20000.0),
    rel=st.floats(0.001, 0.3),
    tile=st.sampled_from([64.0, 128.0, 256.0]),
)
def test_matches_the_direct_sum(mu, rel, tile):
    # both branches (sigma below and above a quarter tile) against the whole sum
    sigma = max(rel * mu, 0.05)
    assert float(expected_row_tiles(mu, sigma, tile)) == pytest.approx(
        _brute(mu, sigma, tile), abs=2e-6 * (1.0 + mu / tile)
    )


@settings(max_examples=200, deadline=None)
@given(
    mu=st.floats(1.0, 50000.0),
    dmu=st.floats(0.0, 5000.0),
    rel=st.floats(0.0, 0.3),
    tile=st.sampled_from([64.0, 128.0, 256.0]),
)
def test_monotone_in_rows_and_bounded(mu, dmu, rel, tile):
    sigma = rel * mu
    a = float(expected_row_tiles(mu, sigma, tile))
    b = float(expected_row_tiles(mu + dmu, sigma, tile))
    assert b >= a - 1e-9
    # E[X+] / t <= E[ceil(X+ / t)] <= E[X+] / t + 1, with E[X+] = mu Phi(mu/s) + s phi(mu/s)
    if sigma > 0:
        z = mu / sigma
        positive = mu * (1 - _sf(z)) + sigma * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    else:
        positive = mu
    assert positive / tile - 1e-6 <= a <= positive / tile + 1.0 + 1e-6
    if sigma == 0:
        assert a == math.ceil(mu / tile)  # equal groups: the old ceil rule, exactly


def test_grouped_gemm_time_with_and_without_spread():
    acc = accelerator_from("h100-sxm5-80gb")
    peak = acc.peak(Precision.BF16)
    args = (4096.0, 3072.0, acc, peak, 2.0, 16, Precision.BF16)
    equal = float(gemm_time(512.0, *args))
    # a zero spread is the equal-groups curve itself
    assert float(gemm_time(512.0, *args, 1.0, UnevenRows(512.0, 0.0))) == equal
    # uneven rows around an exact tile multiple pad tiles the equal groups do not
    uneven = float(gemm_time(512.0, *args, 1.0, UnevenRows(512.0, math.sqrt(480.0))))
    assert uneven > equal
    # one row past the boundary, equal groups take a whole tile each; uneven ones half
    past = float(gemm_time(513.0, *args))
    assert equal < uneven < past


@settings(max_examples=100, deadline=None)
@given(
    rows=st.floats(16.0, 20000.0),
    load=st.floats(1.0, 2.0),
    dload=st.floats(0.0, 1.0),
    drows=st.floats(0.0, 4000.0),
    c=st.sampled_from([0.0, 0.52 / 2.3437, 0.72 / 2.3437]),
    preset=st.sampled_from(["h100-sxm5-80gb", "b200", "a100-sxm4-80gb"]),
)
def test_grouped_gemm_time_monotone_in_load_and_tokens(rows, load, dload, drows, c, preset):
    """The expert GEMM as the estimator calls it (layer_cost._gemm_costs): mean rows ``rows x
    load`` per expert, spread of the balanced mean ``sqrt((c rows)^2 + rows (1 - k/E))``:
    never faster with a larger load or more tokens."""
    acc = accelerator_from(preset)
    peak = acc.peak(Precision.BF16)

    def t(r: float, lo: float) -> float:
        spread = math.sqrt((c * r) ** 2 + r * (1 - 8 / 128))
        rows = UnevenRows(r * lo, spread)
        return float(gemm_time(r * lo, 3072.0, 4096.0, acc, peak, 2.0, 16, None, 1.0, rows))

    base = t(rows, load)
    assert t(rows, load + dload) >= base * (1 - 1e-9)
    assert t(rows + drows, load) >= base * (1 - 1e-9)


def test_capped_rows_hand_worked():
    # equal groups: the capped count's tiles
    assert float(expected_row_tiles(700, 0.0, 128, cap=600)) == 5.0  # ceil(600 / 128)
    assert float(expected_row_tiles(500, 0.0, 128, cap=600)) == 4.0
    # far above the cap, every expert holds the cap: its tiles, as if padded to it
    assert float(expected_row_tiles(2000, 40.0, 128, cap=640)) == pytest.approx(5.0, abs=1e-9)
    # 480 rows, sigma 32, cap 512: the boundaries below 512 only (0, 128, 256, 384)
    want = 3.0 + 0.998650
    assert float(expected_row_tiles(480, 32.0, 128, cap=512)) == pytest.approx(want, abs=2e-6)


@settings(max_examples=200, deadline=None)
@given(
    mu=st.floats(1.0, 20000.0),
    rel=st.floats(0.0, 0.3),
    cap_rel=st.floats(0.3, 2.0),
    dmu=st.floats(0.0, 3000.0),
    tile=st.sampled_from([64.0, 128.0, 256.0]),
)
def test_capped_rows_sum_below_the_cap(mu, rel, cap_rel, dmu, tile):
    sigma = rel * mu
    cap = cap_rel * mu
    got = float(expected_row_tiles(mu, sigma, tile, cap))
    whole = math.ceil(cap / tile)
    if sigma > 1e-6:
        want = sum(_sf((j * tile - mu) / sigma) for j in range(whole))
        assert got == pytest.approx(want, abs=2e-6 * (1.0 + mu / tile))
    assert got <= float(expected_row_tiles(mu, sigma, tile)) + 1e-9
    assert got <= whole + 1e-9
    assert float(expected_row_tiles(mu + dmu, sigma, tile, cap)) >= got - 1e-9


def test_rows_with_a_last_axis_hand_worked():
    """200 rows per group, no spread: 4 tiles of 64 rows, 2 of 128, 1 of 256, the tiles
    along a last axis against the strategies' rows (two strategies: 200 and 300 rows)."""
    rows = UnevenRows(np.array([200.0, 300.0]), np.array([0.0, 0.0])).with_last_axis()
    got = rows.tiles(np.array([64.0, 128.0, 256.0]))
    assert got.shape == (2, 3)
    assert got.tolist() == [[4.0, 2.0, 1.0], [5.0, 3.0, 2.0]]
    capped = UnevenRows(np.array([200.0]), np.array([40.0]), np.array([256.0]))
    wide = capped.with_last_axis().tiles(np.array([64.0, 128.0]))
    assert wide.tolist() == [[float(capped.tiles(64.0)[0]), float(capped.tiles(128.0)[0])]]


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.floats(16.0, 20000.0), min_size=1, max_size=3),
    rel=st.floats(0.0, 0.5),
    cap=st.one_of(st.none(), st.floats(1.0, 2.0)),
    preset=st.sampled_from(["h100-sxm5-80gb", "b200", "a100-sxm4-80gb"]),
)
def test_uneven_candidates_broadcast_equal_the_loop(rows, rel, cap, preset):
    """A few GEMMs of uneven groups evaluate the candidate tiles along a broadcast axis
    (the expected row tiles of every candidate in one call); many, one candidate at a
    time: the same bits."""
    import deepflow.hardware.kernels as kernels

    acc = accelerator_from(preset)
    peak = acc.peak(Precision.BF16)
    mean = np.array(rows)
    uneven = UnevenRows(mean, rel * mean, None if cap is None else cap * mean)
    m = np.stack([mean, mean])  # forward and data gradient: the rows are the M side
    n = np.array([[3072.0], [4096.0]])
    k = np.array([[4096.0], [3072.0]])

    def time() -> np.ndarray:
        return gemm_time(m, n, k, acc, peak, 2.0, 16.0, None, 1.0, uneven)

    broadcast = time()
    old = kernels.BROADCAST_CANDIDATES_MAX
    kernels.BROADCAST_CANDIDATES_MAX = 0
    try:
        loop = time()
    finally:
        kernels.BROADCAST_CANDIDATES_MAX = old
    assert broadcast.shape == loop.shape == (2, len(rows))
    assert broadcast.tobytes() == loop.tobytes()
