"""ASTRA-sim's native ``direct``, ``halvingDoubling`` and ``doubleBinaryTree`` (and deepflow's
``ncclDoubleBinaryTree``) in the trace
replay: per-phase costs against the network layer's closed forms where the semantics match
(no endpoint delay, no reduction cost, one link per peer), integer-ns behaviour, and
end-to-end runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepflow.errors import TraceError
from deepflow.interop.astra import parse_network, parse_system, simulate_workload
from deepflow.interop.astra.analytical import (
    NativeCollective,
    Phase,
    link_time_ns,
    phase_ns,
)
from deepflow.interop.astra.network import NetworkConfig
from deepflow.interop.astra.system import SystemConfig
from deepflow.interop.chakra import (
    Attribute,
    AttrKind,
    ExecutionTrace,
    GlobalMetadata,
    Node,
    NodeType,
)
from deepflow.network import Algorithm, Collective
from deepflow.network.algorithms import ALGORITHMS
from deepflow.network.algorithms.double_binary_tree import double_tree, heights

AR, RS, AG, A2A = (
    NativeCollective.ALL_REDUCE,
    NativeCollective.REDUCE_SCATTER,
    NativeCollective.ALL_GATHER,
    NativeCollective.ALL_TO_ALL,
)
NET_OP = {
    AR: Collective.ALL_REDUCE,
    RS: Collective.REDUCE_SCATTER,
    AG: Collective.ALL_GATHER,
    A2A: Collective.ALL_TO_ALL,
}
BUILTIN = {
    "direct": Algorithm.DIRECT,
    "halvingDoubling": Algorithm.HALVING_DOUBLING,
    "ncclDoubleBinaryTree": Algorithm.TREE,
}
GB_S, LAT_NS = 100.0, 700.0


def _network(topology: str, p: int) -> NetworkConfig:
    return parse_network(
        f"topology: [{topology}]\nnpus_count: [{p}]\nbandwidth: [{GB_S}]\nlatency: [{LAT_NS}]\n"
    )


def _system(impl: str, endpoint_ns: float = 0.0, mem_gb_s: float = 1e12) -> SystemConfig:
    text = (
        "{"
        + ", ".join(
            f'"{c}-implementation": ["{impl}"]'
            for c in ("all-reduce", "reduce-scatter", "all-gather", "all-to-all")
        )
        + f', "endpoint-delay": {endpoint_ns}, "local-mem-bw": {mem_gb_s},'
        + ' "preferred-dataset-splits": 1, "collective-optimization": "baseline"}'
    )
    return parse_system(text, f"{impl}.json")


def _network_layer(impl: str, op: NativeCollective, p: int, data: float, topology: str) -> float:
    """The network layer's closed form in ns, on the same dimension."""
    net = _network(topology, p).dims[0]
    bw = net.bandwidth_Bps
    size = data * p if op is AG else data  # network convention: an all-gather's output
    if impl == "ncclDoubleBinaryTree":
        # tree links of B: the network layer's reference mesh has links of bandwidth / 2
        bandwidth, latency = 2.0 * bw, net.latency_s
    elif topology == "FullyConnected":
        # direct uses all p - 1 links at once, halving-doubling one per round
        links = p - 1 if impl == "direct" else 1
        bandwidth, latency = links * bw, net.latency_s
    else:  # Switch: one port per NPU, two link traversals per message
        bandwidth, latency = bw, 2.0 * net.latency_s
    algo = ALGORITHMS[BUILTIN[impl]]
    t = algo.closed_form(NET_OP[op], size, p, bandwidth, latency, 1)
    return float(np.asarray(t)) * 1e9


CASES = [
    ("direct", AR),
    ("direct", RS),
    ("direct", AG),
    ("direct", A2A),
    ("halvingDoubling", AR),
    ("halvingDoubling", RS),
    ("halvingDoubling", AG),
    ("ncclDoubleBinaryTree", AR),
]


