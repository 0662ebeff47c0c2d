"""ASTRA-sim configuration import: values in SI units; bad keys and values name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.interop.paths import ASTRA, RT

from deepflow.errors import TraceError
from deepflow.interop.astra import (
    CollectiveImpl,
    CollectiveOptimization,
    MemoryType,
    SchedulingPolicy,
    Topology,
    load_network,
    load_remote_memory,
    load_system,
    parse_comm_groups,
    parse_network,
    parse_system,
)

GOOD_NETWORKS = sorted(p for p in ASTRA.rglob("*.yml") if p.name != "dgx_v100_8gpu.yml")
SYSTEMS = sorted(
    p for p in ASTRA.rglob("*.json") if "memory" not in str(p) and "comm_groups" not in p.parts
)


@pytest.mark.parametrize("path", GOOD_NETWORKS, ids=lambda p: p.name)
def test_every_network_fixture_loads(path: Path) -> None:
    net = load_network(path)
    assert net.npus >= 2


def test_three_dimensional_network_in_si_units() -> None:
    net = load_network(ASTRA / "astra-network-analytical/input/Ring_FullyConnected_Switch.yml")
    assert [d.topology for d in net.dims] == [
        Topology.RING,
        Topology.FULLY_CONNECTED,
        Topology.SWITCH,
    ]
    assert [d.npus for d in net.dims] == [2, 8, 4]
    assert net.npus == 64
    assert [d.bandwidth_Bps for d in net.dims] == [200 * 2**30, 100 * 2**30, 50 * 2**30]
    assert [d.latency_s for d in net.dims] == pytest.approx([50e-9, 500e-9, 2000e-9])
    assert net.coordinates(47) == (1, 7, 2)
    assert [d.hops(0, 1) for d in net.dims] == [1, 1, 2]


def test_ring_hops_take_the_shorter_direction() -> None:
    (dim,) = load_network(ASTRA / "examples/network/analytical/Ring_8npus.yml").dims
    assert [dim.hops(0, k) for k in range(8)] == [0, 1, 2, 3, 4, 3, 2, 1]


def test_placeholder_values_are_rejected() -> None:
    with pytest.raises(
        TraceError, match=r"dgx_v100_8gpu\.yml: bandwidth\[0\]: expected a number, found 'tbd'"
    ):
        load_network(ASTRA / "inputs/network/dgx_v100_8gpu.yml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "topology: [Ring]\nnpus_count: [8]\nbandwidth: [50]\nlatency: [5]\nlinks: [1]\n",
            r"n\.yml: links: unknown network key",
        ),
        ("topology: [Ring]\nnpus_count: [8]\nbandwidth: [50]\n", r"n\.yml: latency: missing"),
        (
            "topology: [Ring, Ring]\nnpus_count: [8]\nbandwidth: [50]\nlatency: [5]\n",
            "one entry per dimension",
        ),
        (
            "topology: [Torus]\nnpus_count: [8]\nbandwidth: [50]\nlatency: [5]\n",
            r"topology\[0\]: 'Torus' is not one of",
        ),
        (
            "topology: [Ring]\nnpus_count: [1]\nbandwidth: [50]\nlatency: [5]\n",
            r"npus_count\[0\]: must be >= 2",
        ),
        (
            "topology: [Ring]\nnpus_count: [8]\nbandwidth: [0]\nlatency: [5]\n",
            r"bandwidth\[0\]: must be > 0",
        ),
        ("topology: [Ring\n", r"n\.yml: not valid YAML"),
    ],
)
def test_malformed_network(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        parse_network(text, "n.yml")


@pytest.mark.parametrize("path", SYSTEMS, ids=lambda p: p.name)
def test_every_system_fixture_loads(path: Path) -> None:
    load_system(path)


def test_regression_system_in_si_units() -> None:
    s = load_system(RT / "inputs/system_cfg.json")
    assert s.scheduling_policy is SchedulingPolicy.LIFO
    assert s.collective_optimization is CollectiveOptimization.LOCAL_BW_AWARE
    assert s.endpoint_delay_s == pytest.approx(10e-9)
    assert s.active_chunks_per_dimension == 1
    assert s.preferred_dataset_splits == 4
    assert s.local_mem_bw_Bps == 50e9
    assert s.implementation("all-reduce") == (CollectiveImpl.RING,)
    assert s.custom_implementation("all-reduce") is None


def test_two_dimensional_roofline_system() -> None:
    s = load_system(ASTRA / "inputs/system/analytical/hgx_h100_16gpu.json")
    assert s.all_gather_implementation == (CollectiveImpl.RING, CollectiveImpl.RING)
    assert s.peak_perf_flops == 700e12
    assert s.roofline_enabled and s.track_local_mem
    assert s.local_mem_trace_filename == "mem_trace/local_memory_trace"


def test_custom_collective_system() -> None:
    s = load_system(ASTRA / "examples/system/custom_collectives/custom_collective.json")
    assert s.scheduling_policy is SchedulingPolicy.FIFO
    assert s.custom_implementation("all-reduce") == (
        "examples/system/custom_collectives/custom_ring_allreduce_8npus_1MB/custom_allreduce"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"endpoint-delays": 10}', r"s\.json: endpoint-delays: unknown system configuration key"),
        ('{"endpoint-delay": "10"}', r"s\.json: endpoint-delay: expected a number, found '10'"),
        ('{"scheduling-policy": "RANDOM"}', r"scheduling-policy: 'RANDOM' is not one of LIFO"),
        (
            '{"all-reduce-implementation": ["ring", "tree"]}',
            r"all-reduce-implementation\[1\]: 'tree'",
        ),
        ('{"all-reduce-implementation-custom": ["a", "b"]}', "expected exactly one ET prefix"),
        ('{"active-chunks-per-dimension": 0}', "active-chunks-per-dimension: must be >= 1"),
        ('{"roofline-enabled": 2}', "roofline-enabled: expected 0 or 1"),
        ("[1, 2]", r"s\.json: the top level must be a JSON object"),
        ("{", r"s\.json: not valid JSON"),
    ],
)
def test_malformed_system(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        parse_system(text, "s.json")


def test_comm_groups() -> None:
    groups = parse_comm_groups('{"1": [0, 1, 2, 3], "2": [4, 5, 6, 7]}', "g.json")
    assert groups.members("2", 8) == (4, 5, 6, 7)
    assert groups.members("", 8) == groups.members("0", 8) == tuple(range(8))
    with pytest.raises(TraceError, match=r"g\.json: group '9' is not defined"):
        groups.members("9", 8)
    with pytest.raises(TraceError, match=r"g\.json: x: a group id must be an integer string"):
        parse_comm_groups('{"x": [0]}', "g.json")
    with pytest.raises(TraceError, match=r"g\.json: 1: an NPU appears twice"):
        parse_comm_groups('{"1": [0, 0]}', "g.json")
    with pytest.raises(TraceError, match=r"g\.json: 1\[1\]: expected an integer"):
        parse_comm_groups('{"1": [0, "a"]}', "g.json")


def test_remote_memory() -> None:
    mem = load_remote_memory(ASTRA / "examples/remote_memory/analytical/no_memory_expansion.json")
    assert mem.memory_type is MemoryType.NO_MEMORY_EXPANSION
    assert load_remote_memory(RT / "inputs/remote_memory_cfg.json") == mem
