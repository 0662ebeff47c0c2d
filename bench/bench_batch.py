"""Evaluations per second of the vectorized batch API on one core.

GPT-3 175B on 1024 A100 80GB GPUs, over a grid of strategies (tp, pp, vpp, micro-batch,
recompute, sequence parallelism, ZeRO stage, schedule); dp fills the cluster. A second grid
exercises the sharding, pipeline-split and recompute-policy knobs: Llama 3.1 405B (126
layers, so pp 4-32 split unevenly) on 1024 H100s over tp, pp, cp, ZeRO 1/3, hybrid sharding
(shard_degree), recompute modules and partial full recompute.

    python bench/bench_batch.py
"""

from __future__ import annotations

import itertools
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from deepflow.estimate import evaluate
from deepflow.parallel import StrategyBatch
from deepflow.specs import model_from, system_from


def grid(num_accelerators: int) -> dict[str, np.ndarray]:
    rows = []
    for tp, pp, vpp, mbs, rc, sp, zero, sched in itertools.product(
        (1, 2, 4, 8, 16),
        (1, 2, 4, 8, 16, 32),
        (1, 2, 3),
        (1, 2, 4, 8),
        (0, 1, 2),
        (False, True),
        (0, 1, 2, 3),
        (1, 3),
    ):
        if num_accelerators % (tp * pp):
            continue
        rows.append((num_accelerators // (tp * pp), tp, pp, vpp, mbs, rc, sp, zero, sched))
    cols = list(zip(*rows, strict=True))
    names = (
        "dp",
        "tp",
        "pp",
        "vpp",
        "micro_batch_size",
        "recompute",
        "sequence_parallel",
        "zero",
        "pipeline_schedule",
    )
    return {name: np.array(col) for name, col in zip(names, cols, strict=True)}


def knob_grid(num_accelerators: int) -> dict[str, object]:
    """Strategies with the sharding, uneven-pipeline and recompute-policy knobs."""
    from deepflow.parallel.batch import RECOMPUTES
    from deepflow.specs.strategy import Recompute, RecomputeModule
    from deepflow.workload.recompute import module_mask

    selective, full = RECOMPUTES.index(Recompute.SELECTIVE), RECOMPUTES.index(Recompute.FULL)
    policies = (
        (0, 0, -1),
        (selective, module_mask([RecomputeModule.CORE_ATTN]), -1),
        (selective, module_mask([RecomputeModule.LAYERNORM, RecomputeModule.MLP]), -1),
        (full, 0, 2),
        (full, 0, -1),
    )
    rows = []
    for tp, pp, vpp, cp, zero, shard, mbs, (rc, mask, layers) in itertools.product(
        (2, 4, 8), (1, 4, 8, 16, 32), (1, 2), (1, 2), (1, 3), (0, 8), (1, 2, 4), policies
    ):
        if num_accelerators % (tp * pp * cp):
            continue
        dp = num_accelerators // (tp * pp * cp)
        if shard and (dp * cp) % shard:
            continue
        rows.append((dp, tp, pp, vpp, cp, zero, shard, mbs, rc, mask, layers))
    cols = list(zip(*rows, strict=True))
    names = (
        "dp", "tp", "pp", "vpp", "cp", "zero", "shard_degree", "micro_batch_size", "recompute",
        "recompute_modules", "recompute_layers",
    )  # fmt: skip
    out: dict[str, object] = {name: np.array(col) for name, col in zip(names, cols, strict=True)}
    out["sequence_parallel"] = True
    return out


def rate(model: str, system: dict, gbs: int, batch: StrategyBatch, label: str) -> None:
    m, sysm = model_from(model), system_from(system)
    evaluate(m, sysm, gbs, batch.take(np.arange(16)))  # warm caches
    repeats = 5
    start = time.perf_counter()
    for _ in range(repeats):
        result = evaluate(m, sysm, gbs, batch)
    elapsed = (time.perf_counter() - start) / repeats
    print(f"[{label}] strategies per call: {len(batch)}, feasible: {int(result.feasible.sum())}")
    print(f"[{label}] evaluations per second (one core): {len(batch) / elapsed:,.0f}")


def main() -> None:
    model = model_from("gpt3-175b")
    system = system_from({"preset": "dgx-a100-80gb", "num_accelerators": 1024})
    batch = StrategyBatch.from_arrays(**grid(1024))
    evaluate(model, system, 1536, batch.take(np.arange(16)))  # warm caches
    repeats = 5
    start = time.perf_counter()
    for _ in range(repeats):
        result = evaluate(model, system, 1536, batch)
    elapsed = (time.perf_counter() - start) / repeats
    print(f"strategies per call: {len(batch)}")
    print(f"feasible: {int(result.feasible.sum())}")
    print(f"wall time per call: {elapsed * 1e3:.1f} ms")
    print(f"evaluations per second (one core): {len(batch) / elapsed:,.0f}")
    best = int(np.argmin(result.step_time))
    print(f"fastest: {batch.spec(best)} -> {result.step_time[best]:.2f} s")
    knobs = StrategyBatch.from_arrays(**knob_grid(1024))
    rate(
        "llama3.1-405b", {"preset": "dgx-h100", "num_accelerators": 1024}, 2048, knobs,
        "sharding, uneven pipelines, recompute policies",
    )  # fmt: skip


if __name__ == "__main__":
    main()
