"""The congestion-aware replay's symmetric fast path (NPU 0 alone, links folded by
translation class) gives every rank the finish time the full replay gives."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepflow.interop.astra import Backend, parse_network, parse_system, simulate_workload
from deepflow.interop.astra.executor import symmetric_workload
from deepflow.interop.chakra import (
    Attribute,
    AttrKind,
    ExecutionTrace,
    GlobalMetadata,
    Node,
    NodeType,
)
from deepflow.network.dims import DimKind
from deepflow.network.links import LinkDim, LinkNetwork

_OPS = {"all-reduce": 0, "all-gather": 2, "all-to-all": 6, "reduce-scatter": 7}


def _trace(ops: list[tuple[int, int]]) -> ExecutionTrace:
    """Collectives ``(comm_type, bytes)`` in a chain with a compute node between them."""
    nodes = []
    for i, (comm_type, size) in enumerate(ops):
        deps = (2 * i - 1,) if i else ()
        nodes.append(
            Node(
                id=2 * i,
                name=f"coll{i}",
                type=NodeType.COMM_COLL_NODE,
                data_deps=deps,
                attrs=(
                    Attribute("is_cpu_op", AttrKind.BOOL, False),
                    Attribute("comm_type", AttrKind.INT64, comm_type),
                    Attribute("comm_size", AttrKind.INT64, size),
                ),
            )
        )
        nodes.append(
            Node(
                id=2 * i + 1,
                name=f"comp{i}",
                type=NodeType.COMP_NODE,
                data_deps=(2 * i,),
                duration_micros=3,
                attrs=(Attribute("is_cpu_op", AttrKind.BOOL, False),),
            )
        )
    return ExecutionTrace(GlobalMetadata("0.0.4"), tuple(nodes))


@st.composite
def _case(draw):  # type: ignore[no-untyped-def]
    ndims = draw(st.sampled_from([1, 1, 2]))
    topos = [draw(st.sampled_from(["Ring", "FullyConnected", "Switch"])) for _ in range(ndims)]
    npus = [draw(st.sampled_from([2, 3, 4, 5, 8])) for _ in range(ndims)]
    impl = draw(st.sampled_from(["ring", "direct"]))
    ops = draw(
        st.lists(
            st.tuples(st.sampled_from(sorted(_OPS)), st.sampled_from([1 << 12, 1 << 16, 1 << 20])),
            min_size=1,
            max_size=2,
        )
    )
    extra = draw(st.sampled_from(["", ', "collective-optimization": "localBWAware"']))
    splits = draw(st.sampled_from([1, 2, 4]))
    active = draw(st.sampled_from([1, 2]))
    policy = draw(st.sampled_from(["LIFO", "FIFO"]))
    bw = draw(st.sampled_from([25, 50, 200]))
    lat = draw(st.sampled_from([0, 100, 500]))
    network = parse_network(
        f"topology: [{', '.join(topos)}]\nnpus_count: [{', '.join(map(str, npus))}]\n"
        f"bandwidth: [{', '.join([str(bw)] * ndims)}]\n"
        f"latency: [{', '.join([str(lat)] * ndims)}]\n"
    )
    impls = ", ".join([f'"{impl}"'] * ndims)
    keys = ", ".join(f'"{op}-implementation": [{impls}]' for op in _OPS)
    system = parse_system(
        f'{{{keys}, "preferred-dataset-splits": {splits}, "active-chunks-per-dimension": '
        f'{active}, "scheduling-policy": "{policy}", "local-mem-bw": 1600, '
        f'"endpoint-delay": 10{extra}}}',
        "sym.json",
    )
    trace = _trace([(_OPS[op], size) for op, size in ops])
    return network, system, {r: trace for r in range(math.prod(npus))}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case())
def test_symmetric_fast_path_equals_full_replay(case) -> None:  # type: ignore[no-untyped-def]
    network, system, traces = case
    assert symmetric_workload(traces, system, Backend.CONGESTION_AWARE)
    fast = simulate_workload(traces, network, system, backend=Backend.CONGESTION_AWARE)
    full = simulate_workload(
        traces, network, system, backend=Backend.CONGESTION_AWARE, fast_symmetric=False
    )
    assert [r.finish_ns for r in fast.ranks] == [r.finish_ns for r in full.ranks]
    assert [r.exposed_comm_ns for r in fast.ranks] == [r.exposed_comm_ns for r in full.ranks]


def test_fast_path_refuses_asymmetric_inputs() -> None:
    system = parse_system(
        '{"all-reduce-implementation": ["halvingDoubling"], "all-gather-implementation": ["ring"]}',
        "s.json",
    )
    ar, ag = _trace([(0, 1 << 16)]), _trace([(2, 1 << 16)])
    ca = Backend.CONGESTION_AWARE
    # halvingDoubling pairs NPUs by absolute position
    assert not symmetric_workload({r: ar for r in range(4)}, system, ca)
    # different ETs on different NPUs
    assert not symmetric_workload({0: ag, 1: ag, 2: ag, 3: ar}, system, ca)
    assert symmetric_workload({r: ag for r in range(4)}, system, ca)
    # the congestion-unaware backend has closed forms already
    assert not symmetric_workload({r: ag for r in range(4)}, system, Backend.CONGESTION_UNAWARE)


def test_shift_is_a_translation() -> None:
    net = LinkNetwork(
        [LinkDim(DimKind.RING, 4, 1.0, 0.0), LinkDim(DimKind.SWITCH, 3, 1.0, 0.0)],
        lambda _d, _f: None,
        symmetric=True,
    )
    for a in range(12):
        assert net.shift(a, a) == 0
        for b in range(12):
            # shifting by b then by -b (the id of 0 shifted by b) restores a
            assert net.shift(net.shift(a, b), net.shift(0, b)) == a
