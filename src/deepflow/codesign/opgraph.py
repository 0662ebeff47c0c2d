"""Co-design on operator-graph workloads (DeepFlow's LSTM LM, FlexFlow's CNNs and RNNs).

:class:`OpGraphProblem` is the operator-graph counterpart of
:class:`deepflow.codesign.point.Problem`: both answer ``evaluate(generated)`` with a
:class:`~deepflow.codesign.point.PointResult`, so the gradient search, NSGA-II, the
sensitivity study and the CLI take either (one workload interface).

A design point is evaluated on a fixed set of candidate per-operator strategies (data
parallelism, with kernel parallelism :func:`deepflow.sim.opstarts.kernel_parallel_start`,
and any ``extra_starts`` the caller adds, such as the expert strategies of
:func:`deepflow.search.mcmc.expert_strategies`, which the CLI passes); each is simulated on the system with the
generated accelerator (:class:`deepflow.sim.opsim.OpSimulator`, memory checked), its
matmul efficiency scaled by the hierarchical roofline of *that strategy's* per-device
GEMMs (partition shapes, kernel-split shapes), as the transformer path does per ``tp``.
The fastest feasible candidate is the point's strategy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deepflow.codesign.energy import CostSpec, StepEnergy, step_cost
from deepflow.codesign.point import PointResult, system_for
from deepflow.errors import ConfigError
from deepflow.hardware.tiling import bytes_per_flop
from deepflow.sim.kernelpar import kernel_gemms
from deepflow.sim.opsim import OpSimulator, Strategy, data_parallel, partition_gemm
from deepflow.sim.opstarts import kernel_parallel_start
from deepflow.specs import system_from
from deepflow.specs.accelerator import Precision
from deepflow.specs.base import MAX_BATCH
from deepflow.specs.files import read_config_data
from deepflow.specs.system import SystemSpec
from deepflow.tech.generator import GeneratedAccelerator
from deepflow.workload.graphs import OPGRAPH_WORKLOADS
from deepflow.workload.opgraph import OpGraph

KEYS = ("workload", "batch", "system", "precision", "kernel_parallel")


def strategy_shapes(graph: OpGraph, strategy: Strategy) -> list[tuple[float, float, float]]:
    """The per-device forward GEMM ``(m, n, k)`` of every op with a GEMM under ``strategy``
    (the partition's GEMM, further split by its kernel group; a batched GEMM's count
    multiplies its rows)."""
    out = []
    for op, cfg in zip(graph.ops, strategy, strict=True):
        if op.gemm is None:
            continue
        m, n, k, b = partition_gemm(op, cfg.degrees)
        if cfg.kernel is not None:
            m, n, k = kernel_gemms(m, n, k, cfg.kernel)[0]
        out.append((float(m * b), float(n), float(k)))
    return out


def collective_group(strategy: Strategy) -> int:
    """The innermost collective group of ``strategy``: its largest kernel group
    (``kp1 x kp2``), 1 without kernel parallelism. On a mesh packaging the scale-up rings
    follow it (:func:`deepflow.codesign.packaging.strategy_rings`)."""
    return max((cfg.group for cfg in strategy), default=1)


@dataclass(frozen=True)
class OpGraphProblem:
    """An operator-graph workload on a cluster whose accelerator a design replaces."""

    name: str
    graph: OpGraph
    system: SystemSpec
    precision: Precision = Precision.FP16
    kernel_parallel: bool = False
    cost: CostSpec = field(default_factory=CostSpec)
    extra_starts: tuple[tuple[str, Strategy], ...] = ()
    only: str | None = None
    # rings a scale-up collective runs at once on a mesh packaging (None: one ring of the
    # group in rank order; deepflow.codesign.packaging)
    scale_up_rings: tuple[tuple[int, ...], ...] | None = None

    def candidates(self) -> dict[str, Strategy]:
        n = self.system.num_accelerators
        out = {"data-parallel": data_parallel(self.graph, n)}
        out.update(dict(self.extra_starts))
        if self.kernel_parallel:
            out["kernel-parallel"] = kernel_parallel_start(self.graph, n)
        if self.only is not None:
            return {self.only: out[self.only]}
        return out

    def describe_strategy(self, index: int) -> str:
        label = list(self.candidates())[index] if index >= 0 else "none"
        return f"{label} (per-operator strategy of {self.name})"

    def evaluate(self, generated: GeneratedAccelerator) -> PointResult:
        """The fastest feasible candidate strategy on ``generated`` (module docstring)."""
        base = system_for(generated, self.system, [], self.precision, self.scale_up_rings)
        if not generated.feasible:
            return PointResult(
                generated, base, False, generated.reason, math.inf, None, math.inf, -1
            )
        if (
            self.system.num_accelerators > self.system.scale_up_size
            and (generated.design.technology.scale_out is None)
            and self.system.inter_node.bandwidth <= 0
        ):
            reason = "the cluster spans several nodes but the design has no scale-out bandwidth"
            return PointResult(generated, base, False, reason, math.inf, None, math.inf, -1)
        best: tuple[float, int, SystemSpec, Strategy, OpSimulator] | None = None
        reasons = []
        for i, strategy in enumerate(self.candidates().values()):
            shapes = strategy_shapes(self.graph, strategy)
            system = system_for(
                generated,
                self.system,
                shapes,
                self.precision,
                self.scale_up_rings,
                inner=collective_group(strategy),
            )
            sim = OpSimulator(self.graph, system, self.precision)
            res = sim.run(strategy)
            if res.infeasible:
                reasons.append((res.peak_memory_bytes, res.infeasible))
                continue
            if best is None or res.step_time_s < best[0]:
                best = (res.step_time_s, i, system, strategy, sim)
        if best is None:
            # the candidate closest to fitting says why
            reason = "no candidate strategy fits: " + (min(reasons)[1] if reasons else "none")
            return PointResult(generated, base, False, reason, math.inf, None, math.inf, -1)
        step, index, system, strategy, sim = best
        energy = self._energy(generated, system, strategy, sim, step)
        cost = step_cost(generated, system, step, energy.total, self.cost)
        return PointResult(generated, system, True, None, step, energy, cost, index)

    def _energy(
        self,
        generated: GeneratedAccelerator,
        system: SystemSpec,
        strategy: Strategy,
        sim: OpSimulator,
        step: float,
    ) -> StepEnergy:
        """The decomposition of :mod:`deepflow.codesign.energy` with the simulated step's
        FLOPs and bytes: the graph's training FLOPs, the tiled data movement of the
        strategy's GEMMs, every transferred and synchronized byte at the scale-up energy
        (scale-out when the cluster spans nodes), static power over the step."""
        e = generated.energy
        flops = self.graph.flops_step
        acc = system.accelerator
        per_flop = bytes_per_flop(
            strategy_shapes(self.graph, strategy),
            acc,
            generated.hierarchy,
            acc.peak(self.precision),
            float(self.precision.activation_bytes),
        )
        levels = {"dram": e.dram_energy_per_bit, **e.sram_energy_per_bit}
        movement = {k: flops * q * 8.0 * levels.get(k, 0.0) for k, q in per_flop.items()}
        res = sim.run(strategy)
        crosses = system.num_accelerators > system.scale_up_size
        per_bit = e.scale_out_energy_per_bit if crosses else e.scale_up_energy_per_bit
        links = 8.0 * (res.transfer_bytes + res.sync_bytes) * per_bit
        static = system.num_accelerators * e.static_power * step
        return StepEnergy(flops * e.energy_per_flop[self.precision], movement, links, static)

    def with_system(self, system: SystemSpec) -> OpGraphProblem:
        return replace(self, system=system)

    def step_time(self) -> float:
        """Step time on the problem's own system: the fastest feasible candidate (inf when
        none fits), for sensitivity studies without a design."""
        best = math.inf
        for strategy in self.candidates().values():
            sim = OpSimulator(self.graph, self.system, self.precision)
            best = min(best, sim.run(strategy).step_time_s)
        return best


def opgraph_problem_from(data: Any, cost: CostSpec | None = None) -> OpGraphProblem:
    """An :class:`OpGraphProblem` from a mapping ``{workload, batch, system, precision,
    kernel_parallel}``; bad input raises :class:`ConfigError` naming the key."""
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping", "scenario")
    for key in data:
        if key not in KEYS:
            raise ConfigError(f"unknown key; known: {', '.join(KEYS)}", str(key))
    name = data.get("workload")
    if name not in OPGRAPH_WORKLOADS:
        known = ", ".join(sorted(OPGRAPH_WORKLOADS))
        raise ConfigError(f"unknown operator-graph workload {name!r}; known: {known}", "workload")
    batch = data.get("batch", 64)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise ConfigError(f"must be an integer 1 .. {MAX_BATCH:,}, got {batch!r}", "batch")
    prec = data.get("precision", "fp16")
    try:
        precision = Precision(prec)
    except ValueError:
        known = ", ".join(p.value for p in Precision)
        raise ConfigError(f"unknown precision {prec!r}; known: {known}", "precision") from None
    kp = data.get("kernel_parallel", False)
    if not isinstance(kp, bool):
        raise ConfigError(f"must be true or false, got {kp!r}", "kernel_parallel")
    system = system_from(data.get("system", {"preset": "dgx-v100"}), "system")
    try:
        graph = OPGRAPH_WORKLOADS[name](batch)
    except ValueError as exc:
        raise ConfigError(str(exc), "batch") from None
    return OpGraphProblem(name, graph, system, precision, kp, cost or CostSpec())


def is_opgraph_scenario(path: str | Path) -> bool:
    """Whether a scenario file names an operator-graph ``workload`` (else it is a
    transformer scenario, whose reader reports a file that cannot be read or parsed)."""
    try:
        data = read_config_data(path)
    except ConfigError:
        return False
    return isinstance(data, dict) and "workload" in data


def load_opgraph_problem(path: str | Path, cost: CostSpec | None = None) -> OpGraphProblem:
    """The problem of an operator-graph scenario file (bounded UTF-8 YAML or JSON,
    :func:`deepflow.specs.files.read_config_data`)."""
    data = read_config_data(path)
    return opgraph_problem_from(data, cost)