@pytest.mark.parametrize("p", [2, 4, 8, 16])
@pytest.mark.parametrize("data", [4096.0, float(1 << 20), float(1 << 26)])
@pytest.mark.parametrize(("impl", "op"), CASES)
def test_matches_the_network_layer_on_a_full_mesh(
    impl: str, op: NativeCollective, p: int, data: float
) -> None:
    system = _system(impl)
    t, _ = phase_ns(Phase(0, op, p), data, _network("FullyConnected", p), system)
    assert isinstance(t, int)
    want = _network_layer(impl, op, p, data, "FullyConnected")
    rounds = 2 * p  # generous bound on messages along the critical path
    assert want - rounds <= t <= want + 1e-6 * want  # each message floors by less than 1 ns


@pytest.mark.parametrize("p", [2, 4, 8, 16])
@pytest.mark.parametrize("op", [AR, RS, AG])
def test_halving_doubling_matches_on_a_switch(op: NativeCollective, p: int) -> None:
    data = float(1 << 24)
    t, _ = phase_ns(Phase(0, op, p), data, _network("Switch", p), _system("halvingDoubling"))
    want = _network_layer("halvingDoubling", op, p, data, "Switch")
    assert want - 2 * p <= t <= want


def test_direct_on_a_switch_overlaps_messages_as_astra_does() -> None:
    """Congestion-unaware: an NPU's p - 1 messages share no link, so the bandwidth term is
    (p - 1) times smaller than the network layer's shared switch port."""
    p, data = 8, float(1 << 26)
    t, _ = phase_ns(Phase(0, RS, p), data, _network("Switch", p), _system("direct"))
    dim = _network("Switch", p).dims[0]
    assert t == link_time_ns(dim, data / p, 2)
    switch = _network_layer("direct", RS, p, data, "Switch")
    assert switch == pytest.approx(2 * LAT_NS + (p - 1) * (t - 2 * LAT_NS), rel=1e-6)


@pytest.mark.parametrize(("impl", "op"), CASES)
def test_data_left_per_npu(impl: str, op: NativeCollective) -> None:
    p, data = 8, 8192.0
    _, left = phase_ns(Phase(0, op, p), data, _network("Switch", p), _system(impl))
    assert left == {AR: data, RS: data / p, AG: data * p, A2A: data}[op]


def test_reduction_and_endpoint_terms() -> None:
    """The integer ASTRA terms: ``3 floor(m / local_mem_bw)`` per reduced message and one
    endpoint delay per round plus one per phase."""
    p, data, ed, mem = 8, float(1 << 20), 10.0, 50.0
    net = _network("Switch", p)
    dim = net.dims[0]
    red = lambda m: 3 * math.floor(m / mem)  # noqa: E731  (local-mem-bw 50 GB/s = 50 B/ns)
    sys_d = _system("direct", ed, mem)
    m = data / p
    assert phase_ns(Phase(0, AR, p), data, net, sys_d)[0] == math.floor(
        2 * link_time_ns(dim, m, 2) + red(m) + 3 * ed
    )
    sys_hd = _system("halvingDoubling", ed, mem)
    sizes = [data / 2, data / 4, data / 8]
    # the first message of the reduce-scatter half is not reduced (HalvingDoubling.cc, D1)
    rs = sum(link_time_ns(dim, s, 2) + (red(s) if i else 0) for i, s in enumerate(sizes))
    ag = sum(link_time_ns(dim, s, 2) for s in sizes)
    assert phase_ns(Phase(0, AR, p), data, net, sys_hd)[0] == math.floor(rs + ag + 7 * ed)
    # double binary tree: 2 * depth messages of d/2 on the critical path, one reduction per
    # child on the way up
    sys_t = _system("ncclDoubleBinaryTree", ed, mem)
    t, _ = phase_ns(Phase(0, AR, p), data, net, sys_t)
    depth = max(max(heights(tree)[1]) for tree in double_tree(p))
    hop = link_time_ns(dim, data / 2, 2)
    assert t >= 2 * depth * (hop + ed) + depth * red(data / 2) + ed


