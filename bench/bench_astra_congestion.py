"""Congestion-aware ASTRA replay speed: a 1,024-rank ring all-reduce at chunk level.

    PYTHONPATH=src python bench/bench_astra_congestion.py [--npus 1024] [--splits 1] [--full 256]

Every NPU runs ASTRA-sim's ring message by message (2 (p - 1) messages per chunk and NPU)
on a 1-D Ring network with congestion-aware links (deepflow.network.links.LinkNetwork).
All NPUs run the same collective, so the congestion-aware replay takes its symmetric fast
path (NPU 0 alone on links folded by translation class, 2 (p - 1) messages per chunk);
``--full N`` also runs N NPUs without it (every NPU's messages) and checks that both give
the same finish time on every rank. Prints the wall time, the messages simulated and the
makespan for both backends.
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
    parser.add_argument("--full", type=int, default=0, help="also run N NPUs without the fast path")
    args = parser.parse_args()
    if args.full:
        _compare(args.full, args.splits, args.size)
    p = args.npus
    network, system, traces = _inputs(p, args.splits, args.size)
    for backend in (Backend.CONGESTION_AWARE, Backend.CONGESTION_UNAWARE):
        t0 = time.perf_counter()
        result = simulate_workload(traces, network, system, backend=backend)
        wall = time.perf_counter() - t0
        how = (
            f"{2 * (p - 1) * args.splits} messages simulated (symmetric fast path)"
            if backend is Backend.CONGESTION_AWARE
            else "closed forms"
        )
        print(
            f"{backend.value}: {p} NPUs, {args.splits} chunk(s), {how}, "
            f"makespan {result.makespan_ns} ns, wall {wall:.2f} s"
        )


def _compare(p: int, splits: int, size: int) -> None:
    network, system, traces = _inputs(p, splits, size)
    walls, finish = [], []
    for fast in (True, False):
        t0 = time.perf_counter()
        result = simulate_workload(
            traces, network, system, backend=Backend.CONGESTION_AWARE, fast_symmetric=fast
        )
        walls.append(time.perf_counter() - t0)
        finish.append([r.finish_ns for r in result.ranks])
    same = "equal" if finish[0] == finish[1] else "DIFFERENT"
    print(
        f"congestion-aware, {p} NPUs: fast path {walls[0]:.2f} s, full "
        f"({2 * (p - 1) * p * splits} messages) {walls[1]:.2f} s, per-rank finish times {same}"
    )


def _inputs(p: int, splits: int, size: int):  # type: ignore[no-untyped-def]
    network = parse_network(
        f"topology: [Ring]\nnpus_count: [{p}]\nbandwidth: [50]\nlatency: [500]\n"
    )
    system = parse_system(
        '{"all-reduce-implementation": ["ring"], "endpoint-delay": 10, "local-mem-bw": 1600,'
        f' "preferred-dataset-splits": {splits}}}'
    )
    node = Node(
        id=0,
        name="ar",
        type=NodeType.COMM_COLL_NODE,
        attrs=(
            Attribute("is_cpu_op", AttrKind.BOOL, False),
            Attribute("comm_type", AttrKind.INT64, 0),
            Attribute("comm_size", AttrKind.INT64, size),
        ),
    )
    trace = ExecutionTrace(GlobalMetadata("0.0.4"), (node,))
    return network, system, {r: trace for r in range(p)}


if __name__ == "__main__":
    main()
