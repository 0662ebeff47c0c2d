"""The vectorized closed-form API the estimator calls."""

from __future__ import annotations

import numpy as np
import pytest

from deepflow.network import (
    Algorithm,
    Collective,
    Hierarchy,
    Level,
    bus_bandwidth,
    collective_time,
    p2p_time,
    place_group,
)

H = Hierarchy(8, Level("up", 300e9, 2e-6, 0.8), Level("out", 25e9, 5e-6, 0.9))


@pytest.mark.parametrize("alg", list(Algorithm))
@pytest.mark.parametrize("op", list(Collective))
def test_vectorized_shapes_and_monotone(alg, op):
    sizes = np.array([1e3, 1e6, 1e9])
    group = place_group(np.array([1, 8, 64]), 1, H.scale_up_size)
    t = collective_time(op, sizes, group, H, alg)
    assert t.shape == (3,)
    assert t[0] == 0.0  # a group of one
    grid = collective_time(op, np.geomspace(1e3, 1e10, 50), place_group(16, 1, 8), H, alg)
    assert (np.diff(grid) >= 0).all()


def test_hierarchical_all_reduce_matches_ring_phases():
    group = place_group(32, 1, 8)
    t = collective_time(Collective.ALL_REDUCE, 1e9, group, H)
    up, out = 300e9 * 0.8, 25e9 * 0.9
    want = 2 * 7 * (2e-6 + 1e9 / 8 / up) + 2 * 3 * (5e-6 + 1e9 / 8 / 4 / out)
    assert float(t) == pytest.approx(want)


def test_p2p_and_bus_bandwidth():
    t = p2p_time([1e6, 1e6], [False, True], H)
    assert t[0] < t[1]
    assert bus_bandwidth(Collective.ALL_REDUCE, 1e9, 8, 1.0) == pytest.approx(1.75e9)
    assert bus_bandwidth(Collective.BROADCAST, 1e9, 8, 1.0) == pytest.approx(1e9)