def test_ring_dimension_counts_hops_to_distant_partners() -> None:
    p, data = 8, float(1 << 20)
    ring, full = _network("Ring", p), _network("FullyConnected", p)
    for impl in ("direct", "halvingDoubling"):
        t_ring, _ = phase_ns(Phase(0, RS, p), data, ring, _system(impl))
        t_full, _ = phase_ns(Phase(0, RS, p), data, full, _system(impl))
        assert t_ring > t_full


def _coll(comm_type: int, size: int) -> ExecutionTrace:
    node = Node(
        id=1,
        name="coll",
        type=NodeType.COMM_COLL_NODE,
        attrs=(
            Attribute("is_cpu_op", AttrKind.BOOL, False),
            Attribute("comm_type", AttrKind.INT64, comm_type),
            Attribute("comm_size", AttrKind.INT64, size),
        ),
    )
    return ExecutionTrace(GlobalMetadata("0.0.4"), (node,))


@pytest.mark.parametrize("impl", ["ring", "direct", "halvingDoubling", "doubleBinaryTree"])
def test_workload_runs_every_chunk_through_the_algorithm(impl: str) -> None:
    network = parse_network(
        "topology: [Switch, FullyConnected]\nnpus_count: [4, 2]\nbandwidth: [200, 50]\n"
        "latency: [500, 1000]\n"
    )
    # localBWAware takes every phase's algorithm from the all-reduce list (D3);
    # doubleBinaryTree is all-reduce only, so it runs in the last dimension
    inner = "ring" if impl == "doubleBinaryTree" else impl
    system = parse_system(
        f'{{"all-reduce-implementation": ["{inner}", "{impl}"], "endpoint-delay": 10,'
        ' "local-mem-bw": 50, "preferred-dataset-splits": 4,'
        ' "collective-optimization": "localBWAware"}',
        f"{impl}.json",
    )
    size = 1 << 22
    result = simulate_workload({r: _coll(0, size) for r in range(8)}, network, system)
    # localBWAware: reduce-scatter over the switch, all-reduce over the clique, all-gather
    # back; 4 chunks, one at a time per dimension, so chunks pipeline across dimensions
    chunk = size / 4
    rs, left = phase_ns(Phase(0, RS, 4, AR), chunk, network, system)
    ar, left = phase_ns(Phase(1, AR, 2), left, network, system)
    ag, _ = phase_ns(Phase(0, AG, 4, AR), left, network, system)
    assert rs + ar + ag < result.makespan_ns <= 4 * (rs + ar + ag)
    if impl != "doubleBinaryTree":  # the tree's NPUs finish with their place in it
        assert {r.finish_ns for r in result.ranks} == {result.makespan_ns}


def test_double_binary_tree_one_chunk_matches_astra_sim() -> None:
    """ASTRA-sim's tree (whole chunk, one tree): 86,069 ns on 4 NPUs and 130,081 on 8
    (conformance rows C2_..._splits1, 1 MiB, FullyConnected 50 GB/s 500 ns)."""
    for p, expected in ((4, 86_069), (8, 130_081)):
        net = parse_network(
            f"topology: [FullyConnected]\nnpus_count: [{p}]\nbandwidth: [50]\nlatency: [500]\n"
        )
        system = parse_system(
            '{"all-reduce-implementation": ["doubleBinaryTree"], "endpoint-delay": 10,'
            ' "local-mem-bw": 1600}'
        )
        assert phase_ns(Phase(0, AR, p), float(1 << 20), net, system)[0] == expected


@pytest.mark.parametrize(
    ("impl", "op", "p", "problem"),
    [
        ("halvingDoubling", AR, 6, "power-of-two"),
        ("halvingDoubling", A2A, 8, "all-to-all"),
        ("doubleBinaryTree", RS, 8, "all-reduce only"),
        ("oneHalvingDoubling", AR, 8, "not modelled"),
    ],
)
def test_unsupported_cases_are_named(impl: str, op: NativeCollective, p: int, problem: str) -> None:
    with pytest.raises(
        TraceError, match=rf"{impl}\.json: {op.value}-implementation\[0\].*{problem}"
    ):
        phase_ns(Phase(0, op, p), 1e6, _network("Switch", p), _system(impl))
