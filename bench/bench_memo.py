"""Median time of each memo lookup of a warm one-strategy ``evaluate``, on one core.

GPT-3 175B on 1,024 A100 80GB (examples/gpt3-175b-a100.yaml) over the 120 strategies of
``bench_predict.py``, every memo filled first (one pass of ``deepflow.predict``): for each
strategy, a fresh batch and environment (``StrategyBatch.from_specs`` and ``Env.build``,
as ``evaluate`` builds them), then the part costs' and step inputs' lookups sharing one
dict of codes (:data:`deepflow.estimate.evaluate.PART_COSTS`, ``STEP_INPUTS``), and the
stage state's and step-level times' lookups (``STAGE_STATE``, ``STEP_TIMES``) on the
arguments the pass gave them; ``time.perf_counter`` around each call, every call a hit.

    python bench/bench_memo.py [--rounds N]
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench_predict import strategies

import deepflow
from deepflow.estimate.context import Env
from deepflow.parallel.batch import StrategyBatch

ROOT = Path(__file__).parents[1]
evaluation = importlib.import_module("deepflow.estimate.evaluate")


class _Recording:
    """A memo that records the arguments of its calls."""

    def __init__(self, memo: object) -> None:
        self.memo, self.calls = memo, []

    def __call__(self, *args: object) -> object:
        self.calls.append(args)
        return self.memo(*args)  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="passes over the strategies")
    args = parser.parse_args()
    base = deepflow.load_scenario(ROOT / "examples" / "gpt3-175b-a100.yaml")
    points = strategies(base, 120)
    state, times = evaluation.STAGE_STATE, evaluation.STEP_TIMES
    evaluation.STAGE_STATE, evaluation.STEP_TIMES = _Recording(state), _Recording(times)
    try:
        for scenario in points:
            deepflow.predict(scenario)
        state_args = evaluation.STAGE_STATE.calls
        times_args = evaluation.STEP_TIMES.calls
    finally:
        evaluation.STAGE_STATE, evaluation.STEP_TIMES = state, times
    model, system = base.model, base.system
    batch_size = base.training.global_batch_size
    clock = time.perf_counter
    took: dict[str, list[float]] = {"part costs": [], "step inputs": [], "stage state": []}
    took["step-level times"] = []
    for _ in range(args.rounds):
        for scenario in points:
            batch = StrategyBatch.from_specs([scenario.strategy])
            env = Env.build(model, system, batch, batch_size)
            seen: dict[str, object] = {}
            start = clock()
            evaluation.PART_COSTS(env, seen)
            middle = clock()
            evaluation.STEP_INPUTS(env, seen)
            took["part costs"].append(middle - start)
            took["step inputs"].append(clock() - middle)
        for memo, calls, name in (
            (state, state_args, "stage state"),
            (times, times_args, "step-level times"),
        ):
            for call in calls:
                start = clock()
                memo(*call)
                took[name].append(clock() - start)
    total = 0.0
    for name, seconds in took.items():
        median = statistics.median(seconds) * 1e6
        total += median
        print(f"{name:17s} median {median:6.2f} us ({len(seconds)} lookups)")
    print(f"{'sum of medians':17s}        {total:6.2f} us per call")


if __name__ == "__main__":
    main()
