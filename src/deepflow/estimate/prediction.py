"""The ``Prediction`` value and the one-scenario entry point.

:func:`predict` evaluates one scenario through the same vectorized code as a batch of one,
so the two paths give identical numbers. :meth:`Prediction.to_json` produces exactly the
keys of spec/scenario.md (``deepflow predict --json``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepflow.estimate.evaluate import OOM_RULE, BatchResult, evaluate
from deepflow.network.ops import Algorithm
from deepflow.network.programs import ProgramAlgorithm
from deepflow.parallel.batch import StrategyBatch
from deepflow.parallel.feasibility import Context, explain
from deepflow.specs.scenario import Scenario
from deepflow.specs.strategy import StrategySpec
from deepflow.units import format_bytes


@dataclass(frozen=True)
class Prediction:
    """Predicted step of one scenario. Times in seconds, memory in bytes."""

    scenario: str
    feasible: bool
    reason: str | None
    step_time_s: float
    tokens_per_s: float
    model_flops_per_step: float
    hardware_flops_per_step: float
    mfu: float
    hfu: float
    peak_memory_bytes: float
    breakdown_s: dict[str, float]
    memory_bytes: dict[str, float]
    num_accelerators: int
    micro_batches: int
    peak_memory_stage: int
    time_to_train_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``predict --json`` object (spec/scenario.md), plus a few extra keys."""
        finite = self.feasible and math.isfinite(self.step_time_s)
        return {
            "scenario": self.scenario,
            "feasible": self.feasible,
            "reason": self.reason,
            "step_time_s": self.step_time_s if finite else None,
            "tokens_per_s": self.tokens_per_s if finite else 0.0,
            "model_flops_per_step": self.model_flops_per_step,
            "hardware_flops_per_step": self.hardware_flops_per_step,
            "mfu": self.mfu if finite else 0.0,
            "hfu": self.hfu if finite else 0.0,
            "peak_memory_bytes": self.peak_memory_bytes,
            "breakdown_s": self.breakdown_s if finite else {},
            "memory_bytes": self.memory_bytes,
            "num_accelerators": self.num_accelerators,
            "micro_batches": self.micro_batches,
            "time_to_train_s": self.time_to_train_s if finite else None,
        }


def time_to_train_s(tokens: float | None, tokens_per_s: float) -> float | None:
    """Wall-clock time to train on ``tokens`` tokens at ``tokens_per_s`` (the whole job's
    ``global_batch_size * seq_len / step_time_s``): ``tokens / tokens_per_s``, steady
    state, no restarts or evaluation; None without a token count or throughput."""
    if not tokens or not tokens_per_s > 0:
        return None
    return tokens / tokens_per_s


def prediction_at(
    result: BatchResult,
    i: int,
    name: str = "scenario",
    tokens: float | None = None,
    strategy: StrategySpec | None = None,
) -> Prediction:
    """The :class:`Prediction` of element ``i`` of a batch result; ``strategy`` is that
    element's spec where the caller holds it (else it is rebuilt from the batch)."""
    feasible = bool(result.feasible[i])
    reason = None
    if not feasible:
        rule = int(result.violation[i])
        strategy = result.batch.spec(i) if strategy is None else strategy
        if rule == OOM_RULE:
            need = float(result.peak_memory[i])
            cap = result.system.accelerator.memory_capacity
            reason = (
                f"out of memory on pipeline stage {int(result.peak_stage[i])} "
                f"({result.system.accelerator.name}): needs {format_bytes(need)}, "
                f"capacity {format_bytes(cap)}, over by {format_bytes(need - cap)}"
            )
        else:
            ctx = Context(result.model, result.system, result.global_batch_size)
            reason = explain(ctx, rule, strategy)
    step = float(result.step_time[i])
    # an infeasible step has no rates (its step time is infinite, its peak may be zero)
    tps, mfu, hfu = (float(r) for r in result.rates(i)) if feasible else (0.0, 0.0, 0.0)
    ttt = time_to_train_s(tokens, tps) if feasible else None
    return Prediction(
        scenario=name,
        feasible=feasible,
        reason=reason,
        step_time_s=step,
        tokens_per_s=tps,
        model_flops_per_step=float(result.model_flops),
        hardware_flops_per_step=float(result.hardware_flops[i]),
        mfu=mfu,
        hfu=hfu,
        peak_memory_bytes=float(result.peak_memory[i]),
        breakdown_s={k: float(v[i]) for k, v in result.breakdown.items()},
        memory_bytes={k: float(v[i]) for k, v in result.memory.items()},
        num_accelerators=result.system.num_accelerators,
        micro_batches=int(result.micro_batches[i]),
        peak_memory_stage=int(result.peak_stage[i]),
        time_to_train_s=ttt,
    )


def predict(
    scenario: Scenario, algorithms: Mapping[str, Algorithm | ProgramAlgorithm] | None = None
) -> Prediction:
    """Predict one training step of ``scenario`` with the closed-form evaluator.

    ``algorithms`` maps a mesh axis to the algorithm of its collectives (see
    :func:`~deepflow.estimate.evaluate.evaluate`); the command line builds it from the
    scenario's ``strategy.collective_algorithms`` files.
    """
    batch = StrategyBatch.from_specs([scenario.strategy])
    result = evaluate(
        scenario.model,
        scenario.system,
        scenario.training.global_batch_size,
        batch,
        algorithms,
    )
    return prediction_at(result, 0, scenario.name, scenario.training.tokens, scenario.strategy)
