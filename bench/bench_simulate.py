"""Wall time and memory of simulating the largest published jobs (issue 4 targets).

* GPT-3 175B on 1024 A100s, tp 8, pp 16, 64 micro-batches: at most 2 s;
* Llama 3.1 405B on 16,384 H100s, tp 8, cp 1, pp 16, dp 128 (Llama Team 2024,
  arXiv 2407.21783, Table 4: 16M-token batches of 8K sequences): at most 10 s, 2 GB.

With link contention (``simulate --contention``, issue 15): the same Llama 3.1 405B step in
at most 30 s; communication tasks then cross their rank's NIC or NVLink port chunk by chunk
on the congestion-aware link engine (:mod:`deepflow.sim.contention`).

Identical ranks are simulated once (one per pipeline stage), so the cost grows with
pipeline stages x micro-batches x layers per stage, not with the number of GPUs.

Llama 3.1 405B has 126 layers, which 16 stages do not divide: both evaluators lay it out
as Llama 3 did, one layer fewer on the first and the last stage
(:mod:`deepflow.parallel.pipeline_split`).

Run: ``python bench/bench_simulate.py``.
"""

from __future__ import annotations

import resource
import time
import tracemalloc

from deepflow.sim import simulate
from deepflow.specs import scenario_from_dict

CASES = {
    "gpt3-175b / 1024 GPUs / tp8 pp16 / 64 micro-batches": (
        {
            "model": "gpt3-175b",
            "system": {"preset": "dgx-a100-80gb", "num_accelerators": 1024},
            "strategy": {
                "tp": 8,
                "pp": 16,
                "sequence_parallel": True,
                "recompute": "selective",
                "micro_batch_size": 1,
            },
            "training": {"global_batch_size": 512},  # dp 8 x 64 micro-batches
        },
        2.0,
    ),
    "llama3.1-405b / 16384 GPUs / tp8 cp1 pp16 dp128": (
        {
            "model": "llama3.1-405b",
            "system": {"preset": "dgx-h100", "num_accelerators": 16384},
            "strategy": {
                "tp": 8,
                "cp": 1,
                "pp": 16,
                "sequence_parallel": True,
                "micro_batch_size": 1,
                # without both the stages need 82-117 GiB of an 80 GiB H100 (infeasible)
                "zero": 1,
                "recompute": "full",
            },
            "training": {"global_batch_size": 2048},  # 16M tokens of 8K sequences
        },
        10.0,
    ),
}


def main() -> None:
    for name, (doc, target) in CASES.items():
        scenario = scenario_from_dict(doc)
        t0 = time.perf_counter()
        sim = simulate(scenario)
        wall = time.perf_counter() - t0
        tracemalloc.start()  # a second run, traced, for the memory peak (tracing is slow)
        simulate(scenario)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        ok = "ok" if wall <= target else "SLOW"
        closed = sim.prediction.extra["closed_form_step_time_s"]
        print(
            f"{name}: {wall:.2f} s (target {target:.0f} s, {ok}), "
            f"{len(sim.lowered.graph)} tasks on {len(sim.lowered.stage_ranks)} simulated ranks, "
            f"{sim.lowered.micro_batches} micro-batches, step {sim.step_time_s:.2f} s "
            f"(closed form {closed:.2f} s), peak traced memory {peak / 1e6:.0f} MB"
        )
    for name, (doc, _) in CASES.items():
        scenario = scenario_from_dict(doc)
        free = simulate(scenario).step_time_s
        t0 = time.perf_counter()
        sim = simulate(scenario, contention=True)
        wall = time.perf_counter() - t0
        ok = "ok" if wall <= 30.0 else "SLOW"
        print(
            f"{name}, --contention: {wall:.2f} s (target 30 s, {ok}), step "
            f"{sim.step_time_s:.3f} s ({sim.step_time_s / free - 1:+.2%} against no contention)"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print(f"max resident set size of the process: {rss:.0f} MB (target 2 GB)")


if __name__ == "__main__":
    main()
