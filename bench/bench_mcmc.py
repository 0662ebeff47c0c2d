"""Iterations per second of the per-operator MCMC search (FlexFlow, arXiv 1807.05358,
sec. 6): Inception-v3 (batch 64) on 16 V100s in 4 nodes, one chain from data parallelism,
with gradient synchronization overlapping the backward pass (the simulator's default) and
after it (FlexFlow's simulators, sec. 5). Each iteration proposes a config for one op and
simulates the training step twice over: with delta simulation (sec. 5.3, the default:
resume at the changed op from saved stream ends) and with full simulation
(``OpSimulator(delta=False)``). Both chains take the same path (the step times are equal
bit for bit), so the ratio of their rates is the delta speed-up. The default search also
proposes whole-branch placements (a fifth of the proposals on Inception-v3); the third
chain runs one-op moves only (``branch_moves=False``), for comparison.

    python bench/bench_mcmc.py [ITERATIONS]   (best of 3 interleaved runs of each)

Recorded (2-core shared CPU, 300 iterations): before delta simulation (commit 7e55d30,
the whole step re-lowered per proposal) 117.9 iterations/s overlapped and 112.3 after
backward; the numbers this script prints now are in docs/opsearch.md.
"""

from __future__ import annotations

import sys

from deepflow.search.mcmc import mcmc_search
from deepflow.sim.opsim import OpSimulator
from deepflow.specs import system_from
from deepflow.workload.cnn import inception_v3


def main(iterations: int = 300, repeats: int = 3) -> None:
    system = system_from({"preset": "dgx-v100", "num_accelerators": 16, "accelerators_per_node": 4})
    graph = inception_v3(batch=64)
    print(f"inception-v3, 16 GPUs / 4 nodes: {len(graph.ops)} ops")
    # (delta, branch moves): the default search, full simulation, and one-op moves only
    variants = {"delta": (True, True), "full": (False, True), "delta, one-op moves": (True, False)}
    for overlap in (True, False):
        print(f"sync              {'overlapped' if overlap else 'after backward'}")
        rates: dict[str, float] = {}
        sims = {
            k: OpSimulator(graph, system, overlap_sync=overlap, delta=d)
            for k, (d, _) in variants.items()
        }
        for k, sim in sims.items():
            # warm the cost caches so that the timed runs time the simulation only
            mcmc_search(
                sim,
                iterations=iterations,
                seed=1,
                starts={},
                min_iterations=iterations,
                branch_moves=variants[k][1],
            )
        for _ in range(repeats):
            # interleaved, best of `repeats`: the machine's load moves all alike
            for k, sim in sims.items():
                r = mcmc_search(
                    sim,
                    iterations=iterations,
                    seed=0,
                    starts={},
                    min_iterations=iterations,
                    branch_moves=variants[k][1],
                )
                rates[k] = max(rates.get(k, 0.0), r.iterations / r.elapsed_s)
                if k == "delta":
                    best = r
        for k in variants:
            print(f"  {k:20s} iterations / s  {rates[k]:7.1f}")
        print(f"  delta speed-up        x{rates['delta'] / rates['full']:.2f}")
        print(f"  data parallel         {best.data_parallel_cost * 1e3:.3f} ms")
        print(f"  best found            {best.best_cost * 1e3:.3f} ms  (x{best.speedup:.4f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
