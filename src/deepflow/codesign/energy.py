"""Energy and cost of a training step on a generated accelerator.

Energy per step of the whole cluster (the decomposition of Horowitz, ISSCC 2014, and of
DeepFlow's ``energy.py`` intent; reference sec. 8.10):

    E = F_hw e_flop                                  operations
      + sum_levels F_hw (Q_level / F) 8 e_level      on-chip and DRAM data movement
      + B_up 8 e_up + B_out 8 e_out                  link traffic
      + N P_static T                                 static power over the step

``F_hw`` is the step's hardware FLOPs (with recomputation); ``Q_level / F`` the bytes each
level moves per GEMM FLOP under the hierarchical tiling (:mod:`deepflow.hardware.tiling`).
Link bytes are the exposed communication time times the link bandwidth per accelerator
(an upper bound where a transfer is latency-bound) plus the data-parallel gradient
all-reduce volume ``2 (dp - 1) / dp`` of the gradients per rank (ring all-reduce,
Patarasuk & Yuan 2009, J. Parallel Distrib. Comput. 69(2)). Memory-bound (elementwise)
kernels' DRAM traffic is not counted: a lower bound on data-movement energy.

Cost per step = accelerator-hours x price per accelerator-hour + facility energy x
electricity price; the price per hour is the system's ``price_per_accelerator_hour`` when
set, else the accelerator's bill of materials (:mod:`deepflow.tech.cost`) times a markup,
amortized over its service life.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deepflow.estimate import BatchResult
from deepflow.hardware.tiling import bytes_per_flop
from deepflow.specs.accelerator import Precision
from deepflow.specs.system import SystemSpec
from deepflow.tech.cost import accelerator_cost
from deepflow.tech.generator import GeneratedAccelerator
from deepflow.workload.transformer import parameter_count

HOURS_PER_YEAR = 8766.0


@dataclass(frozen=True)
class CostSpec:
    """Prices. ``price_per_accelerator_hour`` overrides the bill-of-materials price.
    Defaults are estimates: a 3x markup over the bill of materials, 4 years of service,
    0.10 USD/kWh, PUE 1.2."""

    price_per_accelerator_hour: float | None = None
    markup: float = 3.0
    service_years: float = 4.0
    electricity_per_kwh: float = 0.10
    pue: float = 1.2
    stack_price: float = 300.0
    package_price: float = 1000.0


@dataclass(frozen=True)
class StepEnergy:
    """Energy of one step of the cluster by part (J)."""

    compute: float
    data_movement: dict[str, float]
    links: float
    static: float

    @property
    def total(self) -> float:
        return self.compute + sum(self.data_movement.values()) + self.links + self.static

    def as_dict(self) -> dict[str, float]:
        return {
            "compute": self.compute,
            **{f"move_{k}": v for k, v in self.data_movement.items()},
            "links": self.links,
            "static": self.static,
            "total": self.total,
        }


def step_energy(
    generated: GeneratedAccelerator,
    result: BatchResult,
    i: int,
    shapes: Sequence[tuple[float, float, float]],
    precision: Precision = Precision.BF16,
) -> StepEnergy:
    """Energy of strategy ``i`` of ``result`` (module docstring)."""
    acc = result.system.accelerator
    e = generated.energy
    flops = float(result.hardware_flops[i])
    compute = flops * e.energy_per_flop[precision]
    peak = acc.peak(precision)
    per_flop = bytes_per_flop(
        shapes, acc, generated.hierarchy, peak, float(precision.activation_bytes)
    )
    level_energy = {"dram": e.dram_energy_per_bit, **e.sram_energy_per_bit}
    movement = {name: flops * q * 8.0 * level_energy.get(name, 0.0) for name, q in per_flop.items()}
    system = result.system
    n = system.num_accelerators
    b = result.batch
    comm = sum(float(result.breakdown[k][i]) for k in ("tp_comm", "cp_comm", "ep_comm", "pp_comm"))
    up_bytes = comm * system.intra_node.bandwidth * n
    dp = int(b.dp[i])
    params_rank = parameter_count(result.model).total / (int(b.tp[i]) * int(b.pp[i]))
    grad_bytes = 2.0 * (dp - 1) / dp * params_rank * 2.0 * n
    crosses = n > system.scale_up_size
    out_bytes = grad_bytes if crosses else 0.0
    up_bytes += 0.0 if crosses else grad_bytes
    links = 8.0 * (up_bytes * e.scale_up_energy_per_bit + out_bytes * e.scale_out_energy_per_bit)
    static = n * e.static_power * float(result.step_time[i])
    return StepEnergy(compute, movement, links, static)


def price_per_hour(generated: GeneratedAccelerator, cost: CostSpec) -> float:
    """Price of one accelerator-hour (USD) from its bill of materials (module docstring)."""
    if cost.price_per_accelerator_hour is not None:
        return cost.price_per_accelerator_hour
    design = generated.design
    node = design.technology.node
    bom = accelerator_cost(
        design.budget.die_area,
        design.budget.dies,
        node.wafer_price,
        node.defect_density,
        generated.memory_stacks,
        cost.stack_price,
        cost.package_price,
    )
    return bom * cost.markup / (cost.service_years * HOURS_PER_YEAR)


def step_cost(
    generated: GeneratedAccelerator,
    system: SystemSpec,
    step_time_s: float,
    energy_j: float,
    cost: CostSpec,
) -> float:
    """Cost of one step of the cluster (USD): accelerator-hours plus facility energy."""
    hourly = cost.price_per_accelerator_hour
    if hourly is None:
        hourly = system.price_per_accelerator_hour or price_per_hour(generated, cost)
    hours = system.num_accelerators * step_time_s / 3600.0
    kwh = energy_j * cost.pue / 3.6e6
    return hours * hourly + kwh * cost.electricity_per_kwh


def time_to_train(step_time_s: float, tokens: float, tokens_per_step: float) -> float:
    """Seconds to train on ``tokens`` at ``tokens_per_step`` per step."""
    return step_time_s * tokens / tokens_per_step
