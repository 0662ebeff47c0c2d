"""Trace simulation with ASTRA-sim's analytical semantics: the regression reference, the
custom MSCCL ring, and hand-derived expectations."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
from tests.interop.paths import ASTRA, CUSTOM_DIR, CUSTOM_PREFIX, MICROBENCH, MSCCL, RT

from deepflow.errors import TraceError
from deepflow.interop.astra import (
    CollectiveOptimization,
    load_network,
    load_system,
    parse_comm_groups,
    parse_system,
    simulate_workload,
)
from deepflow.interop.astra.analytical import (
    NativeCollective,
    Phase,
    p2p_delay_ns,
    phase_plan,
)
from deepflow.interop.chakra import (
    Attribute,
    AttrKind,
    ExecutionTrace,
    GlobalMetadata,
    Node,
    NodeType,
    read_workload,
)
from deepflow.interop.msccl import msccl_to_chakra, read_msccl

RING8 = ASTRA / "examples/network/analytical/Ring_8npus.yml"
CUSTOM_SYSTEM = ASTRA / "examples/system/custom_collectives/custom_collective.json"


def _golden_cycles() -> set[int]:
    text = (RT / "refs/stdout.txt").read_text()
    return {int(m) for m in re.findall(r"finished, (\d+) cycles", text)}


def _collective(nid: int, comm_type: int, size: int, *extra: Attribute) -> Node:
    return Node(
        id=nid,
        name="coll",
        type=NodeType.COMM_COLL_NODE,
        attrs=(
            Attribute("is_cpu_op", AttrKind.BOOL, False),
            Attribute("comm_type", AttrKind.INT64, comm_type),
            Attribute("comm_size", AttrKind.INT64, size),
            *extra,
        ),
    )


def test_regression_reference_117780_ns() -> None:
    """ASTRA-sim tests/rt_template: 8-NPU ring, 50 GB/s, 500 ns, 1 MiB all-reduce."""
    assert _golden_cycles() == {117_780}
    trace = ExecutionTrace(GlobalMetadata("0.0.4"), (_collective(1, 0, 1_048_576),))
    result = simulate_workload(
        {r: trace for r in range(8)},
        load_network(RT / "inputs/network_cfg.yml"),
        load_system(RT / "inputs/system_cfg.json"),
    )
    assert [r.finish_ns for r in result.ranks] == [117_780] * 8
    assert result.makespan_ns == pytest.approx(117_780, rel=0.01)
    assert all(r.exposed_comm_ns == 117_780 for r in result.ranks)
    assert result.makespan_s == pytest.approx(117.78e-6)


def test_microbenchmark_all_reduce_gives_the_same_time() -> None:
    result = simulate_workload(
        read_workload(MICROBENCH / "all_reduce/8npus_1MB/all_reduce"),
        load_network(RT / "inputs/network_cfg.yml"),
        load_system(RT / "inputs/system_cfg.json"),
    )
    assert result.makespan_ns == 117_780


def _custom_ring_ns() -> int:
    """Hand derivation for the custom ring ETs on Ring_8npus: each rank runs a chain of 14
    sends (each completes on arrival at the neighbour: floor(500 + 131072 / 53.687) =
    2,941 ns), 14 receives that find their message already there, and 7 COMP nodes of 7 us."""
    hop = math.floor(500 + 131_072 / (50 * 2**30 / 1e9))
    assert hop == 2941
    return 14 * hop + 7 * 7_000


def test_custom_ring_ets_as_the_workload() -> None:
    result = simulate_workload(
        read_workload(CUSTOM_PREFIX), load_network(RING8), load_system(CUSTOM_SYSTEM)
    )
    assert result.makespan_ns == _custom_ring_ns() == 90_174
    assert all(r.compute_ns == 49_000 for r in result.ranks)


def test_custom_ring_ets_as_the_all_reduce_implementation() -> None:
    result = simulate_workload(
        read_workload(MICROBENCH / "all_reduce/8npus_1MB/all_reduce"),
        load_network(RING8),
        load_system(CUSTOM_SYSTEM),
        custom_dir=ASTRA,
    )
    assert result.makespan_ns == 90_174


def test_imported_msccl_algorithms_simulate() -> None:
    """The converted unfused ring matches the shipped ETs; the fused ring (one channel per
    chunk, every GPU busy with one chunk per step) takes the same time."""
    network, system = load_network(RING8), load_system(CUSTOM_SYSTEM)
    unfused = msccl_to_chakra(read_msccl(CUSTOM_DIR / "custom_allreduce.xml"), 1 << 20)
    fused = msccl_to_chakra(read_msccl(MSCCL / "ring_8_1.xml"), 1 << 20)
    assert simulate_workload(unfused, network, system).makespan_ns == 90_174
    assert simulate_workload(fused, network, system).makespan_ns == 90_174
    many = msccl_to_chakra(read_msccl(MSCCL / "ring_1_8.xml"), 1 << 20)
    assert simulate_workload(many, network, system).makespan_ns > 0


def test_all_gather_16_npus_matches_the_ring_formula() -> None:
    system = load_system(ASTRA / "examples/system/native_collectives/Ring_4chunks.json")
    result = simulate_workload(
        read_workload(MICROBENCH / "all_gather/16npus_1MB/all_gather"),
        load_network(ASTRA / "examples/network/analytical/Ring_16npus.yml"),
        system,
    )
    hop = math.floor(500 + (1 << 20) / 4 / (50 * 2**30 / 1e9))  # chunk of 256 KiB per message
    assert result.makespan_ns == 4 * (15 * hop + 16 * 10)


def test_more_active_chunks_never_slower() -> None:
    network = load_network(ASTRA / "inputs/network/tpu_v3_32_2dtorus.yml")
    base = load_system(ASTRA / "inputs/system/analytical/tpu_v3_32_2dtorus.json")
    base = replace(base, preferred_dataset_splits=4)
    trace = ExecutionTrace(GlobalMetadata("0.0.4"), (_collective(0, 0, 1 << 22),))
    work = {r: trace for r in range(32)}
    one = simulate_workload(work, network, base).makespan_ns
    two = simulate_workload(work, network, replace(base, active_chunks_per_dimension=2)).makespan_ns
    assert two < one


def test_local_bw_aware_plan() -> None:
    dims = [(0, 2), (1, 8), (2, 4)]
    plan = phase_plan(NativeCollective.ALL_REDUCE, dims, CollectiveOptimization.LOCAL_BW_AWARE)
    rs, ar, ag = (
        NativeCollective.REDUCE_SCATTER,
        NativeCollective.ALL_REDUCE,
        NativeCollective.ALL_GATHER,
    )
    # every phase takes its algorithm from all-reduce-implementation (D3)
    assert plan == [
        Phase(0, rs, 2, ar),
        Phase(1, rs, 8, ar),
        Phase(2, ar, 4),
        Phase(1, ag, 8, ar),
        Phase(0, ag, 2, ar),
    ]
    base = phase_plan(NativeCollective.ALL_GATHER, dims, CollectiveOptimization.BASELINE)
    assert [p.dim for p in base] == [2, 1, 0]


def test_p2p_uses_the_first_differing_dimension() -> None:
    net = load_network(ASTRA / "astra-network-analytical/input/Ring_FullyConnected_Switch.yml")
    # 0 -> 1 differs in dim 0 (ring, 1 hop, 50 ns, 200 GB/s); 0 -> 16 in dim 2 (switch, 2 hops)
    assert p2p_delay_ns(net, 0, 1, 2**30) == math.floor(50 + 2**30 / (200 * 2**30 / 1e9))
    assert p2p_delay_ns(net, 0, 16, 1000) == math.floor(2 * 2000 + 1000 / (50 * 2**30 / 1e9))


def test_group_collective_runs_on_its_members_only() -> None:
    network = load_network(ASTRA / "inputs/network/hgx_h100_16gpu.yml")
    system = load_system(ASTRA / "inputs/system/analytical/hgx_h100_16gpu.json")
    system = replace(system, roofline_enabled=False)
    groups = parse_comm_groups(
        '{"1": [0, 1, 2, 3, 4, 5, 6, 7], "2": [8, 9, 10, 11, 12, 13, 14, 15]}'
    )
    traces = {}
    for r in range(16):
        pg = Attribute("pg_name", AttrKind.STRING, "1" if r < 8 else "2")
        traces[r] = ExecutionTrace(GlobalMetadata("0.0.4"), (_collective(0, 0, 1 << 20, pg),))
    grouped = simulate_workload(traces, network, system, groups)
    # a group smaller than the job runs one flat ring over its members (here all in the
    # 8-NPU switch dimension) whose packets wait the local ring's fixed 10 ns MemBus delay
    # (CommunicatorGroup::get_collective_plan, MemBus::Transmition::Fast)
    one_dim = load_network(ASTRA / "inputs/network/hgx_h100_8gpu.yml")
    flat = replace(
        system,
        all_reduce_implementation=system.all_reduce_implementation[:1],
        endpoint_delay_s=10e-9,
    )
    alone = {
        r: ExecutionTrace(GlobalMetadata("0.0.4"), (_collective(0, 0, 1 << 20),)) for r in range(8)
    }
    expected = simulate_workload(alone, one_dim, flat).makespan_ns
    assert [r.finish_ns for r in grouped.ranks] == [expected] * 16


def test_compute_and_resources() -> None:
    """Two GPU COMP nodes serialise; a CPU op runs beside them; 0 us lasts 1 ns."""
    nodes = (
        Node(id=0, name="a", type=NodeType.COMP_NODE, duration_micros=5),
        Node(id=1, name="b", type=NodeType.COMP_NODE, duration_micros=3),
        Node(
            id=2,
            name="cpu",
            type=NodeType.COMP_NODE,
            duration_micros=4,
            attrs=(Attribute("is_cpu_op", AttrKind.BOOL, True),),
        ),
        Node(id=3, name="z", type=NodeType.COMP_NODE, data_deps=(0, 1, 2)),
    )
    trace = ExecutionTrace(GlobalMetadata("1.0.0"), nodes)
    result = simulate_workload(
        {r: trace for r in range(4)},
        load_network(ASTRA / "examples/network/analytical/Ring_4npus.yml"),
        load_system(RT / "inputs/system_cfg.json"),
    )
    spans = result.spans[0]
    assert spans[0] == (0, 5000) and spans[1] == (5000, 8000) and spans[2] == (0, 4000)
    assert spans[3] == (8000, 8001)
    assert result.ranks[0].compute_ns == 8001


def test_unmatched_receive_is_a_deadlock_naming_the_node() -> None:
    traces = dict(read_workload(CUSTOM_PREFIX))
    t2 = traces[2]
    traces[2] = replace(t2, nodes=t2.nodes[:1])  # rank 2 only sends its first chunk
    with pytest.raises(
        TraceError,
        match=r"rank \d \(.*custom_allreduce\.\d\.et\): node \d+: COMM_RECV_NODE issued at \d+ ns "
        r"never completed \(receive of 131072 B from rank \d, tag 0: no matching send\)",
    ):
        simulate_workload(traces, load_network(RING8), load_system(CUSTOM_SYSTEM))


def test_workload_and_network_sizes_must_agree() -> None:
    with pytest.raises(
        TraceError, match=r"Ring_8npus\.yml: the network has 8 NPUs but the workload"
    ):
        simulate_workload(
            read_workload(MICROBENCH / "all_reduce/4npus_1MB/all_reduce"),
            load_network(RING8),
            load_system(RT / "inputs/system_cfg.json"),
        )


def test_unsupported_native_algorithm_is_named() -> None:
    system = parse_system(
        '{"all-reduce-implementation": ["oneDirect"], "local-mem-bw": 50}', "d.json"
    )
    with pytest.raises(
        TraceError, match=r"d\.json: all-reduce-implementation\[0\]: 'oneDirect' is not"
    ):
        simulate_workload(
            read_workload(MICROBENCH / "all_reduce/8npus_1MB/all_reduce"),
            load_network(RING8),
            system,
        )
