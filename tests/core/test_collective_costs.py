"""Hand-worked collective costs (Thakur, Rabenseifner, Gropp 2005, Table 1)."""

import pytest

from deepflow.network import Collective, Hierarchy, Level, collective_time, place_group


def flat(bandwidth=300e9, latency=2e-6, size=8):
    return Hierarchy(size, Level("up", bandwidth, latency), Level("out", 25e9, 5e-6))


def test_ring_all_reduce_inside_one_node():
    # 8 GPUs, 1 GiB, 300 GB/s, 2 us: 2(n-1) alpha + 2 (n-1)/n S / B
    S, n = 2**30, 8
    expected = 2 * (n - 1) * 2e-6 + 2 * (n - 1) / n * S / 300e9
    group = place_group(n, 1, 8)
    assert float(collective_time(Collective.ALL_REDUCE, S, group, flat())) == pytest.approx(
        expected
    )


def test_hierarchical_all_reduce_across_nodes():
    # 64 GPUs = 8 nodes x 8: reduce-scatter + all-gather inside (2 (m-1)/m S/B1), then an
    # all-reduce of S/m across the 8 nodes on 8 NICs in parallel (2 (k-1)/k (S/m)/B2)
    S, m, k = 2**30, 8, 8
    h = flat()
    expected = (
        2 * (m - 1) * 2e-6
        + 2 * (m - 1) / m * S / 300e9
        + 2 * (k - 1) * 5e-6
        + 2 * (k - 1) / k * (S / m) / 25e9
    )
    group = place_group(64, 1, 8)
    assert float(collective_time(Collective.ALL_REDUCE, S, group, h)) == pytest.approx(expected)


def test_strided_group_uses_the_scale_out_network():
    # a data-parallel group with tensor parallelism 8 inside: one member per node
    S = 2**30
    group = place_group(16, 8, 8)
    expected = 2 * 15 * 5e-6 + 2 * 15 / 16 * S / 25e9
    assert float(collective_time(Collective.ALL_REDUCE, S, group, flat())) == pytest.approx(
        expected
    )


def test_single_rank_costs_nothing():
    assert float(collective_time(Collective.ALL_REDUCE, 1e9, place_group(1, 1, 8), flat())) == 0.0
