"""Congestion-aware ASTRA replay speed: a 1,024-rank ring all-reduce at chunk level.

    PYTHONPATH=src python bench/bench_astra_congestion.py [--npus 1024] [--splits 1]

Every NPU runs ASTRA-sim's ring message by message (2 (p - 1) messages per chunk and NPU)
on a 1-D Ring network with congestion-aware links (deepflow.network.links.LinkNetwork).
Prints the wall time, the messages simulated and the makespan for both backends.
"""

from __future__ import annotations

import argparse
import time

from deepflow.interop.astra import Backend, parse_network, parse_system, simulate_workload
from deepflow.interop.chakra import (
    Attribute,
    AttrKind,
    ExecutionTrace,
    GlobalMetadata,
    Node,
    NodeType,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--npus", type=int, default=1024)
    parser.add_argument("--splits", type=int, default=1)
    parser.add_argument("--size", type=int, default=1 << 26)
    args = parser.parse_args()
    p = args.npus
    network = parse_network(
        f"topology: [Ring]\nnpus_count: [{p}]\nbandwidth: [50]\nlatency: [500]\n"
    )
    system = parse_system(
        '{"all-reduce-implementation": ["ring"], "endpoint-delay": 10, "local-mem-bw": 1600,'
        f' "preferred-dataset-splits": {args.splits}}}'
    )
    node = Node(
        id=0,
        name="ar",
        type=NodeType.COMM_COLL_NODE,
        attrs=(
            Attribute("is_cpu_op", AttrKind.BOOL, False),
            Attribute("comm_type", AttrKind.INT64, 0),
            Attribute("comm_size", AttrKind.INT64, args.size),
        ),
    )
    trace = ExecutionTrace(GlobalMetadata("0.0.4"), (node,))
    traces = {r: trace for r in range(p)}
    for backend in (Backend.CONGESTION_AWARE, Backend.CONGESTION_UNAWARE):
        t0 = time.perf_counter()
        result = simulate_workload(traces, network, system, backend=backend)
        wall = time.perf_counter() - t0
        messages = 2 * (p - 1) * p * args.splits if backend is Backend.CONGESTION_AWARE else 0
        print(
            f"{backend.value}: {p} NPUs, {args.splits} chunk(s), {messages} messages, "
            f"makespan {result.makespan_ns} ns, wall {wall:.2f} s"
        )


if __name__ == "__main__":
    main()
