"""Chakra's PyTorch-derived trace (3,664 nodes) runs to completion on the ASTRA executor."""

from __future__ import annotations

import math
from pathlib import Path

from deepflow.interop.astra import load_system, parse_network, simulate_workload
from deepflow.interop.chakra import CommType, DependencyPolicy, NodeType, read_et

RT = Path(__file__).resolve().parents[1] / "fixtures/astra-sim/tests/rt_template"


def test_pytorch_trace_simulates_to_completion(pytorch_et: Path) -> None:
    """The archive holds rank 0 of a data-parallel PyTorch job; its ranks run the same
    program, so both NPUs of a two-NPU ring (50 GB/s, 500 ns) get rank 0's trace.

    Compute nodes are timed from their ``duration_micros`` attribute (the system JSON has
    ``roofline-enabled`` 0, ASTRA-sim's replay mode); the broadcasts are replayed for their
    recorded duration, as ASTRA-sim does; the all-reduces run the native ring; the 14
    CPU-side communication nodes, which ASTRA-sim refuses, run as CPU compute on request
    (``cpu_comm_as_compute``). Dependencies
    are the data edges only: 1,277 control edges name host operators the trace omits
    (tests/fixtures/chakra/README.md)."""
    trace = read_et(pytorch_et)
    assert len(trace.nodes) == 3664
    network = parse_network("topology: [Ring]\nnpus_count: [2]\nbandwidth: [50]\nlatency: [500]\n")
    system = load_system(RT / "inputs/system_cfg.json")
    result = simulate_workload(
        {0: trace, 1: trace},
        network,
        system,
        policy=DependencyPolicy.DATA_ONLY,
        cpu_comm_as_compute=True,  # its 14 c10d::broadcast/allreduce CPU ops
    )
    assert all(len(spans) == 3664 for spans in result.spans.values())  # every node ran
    assert math.isfinite(result.makespan_s) and 0 < result.makespan_s < 1.0
    assert result.makespan_ns == 297_046_000
    gpu_compute_us = sum(
        n.duration_micros
        for n in trace.nodes
        if n.type is NodeType.COMP_NODE and n.attr_value("is_cpu_op") is False
    )
    assert result.ranks[0].compute_ns >= gpu_compute_us * 1000
    broadcasts = [n for n in trace.nodes if n.attr_value("comm_type") == CommType.BROADCAST.value]
    for node in broadcasts:  # replayed: they last exactly their recorded duration
        start, end = result.spans[0][node.id]
        assert end - start == max(1, node.duration_micros * 1000)
