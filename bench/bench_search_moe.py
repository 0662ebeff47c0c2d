"""Exhaustive strategy search for a fine-grained MoE model on one core.

DeepSeek-V3 (671B, 256 routed experts, MLA) on 2048 H800 GPUs (dgx-h100 nodes with the
h800-sxm5-80gb accelerator), global batch 15360 sequences of 4096 tokens (DeepSeek-V3
technical report, arXiv 2412.19437, sec. 4.2), context parallelism off (a 4K pretraining
run; the report uses none): every other knob free, expert parallelism and expert tensor
parallelism included (MoE parallel folding). Target (issue 14): under 30 s on one core,
enumeration included.

    python bench/bench_search_moe.py                 # the cp=1 search, timed
    python bench/bench_search_moe.py --cp-free-size  # also count the space with cp free
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from deepflow.search import SearchSpace, exhaustive_search
from deepflow.specs import scenario_from_dict

TARGET_S = 30.0
FIXES = ("cp=1",)


def deepseek_v3() -> tuple[int, float]:
    scenario = scenario_from_dict(
        {
            "model": "deepseek-v3",
            "system": {
                "preset": "dgx-h100",
                "accelerator": "h800-sxm5-80gb",
                "num_accelerators": 2048,
            },
            "training": {"global_batch_size": 15360},
        },
        name="deepseek-v3-2048",
    )
    start = time.perf_counter()
    space = SearchSpace.from_scenario(scenario, list(FIXES))
    result = exhaustive_search(space, top=3)
    wall = time.perf_counter() - start
    print(f"DeepSeek-V3 on 2048 x H800, global batch 15360, {', '.join(FIXES)}, one core")
    print(f"  configurations evaluated: {result.evaluated:,} ({result.feasible:,} feasible)")
    print("  infeasible: " + ", ".join(f"{k} {v:,}" for k, v in result.infeasible.items()))
    print(f"  evaluations per second:   {result.evaluated / wall:,.0f}")
    verdict = "ok" if wall <= TARGET_S else "OVER TARGET"
    print(f"  wall time:                {wall:.2f} s (target <= {TARGET_S:.0f} s: {verdict})")
    if result.top:
        best = result.top[0]
        s = best.strategy
        print(
            f"  best: dp{s['dp']} tp{s['tp']} pp{s['pp']} vpp{s['vpp']} ep{s['ep']} "
            f"etp{s['expert_tp'] or s['tp']} mbs{s['micro_batch_size']} zero{s['zero']} "
            f"{s['recompute']} -> {best.step_time_s:.2f} s, MFU {best.mfu:.1%}"
        )
    return result.evaluated, wall


def cp_free_size(rate: float) -> None:
    """Count the points of the same search with ``cp`` left free (one ``cp`` value at a
    time, so that the whole space is never held at once) and project its one-core wall
    time at the rate measured with ``cp=1``: the gap to the 30 s target that a pruning
    rule for ``cp`` has to close."""
    scenario = scenario_from_dict(
        {
            "model": "deepseek-v3",
            "system": {
                "preset": "dgx-h100",
                "accelerator": "h800-sxm5-80gb",
                "num_accelerators": 2048,
            },
            "training": {"global_batch_size": 15360},
        },
        name="deepseek-v3-2048",
    )
    seq = scenario.model.seq_len
    n = scenario.system.num_accelerators
    total = 0
    for cp in (d for d in range(1, n + 1) if n % d == 0):
        if cp > 1 and seq % (2 * cp):
            continue
        size = len(SearchSpace.from_scenario(scenario, [f"cp={cp}"]).columns["cp"])
        print(f"  cp={cp:<5d} {size:>12,} points")
        total += size
    print(
        f"  cp free: {total:,} points, about {total / rate:.0f} s at {rate:,.0f}/s "
        f"(target <= {TARGET_S:.0f} s)"
    )


if __name__ == "__main__":
    import sys

    evaluated, wall = deepseek_v3()
    if "--cp-free-size" in sys.argv:
        cp_free_size(evaluated / wall)
