"""One hardware design point, evaluated with its best parallelization strategy.

:func:`evaluate_design` generates the accelerator of a design (``deepflow.tech``), carries
its SRAM hierarchy into the closed-form evaluator through the hierarchical-roofline
efficiency of the workload's GEMMs (``deepflow.hardware.tiling``), puts it into the
scenario's cluster with the generated link bandwidths, evaluates a whole grid of strategies
in one vectorized call (``deepflow.estimate.evaluate``) and keeps the fastest feasible one.
Nothing is written to disk (the public DeepFlow code wrote and parsed files per evaluation,
reference sec. 8.9).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from deepflow.codesign.energy import CostSpec, StepEnergy, step_cost, step_energy
from deepflow.codesign.packaging import scale_up_link
from deepflow.errors import ConfigError
from deepflow.estimate import evaluate
from deepflow.estimate.evaluate import BatchResult
from deepflow.hardware.tiling import tiled_matmul_efficiency
from deepflow.parallel import StrategyBatch
from deepflow.specs.accelerator import Precision
from deepflow.specs.model import ModelSpec
from deepflow.specs.scenario import Scenario
from deepflow.specs.system import SystemSpec
from deepflow.tech.design import DesignSpec
from deepflow.tech.generator import GeneratedAccelerator, generate
from deepflow.workload.operators import Gemm, Shard
from deepflow.workload.transformer import layer_template


@dataclass(frozen=True)
class StrategyGrid:
    """Candidate strategies; ``dp`` fills the cluster. Each knob is a list of values."""

    tp: tuple[int, ...] = (1, 2, 4, 8)
    pp: tuple[int, ...] = (1, 2, 4, 8, 16)
    micro_batch_size: tuple[int, ...] = (1, 2)
    recompute: tuple[str, ...] = ("selective", "full")
    zero: tuple[int, ...] = (0, 1)
    precision: str = "bf16"

    def batch(self, num_accelerators: int) -> StrategyBatch:
        rows = [
            (num_accelerators // (tp * pp), tp, pp, mbs, rc, z)
            for tp, pp, mbs, rc, z in itertools.product(
                self.tp, self.pp, self.micro_batch_size, self.recompute, self.zero
            )
            if num_accelerators % (tp * pp) == 0
        ]
        if not rows:
            raise ConfigError(
                f"no tp*pp of the grid (tp {list(self.tp)}, pp {list(self.pp)}) divides "
                f"num_accelerators={num_accelerators}",
                "strategies",
            )
        cols = list(zip(*rows, strict=True))
        return StrategyBatch.from_arrays(
            dp=np.array(cols[0]),
            tp=np.array(cols[1]),
            pp=np.array(cols[2]),
            micro_batch_size=np.array(cols[3]),
            recompute=list(cols[4]),
            zero=np.array(cols[5]),
            sequence_parallel=np.array(cols[1]) > 1,
            precision=[self.precision] * len(rows),
        )


@dataclass(frozen=True)
class Problem:
    """What a design point is evaluated on: a model, a cluster (whose accelerator and link
    bandwidths the design replaces), a global batch, candidate strategies, costs."""

    model: ModelSpec
    system: SystemSpec
    global_batch_size: int
    strategies: StrategyBatch
    tokens: float | None = None
    cost: CostSpec = field(default_factory=CostSpec)
    precision: Precision = Precision.BF16
    # rings a scale-up collective runs at once on a mesh packaging (None: one ring of the
    # group in rank order; deepflow.codesign.packaging)
    scale_up_rings: tuple[tuple[int, ...], ...] | None = None

    @classmethod
    def from_scenario(
        cls,
        scenario: Scenario,
        grid: StrategyGrid | None = None,
        cost: CostSpec | None = None,
    ) -> Problem:
        """The scenario's own strategy (``grid=None``), or a grid of strategies."""
        batch = (
            StrategyBatch.from_specs([scenario.strategy])
            if grid is None
            else grid.batch(scenario.system.num_accelerators)
        )
        return cls(
            model=scenario.model,
            system=scenario.system,
            global_batch_size=scenario.training.global_batch_size,
            strategies=batch,
            tokens=scenario.training.tokens,
            cost=cost or CostSpec(),
            precision=scenario.strategy.precision,
        )

    def evaluate(self, generated: GeneratedAccelerator) -> PointResult:
        return _evaluate_transformer(generated, self)

    def describe_strategy(self, index: int) -> str:
        return str(self.strategies.spec(index)) if index >= 0 else "none"

    def gemm_shapes(self, tp: int = 1) -> list[tuple[float, float, float]]:
        """The dense layer's GEMMs for one sequence at tensor-parallel degree ``tp``: the
        shapes that set the hierarchical-roofline efficiency of a design."""
        rows = float(self.model.seq_len)
        shapes = []
        for op in layer_template(self.model, moe=False).ops:
            if isinstance(op, Gemm):
                k = op.k / tp if op.shard is Shard.ROW else op.k
                n = op.n / tp if op.shard is Shard.COLUMN else op.n
                shapes.append((rows * op.tokens_factor, float(n), float(k)))
        return shapes


