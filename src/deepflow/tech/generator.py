"""The micro-architecture generator: technology + budgets + allocation -> accelerator.

The derivation follows CrossFlow's architecture generator (DeepFlow ``hw_component.py``;
reference ``crossflow-deepflow.md`` sec. 2) with its defects removed (sec. 8):

* **Compute.** ``N = floor(A_compute * logic_density / transistors_per_unit)`` units (the
  paper's "mcu bundles", here SM-like units), at most ``limits.compute_units``. Voltage and
  frequency are solved against the compute power budget with the alpha-power law
  (Sakurai & Newton 1990, IEEE JSSC 25(2), eq. 10: gate delay ~ C V / (V - Vt)^alpha), so

      f(V) = f_n * [(V - Vt)^alpha / V] / [(V_n - Vt)^alpha / V_n]
      P(V) = P_n * (V / V_n)^2 * f(V) / f_n  +  leak * P_n * V / V_n

  (dynamic power C V^2 f; static power I_leak V with the leakage current held at its
  nominal value, Kim et al. 2003, IEEE Computer 36(12), "Leakage current: Moore's law meets
  static power"). ``P(V)`` increases strictly on ``V > Vt``, so the root is unique there and
  is found by bisection on ``[V_min, V_max]``; the public code took the first root of a cubic
  from ``np.roots``, which can lie below ``Vt`` (reference sec. 8.6). A budget below
  ``P(V_min)`` runs at ``V_min`` with only ``P_budget / P(V_min)`` of the units active (power
  gating); a budget above ``P(V_max)`` leaves power unused at ``V_max``.
* **SRAM levels.** Capacity = ``A_level * sram_density * density_factor / 8``; bandwidth is the lesser of the
  banks' ports (``banks * bank_width * f``) and the SRAM power budget divided by the energy
  per byte (DeepFlow: "bandwidth is power-limited"). Energy per bit = array energy at the
  operating voltage plus global-wire energy over half the array's side (access energy grows
  with array size; Horowitz, ISSCC 2014, Fig. 1.1.9).
* **Memory.** Stacks = the least of package room ``(A_pkg - A_dies) / footprint``, die edge
  ``perimeter * share / shoreline`` and PHY area ``A_mc / phy_area`` (reference sec. 2,
  "HBM"); bandwidth = stacks * pins * pin rate, at most the memory power budget (less the
  stacks' static power) over the energy per byte.
* **Links.** Lanes = the least of die edge ``perimeter * share * lanes_per_mm`` and area
  ``A_link / area_per_lane``; bandwidth per direction = lanes * lane rate, at most the link
  power budget over the energy of both directions.

Everything is in deepflow's internal units (bytes, seconds, FLOP/s, watts, joules; mm^2 and
mm on the die). The result is a :class:`GeneratedAccelerator`, whose ``accelerator`` is an
ordinary :class:`~deepflow.specs.AcceleratorSpec` usable wherever a preset is, and whose
``hierarchy`` and ``energy`` carry what the spec does not (SRAM levels, energies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from deepflow.specs.accelerator import AcceleratorSpec, PeakFlops, Precision
from deepflow.tech.design import DesignSpec
from deepflow.tech.library import LinkTechnology, ProcessNode, SramScope


class PowerLimit(str, Enum):
    """What fixed the compute voltage."""

    BUDGET = "budget"  # the power budget (the usual case)
    MAX_VOLTAGE = "max_voltage"  # the budget allows more than V_max draws
    MIN_VOLTAGE = "min_voltage"  # the budget is below the draw at V_min: units gated


@dataclass(frozen=True)
class OperatingPoint:
    """Solved compute voltage (V), clock (Hz), the share of units that can be active and
    the compute power drawn at full rate (W)."""

    voltage: float
    frequency: float
    active_fraction: float
    power: float
    limit: PowerLimit


@dataclass(frozen=True)
class SramLevel:
    """One generated SRAM level. ``capacity`` and ``bandwidth`` are totals over all
    instances (one per unit, or one per chip); ``instance_capacity`` is one instance's."""

    name: str
    scope: SramScope
    capacity: float
    instance_capacity: float
    instances: int
    bandwidth: float
    energy_per_bit: float


