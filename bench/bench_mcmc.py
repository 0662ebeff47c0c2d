"""Iterations per second of the per-operator MCMC search (FlexFlow, arXiv 1807.05358,
sec. 6): Inception-v3 (batch 64) on 16 V100s in 4 nodes, one chain from data parallelism,
with gradient synchronization overlapping the backward pass (the simulator's default) and
after it (FlexFlow's simulators, sec. 5). Each iteration proposes a config for one op and
simulates the whole training step (no delta simulation).

    python bench/bench_mcmc.py [ITERATIONS]
"""

from __future__ import annotations

import sys

from deepflow.search.mcmc import mcmc_search
from deepflow.sim.opsim import OpSimulator
from deepflow.specs import system_from
from deepflow.workload.cnn import inception_v3


def main(iterations: int = 300) -> None:
    system = system_from({"preset": "dgx-v100", "num_accelerators": 16, "accelerators_per_node": 4})
    graph = inception_v3(batch=64)
    print(f"inception-v3, 16 GPUs / 4 nodes: {len(graph.ops)} ops")
    for overlap in (True, False):
        sim = OpSimulator(graph, system, overlap_sync=overlap)
        r = mcmc_search(sim, iterations=iterations, seed=0, starts={}, min_iterations=iterations)
        print(f"sync              {'overlapped' if overlap else 'after backward'}")
        print(f"  iterations      {r.iterations}")
        print(f"  wall time       {r.elapsed_s:.2f} s")
        print(f"  iterations / s  {r.iterations / r.elapsed_s:.1f}")
        print(f"  data parallel   {r.data_parallel_cost * 1e3:.3f} ms")
        print(f"  best found      {r.best_cost * 1e3:.3f} ms  (x{r.speedup:.4f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