@dataclass(frozen=True)
class PointResult:
    """A design point with its best strategy. ``step_time_s`` is ``inf`` when infeasible."""

    generated: GeneratedAccelerator
    system: SystemSpec
    feasible: bool
    reason: str | None
    step_time_s: float
    energy: StepEnergy | None
    cost_per_step: float
    strategy_index: int

    @property
    def energy_j(self) -> float:
        return self.energy.total if self.energy is not None else math.inf

    def objective(self, name: str) -> float:
        """``time`` (s), ``energy`` (J) or ``cost`` (USD) per step."""
        if not self.feasible:
            return math.inf
        return {"time": self.step_time_s, "energy": self.energy_j, "cost": self.cost_per_step}[name]


def matmul_factor(
    generated: GeneratedAccelerator,
    shapes: Sequence[tuple[float, float, float]],
    precision: Precision = Precision.BF16,
) -> float:
    """The hierarchical-roofline efficiency of ``shapes`` on ``generated``
    (:func:`deepflow.hardware.tiling.tiled_matmul_efficiency`); 1 where the design has no
    compute or no DRAM bandwidth to tile against."""
    acc = generated.accelerator
    peak = acc.peak(precision)
    if peak > 0 and generated.hierarchy.dram_bandwidth > 0:
        elem = float(precision.activation_bytes)
        return tiled_matmul_efficiency(shapes, acc, generated.hierarchy, peak, elem)
    return 1.0


def system_for(
    generated: GeneratedAccelerator,
    system: SystemSpec,
    shapes: Sequence[tuple[float, float, float]],
    precision: Precision = Precision.BF16,
    rings: Sequence[Sequence[int]] | None = None,
    factor: float | None = None,
    inner: int = 1,
) -> SystemSpec:
    """``system`` with the generated accelerator, its matmul efficiency scaled by the
    hierarchical-roofline efficiency of ``shapes`` (:func:`matmul_factor`, or ``factor``
    where given), and the generated link bandwidths (scale-out only where the design has a
    scale-out link); the scale-up link is the one the packaging gives the scale-up group
    (:func:`deepflow.codesign.packaging.scale_up_link`: unchanged on a switch, split over
    mesh ports and derated on a wafer mesh by ``rings``, or by the rings of a strategy whose
    innermost collective group has ``inner`` ranks)."""
    acc = generated.accelerator
    if factor is None:
        factor = matmul_factor(generated, shapes, precision)
    eff = acc.efficiency.model_copy(update={"matmul": acc.efficiency.matmul * factor})
    acc = acc.model_copy(update={"efficiency": eff})
    tech = generated.design.technology
    intra = scale_up_link(
        tech.packaging,
        system.intra_node,
        generated.scale_up_bandwidth,
        system.scale_up_size,
        tech.scale_up.latency,
        rings,
        inner,
    )
    inter = system.inter_node
    if generated.design.technology.scale_out is not None:
        inter = inter.model_copy(update={"bandwidth": generated.scale_out_bandwidth})
    return system.model_copy(update={"accelerator": acc, "intra_node": intra, "inter_node": inter})


class WorkloadProblem(Protocol):
    """What a design point can be evaluated on: a transformer :class:`Problem` or an
    operator-graph problem (:class:`deepflow.codesign.opgraph.OpGraphProblem`)."""

    system: SystemSpec
    precision: Precision

    def evaluate(self, generated: GeneratedAccelerator) -> PointResult: ...

    def describe_strategy(self, index: int) -> str: ...


def evaluate_generated(generated: GeneratedAccelerator, problem: WorkloadProblem) -> PointResult:
    """Evaluate a generated accelerator on ``problem`` with its fastest feasible strategy."""
    if not isinstance(problem, Problem):
        return problem.evaluate(generated)
    return _evaluate_transformer(generated, problem)


