"""Topologies: routing, per-link accounting, contention in the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from deepflow.network import Collective, Direct, LinkGraph, Ring, Topology, link_loads, simulate
from deepflow.network.dims import DimKind, NetworkDim
from deepflow.network.rings import ring_count
from deepflow.network.topologies import (
    fat_tree,
    fully_connected,
    hybrid_cube_mesh,
    multi_dim,
    rail_optimized,
    ring,
    switch,
    switched_domain,
    torus,
)

BUILDERS = [
    ring(6, 1e9, 1e-6),
    fully_connected(5, 1e9),
    switch(8, 1e9, 1e-6),
    switched_domain(72, 18, 50e9, 1e-7, planes=3),
    torus((4, 4), 1e9),
    torus((2, 3, 4), 1e9),
    fat_tree(4, 4, 2, 1e9, oversubscription=2),
    rail_optimized(4, 4, 4e9, 1e9),
    multi_dim([NetworkDim(DimKind.RING, 4, 1e9), NetworkDim(DimKind.SWITCH, 3, 1e9)]),
    hybrid_cube_mesh(),
]


@pytest.mark.parametrize("topo", BUILDERS, ids=lambda t: t.name)
def test_every_pair_routes_along_connected_links(topo: LinkGraph):
    assert isinstance(topo, Topology)
    src, dst, _, _ = topo.link_arrays()
    n = len(topo.endpoints)
    for a in range(n):
        for b in range(n):
            path = topo.route(a, b)
            node = a
            for lid in path:
                assert src[lid] == node
                node = dst[lid]
            assert node == b
            assert topo.route(a, b) == path  # deterministic


def test_torus_dimension_order_and_wraparound():
    t = torus((4, 4), 1e9)
    assert len(t.route(0, 3)) == 1  # wrap-around
    path = t.route(0, 5)  # (0,0) -> (1,1): x first
    assert t.dst[path[0]] == 1


def test_fat_tree_oversubscription_halves_cross_leaf_bandwidth():
    full = fat_tree(4, 2, 2, 1e9, oversubscription=1)
    half = fat_tree(4, 2, 2, 1e9, oversubscription=2)
    sched = Direct().schedule(Collective.ALL_TO_ALL, 8, 1e8)
    # half of all-to-all traffic crosses the spine; halving the uplinks slows it
    assert simulate(sched, half).time >= simulate(sched, full).time


def test_link_loads_and_simulation_accounting_agree():
    topo = ring(8, 1e9)
    sched = Ring().schedule(Collective.ALL_GATHER, 8, 8e6)
    res = simulate(sched, topo)
    assert res.link_bytes.sum() == pytest.approx(7 * 8 * 1e6)
    loads = link_loads(topo, np.arange(8), (np.arange(8) + 1) % 8, 7e6)
    assert np.allclose(np.sort(loads)[-8:], np.sort(res.link_bytes)[-8:])
    assert (res.link_utilization() <= 1 + 1e-12).all()


def test_contention_slows_shared_links():
    # a ring uses one uplink per leaf at a time, so oversubscription does not hurt it,
    # while direct all-to-all floods the spine
    ring_sched = Ring().schedule(Collective.ALL_REDUCE, 16, 1e8)
    full, thin = fat_tree(4, 4, 4, 1e9), fat_tree(4, 4, 1, 1e9, oversubscription=4)
    assert simulate(ring_sched, thin).time == pytest.approx(simulate(ring_sched, full).time)
    a2a = Direct().schedule(Collective.ALL_TO_ALL, 16, 1e8)
    assert simulate(a2a, thin).time > 1.5 * simulate(a2a, full).time


def test_rail_optimized_uses_pxn():
    topo = rail_optimized(2, 4, 4e9, 1e9)
    path = topo.route(0, 5)  # node 0 GPU 0 -> node 1 GPU 1: NVLink to GPU 1, then rail 1
    assert len(path) == 4


def test_dgx1_ring_counts():
    g = hybrid_cube_mesh()
    assert [ring_count(g, range(n), 25e9) for n in range(2, 9)] == [1, 2, 4, 2, 2, 4, 6]
    assert ring_count(switch(8, 300e9), range(8)) == 1
