"""Evaluations per second of the vectorized batch API on one core.

GPT-3 175B on 1024 A100 80GB GPUs, over a grid of strategies (tp, pp, vpp, micro-batch,
recompute, sequence parallelism, ZeRO stage, schedule); dp fills the cluster.

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


if __name__ == "__main__":
    main()