def _evaluate_transformer(generated: GeneratedAccelerator, problem: Problem) -> PointResult:
    """Evaluate a generated accelerator on a transformer ``problem``.

    The hierarchical-roofline efficiency depends on the GEMM shapes each device runs, and
    those shrink with the tensor-parallel degree (``Problem.gemm_shapes(tp)``: the column
    split divides ``n``, the row split ``k``, as in Megatron-LM's ``ColumnParallelLinear`` /
    ``RowParallelLinear``). Each strategy's GEMMs therefore run at the factor of its own
    ``tp`` (:func:`matmul_factor`, one tiling per distinct ``tp``), and the whole grid is
    evaluated in one vectorized call that takes these factors per strategy
    (``evaluate(..., matmul_scale=...)``, which multiplies the GEMM curve's peak-achievable
    fraction exactly as :func:`system_for` scales ``efficiency.matmul``). On a mesh
    packaging the scale-up link also depends on ``tp`` (its rings,
    :func:`deepflow.codesign.packaging.strategy_rings`), so there is one call per ``tp``.
    The result equals evaluating each ``tp`` group on its own :func:`system_for` system
    (``tests/tech/test_codesign.py``); ties go to the smaller ``tp``, then the earlier
    strategy."""
    rings = problem.scale_up_rings
    tps = np.asarray(problem.strategies.tp)
    unique = sorted({int(t) for t in tps}) or [1]
    # on a mesh packaging the scale-up link follows each strategy's tp groups (packaging.py)
    mesh = generated.design.technology.packaging.network == "mesh" and rings is None

    def link_key(tp: int) -> int:
        return tp if mesh else 1

    if not generated.feasible:
        shapes = problem.gemm_shapes(unique[0])
        system = system_for(
            generated, problem.system, shapes, problem.precision, rings, None, link_key(unique[0])
        )
        return PointResult(generated, system, False, generated.reason, math.inf, None, math.inf, -1)
    factors = {
        tp: matmul_factor(generated, problem.gemm_shapes(tp), problem.precision) for tp in unique
    }

    def system_of(tp: int, factor: float | None = None) -> SystemSpec:
        f = factors[tp] if factor is None else factor
        return system_for(generated, problem.system, [], problem.precision, rings, f, link_key(tp))

    first = system_of(unique[0])
    if first.num_accelerators > first.scale_up_size and first.inter_node.bandwidth <= 0:
        reason = "the cluster spans several nodes but the design has no scale-out bandwidth"
        return PointResult(generated, first, False, reason, math.inf, None, math.inf, -1)
    scale = np.array([factors[int(t)] for t in tps], dtype=np.float64)
    keys = np.array([link_key(int(t)) for t in tps])
    times = np.full(len(tps), np.inf)
    results: dict[int, tuple[BatchResult, np.ndarray]] = {}
    # one vectorized call per scale-up link: one call on a switch, one per tp on a mesh
    for key in sorted(set(keys.tolist())):
        index = np.flatnonzero(keys == key)
        base = system_of(key if mesh else unique[0], factor=1.0)
        sub = problem.strategies if len(index) == len(tps) else problem.strategies.take(index)
        result = evaluate(
            problem.model, base, problem.global_batch_size, sub, matmul_scale=scale[index]
        )
        times[index] = np.where(result.feasible, result.step_time, np.inf)
        results[key] = (result, index)
    order = np.lexsort((np.arange(len(tps)), tps))  # by tp, then by position
    best_index = int(order[int(np.argmin(times[order]))]) if len(tps) else -1
    if best_index < 0 or not math.isfinite(float(times[best_index])):
        return PointResult(
            generated,
            first,
            False,
            "no feasible strategy in the grid",
            math.inf,
            None,
            math.inf,
            -1,
        )
    best_tp = int(tps[best_index])
    system = system_of(best_tp)
    best_step = float(times[best_index])
    result, index = results[link_key(best_tp)]
    j = int(np.flatnonzero(index == best_index)[0])
    on_system = dataclasses.replace(result, system=system)
    shapes = problem.gemm_shapes(best_tp)
    energy = step_energy(generated, on_system, j, shapes, problem.precision)
    cost = step_cost(generated, system, best_step, energy.total, problem.cost)
    return PointResult(generated, system, True, None, best_step, energy, cost, best_index)


def evaluate_design(design: DesignSpec, problem: WorkloadProblem) -> PointResult:
    """Generate ``design`` and evaluate it on ``problem`` (module docstring)."""
    return evaluate_generated(generate(design), problem)
