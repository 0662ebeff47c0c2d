"""Hardware design points evaluated per second, each with its best strategy.

GPT-3 175B on 1024 accelerators; each point generates an accelerator from the 3 nm budget
of ``examples/arch/budget-3nm.yaml`` with a random allocation, applies the hierarchical
roofline, and evaluates the budget's strategy grid in one vectorized call.

    python bench/bench_codesign.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from deepflow.codesign.budget import load_budget
from deepflow.codesign.point import Problem, evaluate_design
from deepflow.codesign.space import DesignSpace
from deepflow.specs import load_scenario

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "arch"


def main() -> None:
    scenario = load_scenario(EXAMPLES / "gpt3-1024.yaml")
    budget = load_budget(EXAMPLES / "budget-3nm.yaml")
    problem = Problem.from_scenario(scenario, budget.strategies, budget.cost)
    space = DesignSpace.of(budget.design, budget.search.vary)
    rng = np.random.default_rng(0)
    points = [space.random(rng) for _ in range(200)]
    evaluate_design(space.design(points[0]), problem)  # warm caches
    start = time.perf_counter()
    feasible = sum(evaluate_design(space.design(x), problem).feasible for x in points)
    elapsed = time.perf_counter() - start
    print(f"strategies per design point: {len(problem.strategies)}")
    print(f"design points: {len(points)} ({feasible} feasible)")
    print(f"design points per second (one core): {len(points) / elapsed:,.1f}")
    print(
        f"strategy evaluations per second: {len(points) * len(problem.strategies) / elapsed:,.0f}"
    )


if __name__ == "__main__":
    main()