@dataclass(frozen=True)
class MemoryHierarchy:
    """SRAM levels innermost first, then the off-chip memory."""

    sram: tuple[SramLevel, ...]
    dram_capacity: float
    dram_bandwidth: float
    dram_energy_per_bit: float

    def level(self, name: str) -> SramLevel:
        for level in self.sram:
            if level.name == name:
                return level
        raise KeyError(name)


@dataclass(frozen=True)
class EnergyModel:
    """Energies at the operating point: per FLOP by precision, per bit moved at each level
    and over each link class, and the static power of the chip with its memory (W)."""

    energy_per_flop: dict[Precision, float]
    sram_energy_per_bit: dict[str, float]
    dram_energy_per_bit: float
    scale_up_energy_per_bit: float
    scale_out_energy_per_bit: float
    static_power: float


@dataclass(frozen=True)
class GeneratedAccelerator:
    """The generator's result. ``feasible`` is False with a ``reason`` when the budgets
    leave a required component empty (no compute unit, no memory stack): an infeasible
    design point is a result, not an error (docs/DESIGN.md, "Principles")."""

    design: DesignSpec
    accelerator: AcceleratorSpec
    hierarchy: MemoryHierarchy
    energy: EnergyModel
    operating_point: OperatingPoint
    compute_units: int
    memory_stacks: int
    scale_up_lanes: int
    scale_out_lanes: int
    scale_up_bandwidth: float
    scale_out_bandwidth: float
    area_mm2: dict[str, float]
    power_w: dict[str, float]
    feasible: bool
    reason: str | None = None
    notes: tuple[str, ...] = field(default=())


def alpha_frequency(node: ProcessNode, voltage: float) -> float:
    """Clock at ``voltage`` by the alpha-power law (Sakurai & Newton 1990, eq. 10)."""
    vt, vn, a = node.threshold_voltage, node.nominal_voltage, node.alpha
    return node.nominal_frequency * ((voltage - vt) ** a / voltage) / ((vn - vt) ** a / vn)


def compute_power(node: ProcessNode, nominal_dynamic: float, voltage: float) -> float:
    """Compute power at ``voltage`` given the dynamic power at nominal voltage and clock:
    ``C V^2 f`` plus leakage ``I_leak V`` (module docstring)."""
    vn = node.nominal_voltage
    f_ratio = alpha_frequency(node, voltage) / node.nominal_frequency
    dynamic = nominal_dynamic * (voltage / vn) ** 2 * f_ratio
    return dynamic + node.leakage_fraction * nominal_dynamic * voltage / vn


def solve_operating_point(
    node: ProcessNode, nominal_dynamic: float, budget: float
) -> OperatingPoint:
    """Voltage and clock at which the compute draws ``budget`` watts.

    ``P(V)`` is strictly increasing on ``(Vt, inf)`` (both ``V^2 f(V) ~ V (V-Vt)^alpha`` and
    ``V`` are), so bisection on ``[V_min, V_max]`` finds the one root above threshold, to
    1e-12 V in 60 halvings."""
    lo, hi = node.min_voltage, node.max_voltage
    if nominal_dynamic <= 0 or budget <= 0:
        return OperatingPoint(lo, alpha_frequency(node, lo), 0.0, 0.0, PowerLimit.MIN_VOLTAGE)
    p_lo = compute_power(node, nominal_dynamic, lo)
    if budget <= p_lo:
        return OperatingPoint(
            lo, alpha_frequency(node, lo), budget / p_lo, budget, PowerLimit.MIN_VOLTAGE
        )
    p_hi = compute_power(node, nominal_dynamic, hi)
    if budget >= p_hi:
        return OperatingPoint(hi, alpha_frequency(node, hi), 1.0, p_hi, PowerLimit.MAX_VOLTAGE)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if compute_power(node, nominal_dynamic, mid) > budget:
            hi = mid
        else:
            lo = mid
    v = 0.5 * (lo + hi)
    assert v > node.threshold_voltage
    return OperatingPoint(v, alpha_frequency(node, v), 1.0, budget, PowerLimit.BUDGET)


