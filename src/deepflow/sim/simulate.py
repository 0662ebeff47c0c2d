"""The simulator's entry point: a scenario -> a :class:`Simulation`.

:func:`simulate` lowers the scenario (:mod:`.lowering`), runs the graph on the executor
(:mod:`.executor`) and returns the simulated step as a
:class:`~deepflow.estimate.Prediction` with the same keys as ``predict``: the step time,
its breakdown and the quantities that follow from it (throughput, MFU, HFU, time to
train) come from the simulation; memory, FLOPs and feasibility from the closed-form
evaluator, which shares the cost models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from deepflow.errors import ConfigError
from deepflow.estimate import BREAKDOWN_KEYS, Prediction, predict
from deepflow.network.collectives import Algorithm
from deepflow.network.programs import ProgramAlgorithm
from deepflow.sim.contention import Contention, ports_of
from deepflow.sim.executor import Execution, breakdown, execute
from deepflow.sim.lowering import Lowered, lower
from deepflow.sim.schedules import Table
from deepflow.specs.scenario import Scenario

__all__ = ["MAX_LAYER_PASSES", "Simulation", "simulate"]

MAX_LAYER_PASSES = 100_000
"""Most micro-batch x layer passes one simulation runs (about five tasks each; 100,000 run
in a few seconds on one core). Above it the closed-form ``predict`` answers the question;
checked before the graph is built."""


@dataclass(frozen=True)
class Simulation:
    """A simulated step: the ``Prediction``-compatible result, the lowered graph and its
    execution (per-task start and end)."""

    prediction: Prediction
    lowered: Lowered
    execution: Execution
    critical_rank: int

    @property
    def step_time_s(self) -> float:
        return self.execution.makespan

    def rank_labels(self) -> dict[int, str]:
        """Track names for timelines: the rank and the pipeline stage it stands for."""
        return {r: f"rank {r} (pipeline stage {s})" for s, r in enumerate(self.lowered.stage_ranks)}


def simulate(
    scenario: Scenario,
    table: Table | None = None,
    algorithms: Mapping[str, Algorithm | ProgramAlgorithm] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    contention: bool = False,
) -> Simulation:
    """Simulate one training step of ``scenario`` (``table`` overrides its schedule,
    ``algorithms`` the collective algorithm of a mesh axis, as in ``predict``;
    ``on_progress(done, total)`` hears the executor's finished task count). With
    ``contention``, concurrent collectives that load the same NIC or NVLink port slow each
    other on the congestion-aware link engine (:mod:`deepflow.sim.contention`)."""
    closed = predict(scenario, algorithms)
    passes = closed.micro_batches * scenario.model.num_layers
    if passes > MAX_LAYER_PASSES:
        raise ConfigError(
            f"the simulator would run {closed.micro_batches:,} micro-batches x "
            f"{scenario.model.num_layers:,} layers = {passes:,} layer passes, above its limit "
            f"of {MAX_LAYER_PASSES:,}; use predict, or a larger micro_batch_size or dp",
            "training.global_batch_size",
        )
    lowered = lower(scenario, table, algorithms)
    links = Contention(ports_of(lowered.env)) if contention else None
    execution = execute(lowered.graph, on_progress, links)
    critical, parts = breakdown(execution, BREAKDOWN_KEYS)
    step = execution.makespan
    scale = closed.step_time_s / step if math.isfinite(closed.step_time_s) and step > 0 else 0.0
    tokens = scenario.training.global_batch_size * scenario.model.seq_len
    tps = tokens / step if step > 0 else 0.0
    ttt = scenario.training.tokens / tps if (scenario.training.tokens and tps > 0) else None
    prediction = replace(
        closed,
        step_time_s=step if closed.feasible else math.inf,
        tokens_per_s=tps if closed.feasible else 0.0,
        mfu=closed.mfu * scale,
        hfu=closed.hfu * scale,
        breakdown_s=parts,
        time_to_train_s=ttt if closed.feasible else None,
        extra={
            "evaluator": "simulator",
            "tasks": len(lowered.graph),
            "simulated_ranks": len(lowered.stage_ranks),
            "critical_rank": critical,
            "closed_form_step_time_s": closed.step_time_s,
            "contention": contention,
        },
    )
    return Simulation(prediction, lowered, execution, critical)
