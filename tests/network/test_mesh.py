"""The wafer mesh (no wrap-around, X-Y routing) and DeepFlow-style ring link derates."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from deepflow.network.topologies import mesh, ring_link_derate


def test_mesh_routes_x_then_y_without_wrap() -> None:
    g = mesh((3, 3), 1e9)
    # node = x + 3 y; 0 -> 8 goes right twice, then down twice: four hops, no wrap-around
    assert len(g.route(0, 8)) == 4
    assert len(g.route(2, 0)) == 2
    assert g.num_links == 2 * (2 * 3 + 2 * 3)


def test_ring_derates_by_hand() -> None:
    line = mesh((4, 1), 1e9)
    # rings {0,2} and {1,3} on a line: link 1->2 carries 0->2 and 1->3
    assert ring_link_derate(line, [[0, 2], [1, 3]]) == 2
    # {0,3} and {1,2}: 0->3 and 1->2 share link 1->2
    assert ring_link_derate(line, [[0, 3], [1, 2]]) == 2
    assert ring_link_derate(line, [[0, 1, 2, 3]]) == 1
    wafer = mesh((8, 8), 1e9)
    # 64 dies in one row-major ring: every directed link carries one flow
    assert ring_link_derate(wafer, [range(64)]) == 1
    # four rings of stride 4 at once: the x links between columns carry four flows
    assert ring_link_derate(wafer, [range(j, 64, 4) for j in range(4)]) == 4
    assert ring_link_derate(wafer, [[5]]) == 0


@given(
    st.lists(
        st.lists(st.integers(0, 15), min_size=2, max_size=6, unique=True), min_size=1, max_size=4
    )
)
def test_derate_of_concurrent_rings_is_at_least_each_rings(rings: list[list[int]]) -> None:
    g = mesh((4, 4), 1e9)
    together = ring_link_derate(g, rings)
    assert together >= max(ring_link_derate(g, [r]) for r in rings) >= 1
    assert together <= sum(len(r) for r in rings)