def _links(
    tech: LinkTechnology | None,
    area: float,
    edge_mm: float,
    power: float,
    cap: int | None,
) -> tuple[int, float, float]:
    """Lanes, bandwidth per direction (bytes/s) and power drawn (W) of one link class."""
    if tech is None:
        return 0, 0.0, 0.0
    lanes = math.floor(min(edge_mm * tech.lanes_per_mm, area / tech.area_per_lane) + 1e-9)
    if cap is not None:
        lanes = min(lanes, cap)
    lanes = max(lanes, 0)
    peak = lanes * tech.lane_rate
    # both directions burn energy: 2 x bandwidth x 8 bits x energy per bit
    per_byte_both = 2.0 * 8.0 * tech.energy_per_bit
    bandwidth = min(peak, power / per_byte_both) if per_byte_both > 0 else peak
    return lanes, bandwidth, bandwidth * per_byte_both


def generate(design: DesignSpec) -> GeneratedAccelerator:
    """Derive the accelerator of ``design`` (see the module docstring for every formula)."""
    tech = design.technology
    node = tech.node
    unit = design.compute_unit
    budget = design.budget
    area = design.allocation.group("area")
    power = design.allocation.group("power")
    edge = design.allocation.group("perimeter")
    die = budget.total_die_area
    perimeter = budget.perimeter_mm
    tdp = budget.tdp
    notes: list[str] = []
    reason: str | None = None

    # --- compute units and their operating point
    a_compute = area.get("compute", 0.0) * die
    units = math.floor(a_compute * node.logic_density / unit.transistors + 1e-9)
    if design.limits.compute_units is not None:
        units = min(units, design.limits.compute_units)
    prec = design.power_precision
    rate_nominal = units * unit.flops_per_cycle.at(prec) * node.nominal_frequency
    p_nominal = rate_nominal * node.energy_per_flop.at(prec)
    p_compute = power.get("compute", 0.0) * tdp
    op = solve_operating_point(node, p_nominal, p_compute)
    if op.limit is PowerLimit.MIN_VOLTAGE and units > 0:
        notes.append(
            f"compute power budget {p_compute:.0f} W is below the draw at V_min; "
            f"{op.active_fraction:.0%} of the units can be active"
        )
    v_scale = (op.voltage / node.nominal_voltage) ** 2
    clock = op.frequency
    peaks = {p: units * unit.flops_per_cycle.at(p) * clock * op.active_fraction for p in Precision}
    if units < 1:
        reason = f"allocation.area.compute: {a_compute:.1f} mm2 holds no {unit.name} unit"

    # --- SRAM levels, innermost first
    levels: list[SramLevel] = []
    demand = []
    for tmpl in unit.sram:
        a_level = area.get(tmpl.name, 0.0) * die
        capacity = a_level * node.sram_density * tmpl.density_factor / 8.0
        instances = max(units, 1) if tmpl.scope is SramScope.UNIT else 1
        banks = math.floor(capacity / tmpl.bank_capacity + 1e-9)
        ports = banks * tmpl.bank_width * clock
        side_mm = math.sqrt(a_level / instances) if a_level > 0 else 0.0
        e_bit = node.sram_energy_per_bit * v_scale + node.wire_energy_per_bit_mm * side_mm / 2.0
        levels.append(
            SramLevel(
                tmpl.name, tmpl.scope, capacity, capacity / instances, instances, ports, e_bit
            )
        )
        demand.append(ports * 8.0 * e_bit)
    p_sram_budget = power.get("sram", 0.0) * tdp
    total_demand = sum(demand)
    sram_scale = min(1.0, p_sram_budget / total_demand) if total_demand > 0 else 1.0
    levels = [
        SramLevel(
            lv.name,
            lv.scope,
            lv.capacity,
            lv.instance_capacity,
            lv.instances,
            lv.bandwidth * sram_scale,
            lv.energy_per_bit,
        )
        for lv in levels
    ]

    # --- off-chip memory
    mem = tech.memory
    a_mc = area.get("memory_controller", 0.0) * die
    room = max(0.0, design.package_area - die)
    stacks = math.floor(
        min(
            room / mem.footprint,
            perimeter * edge.get("memory", 0.0) / mem.shoreline_mm,
            a_mc / mem.phy_area,
        )
        + 1e-9
    )
    if design.limits.memory_stacks is not None:
        stacks = min(stacks, design.limits.memory_stacks)
    stacks = max(stacks, 0)
    p_mem = power.get("memory", 0.0) * tdp
    static_mem = stacks * mem.static_power
    dram_bw = min(stacks * mem.bandwidth, max(0.0, p_mem - static_mem) / (8.0 * mem.energy_per_bit))
    if stacks < 1 and reason is None:
        reason = (
            f"no {mem.name} stack fits: package room {room:.0f} mm2, "
            f"memory edge {perimeter * edge.get('memory', 0.0):.1f} mm, PHY area {a_mc:.1f} mm2"
        )
    elif dram_bw <= 0 and reason is None:
        reason = f"allocation.power.memory: {p_mem:.1f} W does not cover static {static_mem:.1f} W"

    # --- links
    up_lanes, up_bw, up_power = _links(
        tech.scale_up,
        area.get("scale_up", 0.0) * die,
        perimeter * edge.get("scale_up", 0.0),
        power.get("scale_up", 0.0) * tdp,
        design.limits.scale_up_lanes,
    )
    out_lanes, out_bw, out_power = _links(
        tech.scale_out,
        area.get("scale_out", 0.0) * die,
        perimeter * edge.get("scale_out", 0.0),
        power.get("scale_out", 0.0) * tdp,
        design.limits.scale_out_lanes,
    )

    static = node.leakage_fraction * p_nominal * op.voltage / node.nominal_voltage + static_mem
    energy = EnergyModel(
        energy_per_flop={p: node.energy_per_flop.at(p) * v_scale for p in Precision},
        sram_energy_per_bit={lv.name: lv.energy_per_bit for lv in levels},
        dram_energy_per_bit=mem.energy_per_bit,
        scale_up_energy_per_bit=tech.scale_up.energy_per_bit,
        scale_out_energy_per_bit=tech.scale_out.energy_per_bit if tech.scale_out else 0.0,
        static_power=static,
    )
    hierarchy = MemoryHierarchy(
        sram=tuple(levels),
        dram_capacity=stacks * mem.capacity,
        dram_bandwidth=dram_bw,
        dram_energy_per_bit=mem.energy_per_bit,
    )
    chip_levels = [lv.capacity for lv in levels if lv.scope is SramScope.CHIP]
    accelerator = AcceleratorSpec(
        name=design.name,
        vendor="generated",
        peak_flops=PeakFlops(**{p.value: peaks[p] for p in Precision}),
        memory_capacity=hierarchy.dram_capacity,
        memory_bandwidth=dram_bw,
        scale_up_bandwidth=up_bw,
        tdp=tdp,
        compute_units=max(units, 1),
        l2_cache=max(chip_levels, default=0.0),
        efficiency=design.efficiency,
        sources=(
            f"generated by deepflow.tech.generator from {node.name}, {mem.name}, "
            f"{unit.name}, {budget.die_area:g} mm2 x {budget.dies}, {tdp:g} W",
            *design.sources,
        ),
    )
    used_area = {
        "compute": a_compute,
        **{lv.name: area.get(lv.name, 0.0) * die for lv in levels},
        "memory_controller": a_mc,
        "scale_up": area.get("scale_up", 0.0) * die,
        "scale_out": area.get("scale_out", 0.0) * die,
    }
    used_power = {
        "compute": op.power,
        "sram": min(p_sram_budget, total_demand),
        "memory": static_mem + dram_bw * 8.0 * mem.energy_per_bit,
        "scale_up": up_power,
        "scale_out": out_power,
    }
    return GeneratedAccelerator(
        design=design,
        accelerator=accelerator,
        hierarchy=hierarchy,
        energy=energy,
        operating_point=op,
        compute_units=units,
        memory_stacks=stacks,
        scale_up_lanes=up_lanes,
        scale_out_lanes=out_lanes,
        scale_up_bandwidth=up_bw,
        scale_out_bandwidth=out_bw,
        area_mm2=used_area,
        power_w=used_power,
        feasible=reason is None,
        reason=reason,
        notes=tuple(notes),
    )
