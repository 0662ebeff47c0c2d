"""One-at-a-time predictions per second on one core (``deepflow.predict``), as an optimizer
loop calls it: a different strategy each call, so nothing is served from a result cache.

GPT-3 175B on 1,024 A100 80GB (examples/gpt3-175b-a100.yaml) over a cycle of distinct
strategies (tp, pp, micro-batch, recompute); CPU time of this process, so that other load
on the machine does not count.

    python bench/bench_predict.py [--calls N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import deepflow
from deepflow.specs import Scenario

ROOT = Path(__file__).parents[1]


def strategies(scenario: Scenario, count: int) -> list[Scenario]:
    """``count`` scenarios with distinct strategies (dp fills the cluster)."""
    out = []
    n = scenario.system.num_accelerators
    grid = itertools.product((1, 2, 4, 8), (1, 2, 4, 8, 16), (1, 2), ("none", "selective", "full"))
    for tp, pp, mbs, rc in itertools.islice(itertools.cycle(grid), count):
        strategy = scenario.strategy.replace(
            tp=tp, pp=pp, dp=n // (tp * pp), micro_batch_size=mbs, recompute=rc
        )
        out.append(Scenario.model_construct(**{**dict(scenario), "strategy": strategy}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=600)
    args = parser.parse_args()
    base = deepflow.load_scenario(ROOT / "examples" / "gpt3-175b-a100.yaml")
    points = strategies(base, args.calls)
    deepflow.predict(points[0])  # imports and one-time tables
    start = time.process_time()
    for scenario in points:
        deepflow.predict(scenario)
    elapsed = time.process_time() - start
    print(
        f"deepflow.predict: {args.calls / elapsed:,.0f} predictions/s on one core "
        f"({elapsed / args.calls * 1e3:.2f} ms each, {args.calls} distinct strategies)"
    )


if __name__ == "__main__":
    main()
