"""Speed of the network layer: chunk-level simulation and closed-form evaluation.

Targets (one core): a 1024-rank ring all-reduce simulated in at most 2 s; at least
100,000 closed-form collective evaluations per second (vectorized).

Run: ``python bench/bench_collectives.py``
"""

from __future__ import annotations

import time

import numpy as np

from deepflow.network import Collective, Hierarchy, Level, Ring, collective_time, place_group
from deepflow.network.topologies import ring


def bench_simulation(n: int = 1024) -> float:
    alg = Ring()
    topo = ring(n, 50e9, 1e-6)
    start = time.perf_counter()
    schedule = alg.schedule(Collective.ALL_REDUCE, n, 1 << 30)
    from deepflow.network import simulate

    result = simulate(schedule, topo)
    elapsed = time.perf_counter() - start
    print(
        f"chunk-level simulation, {n}-rank ring all-reduce of 1 GiB: {elapsed:.2f} s "
        f"({schedule.transfers:,} transfers, simulated time {result.time * 1e3:.2f} ms)"
    )
    return elapsed


def bench_closed_form(batch: int = 100_000, repeats: int = 5) -> float:
    hierarchy = Hierarchy(8, Level("up", 300e9, 2e-6, 0.8), Level("out", 25e9, 5e-6, 0.9))
    rng = np.random.default_rng(0)
    sizes = rng.uniform(1e3, 1e10, batch)
    groups = place_group(2 ** rng.integers(0, 12, batch), 2 ** rng.integers(0, 4, batch), 8)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        collective_time(Collective.ALL_REDUCE, sizes, groups, hierarchy)
        best = min(best, time.perf_counter() - start)
    rate = batch / best
    print(f"closed-form all-reduce evaluations: {rate:,.0f} per second (batch {batch:,})")
    return rate


if __name__ == "__main__":
    sim = bench_simulation()
    rate = bench_closed_form()
    print(
        f"targets: simulation <= 2 s [{'ok' if sim <= 2 else 'MISSED'}], "
        f"closed form >= 100,000/s [{'ok' if rate >= 1e5 else 'MISSED'}]"
    )
