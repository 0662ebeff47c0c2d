"""The data behind the co-design example plots (``examples/arch/plots.py``).

Each function is pure: it takes a base design and a problem (model, cluster, batch,
candidate strategies), varies one thing, evaluates every variant with its fastest strategy
of the grid (:func:`~deepflow.codesign.point.evaluate_design`) and returns rows of numbers.
Nothing here imports matplotlib or writes a file (docs/STYLE.md, practice 13).

* :func:`node_scaling`: the same die area, power and micro-architecture on each process
  node; optionally each node with its own best allocation (gradient search).
* :func:`memory_generations`: the same chip with each HBM generation.
* :func:`best_chip`: the co-design result for one budget: starting vs. best allocation.
* :func:`integration_options`: the same silicon and power density per die, integrated as
  one die per package, two dies per package, or one wafer-scale part with memory on the
  wafer.
* :func:`packaging_options`: the same per-die budget on an MCM, a CoWoS-class interposer
  and a wafer-scale mesh (scale-up group, its network and its die-to-die link set by the
  packaging; a group whose silicon exceeds the package or wafer is infeasible).

Step times are ``inf`` where no strategy of the grid is feasible (for example, the model
does not fit the memory of a variant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from deepflow.codesign.gradient import gradient_search
from deepflow.codesign.opgraph import OpGraphProblem
from deepflow.codesign.point import (
    PointResult,
    Problem,
    StrategyGrid,
    WorkloadProblem,
    evaluate_design,
)
from deepflow.codesign.space import DesignSpace
from deepflow.specs.scenario import Scenario
from deepflow.tech.design import GROUPS, DesignSpec, design_from
from deepflow.tech.library import resolve

NODES = ("n16", "n7", "n5", "n4", "n3", "n2")
HBM_GENERATIONS = ("hbm2", "hbm2e", "hbm3", "hbm3e", "hbm4")


@dataclass(frozen=True)
class Row:
    """One variant: its label, step time (s; ``inf`` if infeasible) and what set it."""

    label: str
    step_time_s: float
    peak_flops: float
    memory_bandwidth: float
    memory_capacity: float
    feasible: bool
    reason: str | None
    allocation: dict[str, dict[str, float]]
    scale_up_size: int = 0
    scale_up_bandwidth: float = 0.0  # what a ring over the scale-up group sees, bytes/s
    scale_up_latency: float = 0.0
    scale_up_link: str = ""  # the scale-up link technology (links.yaml name)

    @classmethod
    def of(cls, label: str, point: PointResult) -> Row:
        g = point.generated
        acc = g.accelerator
        return cls(
            label=label,
            step_time_s=point.step_time_s,
            peak_flops=acc.peak(g.design.power_precision),
            memory_bandwidth=acc.memory_bandwidth,
            memory_capacity=acc.memory_capacity,
            feasible=point.feasible,
            reason=point.reason,
            allocation={grp: dict(g.design.allocation.group(grp)) for grp in GROUPS},
            scale_up_size=point.system.scale_up_size,
            scale_up_bandwidth=point.system.intra_node.bandwidth,
            scale_up_latency=point.system.intra_node.latency,
            scale_up_link=g.design.technology.scale_up.name,
        )


def _variant(
    design: DesignSpec,
    label: str,
    technology: dict[str, object] | None = None,
    budget: dict[str, object] | None = None,
) -> DesignSpec:
    """``design`` with technology entries (by library name) and budget fields replaced,
    validated like a design file (a :class:`ConfigError` names the key)."""
    data = design.model_dump()
    data["technology"].update(technology or {})
    data["budget"].update(budget or {})
    return design_from(data, name=label)


def node_scaling(
    design: DesignSpec,
    problem: Problem,
    nodes: Sequence[str] = NODES,
    optimize: Sequence[str] | None = None,
    iterations: int = 10,
    seed: int = 0,
) -> list[Row]:
    """Step time of ``design`` built on each node in ``nodes`` (area, power, memory, links
    and compute unit held). With ``optimize`` (allocation fractions as ``group.key``), each
    node gets its own best allocation by a one-start gradient search of ``iterations``."""
    rows = []
    for name in nodes:
        variant = _variant(design, f"{design.name}-{name}", {"node": name})
        if optimize:
            space = DesignSpace.of(variant, list(optimize))
            point = gradient_search(space, problem, starts=1, iterations=iterations, seed=seed).best
        else:
            point = evaluate_design(variant, problem)
        rows.append(Row.of(name, point))
    return rows


def memory_generations(
    design: DesignSpec, problem: Problem, memories: Sequence[str] = HBM_GENERATIONS
) -> list[Row]:
    """Step time of ``design`` with each memory technology in ``memories`` (all else held:
    the PHY area, die edge and power shares decide how many stacks fit and run)."""
    return [
        Row.of(m, evaluate_design(_variant(design, f"{design.name}-{m}", {"memory": m}), problem))
        for m in memories
    ]


@dataclass(frozen=True)
class BestChip:
    """The co-design result: the starting and the best design found, with the step time of
    every start's end point."""

    start: Row
    best: Row
    start_times: tuple[float, ...]
    evaluations: int


def best_chip(
    design: DesignSpec,
    problem: Problem,
    vary: Sequence[str] | None = None,
    starts: int = 3,
    iterations: int = 20,
    seed: int = 0,
) -> BestChip:
    """Fastest allocation of ``design``'s area and power budgets for ``problem`` (projected
    gradient search, :mod:`deepflow.codesign.gradient`)."""
    space = DesignSpace.of(design, vary)
    result = gradient_search(space, problem, starts=starts, iterations=iterations, seed=seed)
    return BestChip(
        start=Row.of("start", evaluate_design(design, problem)),
        best=Row.of("best", result.best),
        start_times=tuple(s.time for s in result.starts),
        evaluations=sum(s.evaluations for s in result.starts),
    )


@dataclass(frozen=True)
class Integration:
    """One way to integrate the silicon: ``dies`` dies of ``die_area`` mm^2 per accelerator
    on ``packaging``, ``accelerators_per_node`` sharing the scale-up fabric."""

    label: str
    packaging: str
    dies: int
    die_area: float
    accelerators_per_node: int


def default_integrations(design: DesignSpec, wafer_dies: int = 32) -> tuple[Integration, ...]:
    """One die per package, two dies per package (CoWoS-L) and a wafer-scale part holding
    the silicon of ``wafer_dies`` dies, all of ``design``'s die size."""
    a = design.budget.die_area
    per_node = 8
    return (
        Integration("1 die / package", "cowos-s", 1, a, per_node),
        Integration("2 dies / package", "cowos-l", 2, a, per_node),
        Integration(
            f"wafer-scale ({wafer_dies} dies of silicon)", "wafer-scale", 1, a * wafer_dies, 1
        ),
    )


def integration_options(
    design: DesignSpec,
    scenario: Scenario,
    grid: StrategyGrid,
    options: Sequence[Integration] | None = None,
) -> list[Row]:
    """The same total silicon and power per mm^2 of die, integrated in different ways.

    The cluster of ``scenario`` (one ``design`` die per accelerator) is rebuilt with
    ``num_accelerators * design_dies / dies_per_accelerator`` accelerators; each variant
    keeps ``design``'s allocation fractions, its TDP and package area scale with its
    silicon, and the memory sits in the package's remaining room (for the wafer: on the
    wafer around the compute area). The grid is widened to ``tp = 1`` and ``pp = 1, 2`` so
    that a wafer-scale part can hold a whole tensor-parallel group itself."""
    options = options or default_integrations(design)
    base_silicon = design.budget.total_die_area
    watts_per_mm2 = design.budget.tdp / base_silicon
    room_per_mm2 = (design.package_area - base_silicon) / base_silicon
    wide = replace(grid, tp=tuple(sorted({1, *grid.tp})), pp=tuple(sorted({1, 2, *grid.pp})))
    system = scenario.system
    rows = []
    for opt in options:
        silicon = opt.dies * opt.die_area
        ratio = silicon / base_silicon
        count = system.num_accelerators / ratio
        if count < 1 or not math.isclose(count, round(count)):
            raise ValueError(f"{opt.label}: {silicon:g} mm2 does not divide the cluster's silicon")
        max_package = resolve("packaging", opt.packaging, "technology.packaging").max_package_area
        variant = _variant(
            design,
            opt.label,
            {"packaging": opt.packaging},
            {
                "die_area": opt.die_area,
                "dies": opt.dies,
                "tdp": watts_per_mm2 * silicon,
                "package_area": min(silicon * (1.0 + room_per_mm2), max_package),
                "die_perimeter_mm": None,
            },
        )
        per_node = min(opt.accelerators_per_node, round(count))
        sys_v = system.model_copy(
            update={
                "num_accelerators": round(count),
                "accelerators_per_node": per_node,
                "scale_up_size": per_node,
            }
        )
        problem = Problem.from_scenario(scenario.model_copy(update={"system": sys_v}), wide)
        rows.append(Row.of(opt.label, evaluate_design(variant, problem)))
    return rows


@dataclass(frozen=True)
class PackagingOption:
    """One packaging of the same per-die budget: ``packaging`` (a library name) with
    ``group`` dies in one package (or on one wafer) sharing its scale-up network; ``rings``
    are explicit rings a scale-up collective runs at once on a mesh (None: the rings of
    each candidate strategy, :func:`deepflow.codesign.packaging.strategy_rings`)."""

    label: str
    packaging: str
    group: int
    rings: tuple[tuple[int, ...], ...] | None = None


def dies_that_fit(num_dies: int, die_area: float, packaging: str) -> int:
    """The most dies of ``die_area`` mm^2 that one ``packaging`` holds (its ``max_dies`` on
    a switch, and the silicon within its ``max_package_area``) and that divide
    ``num_dies``; at least 1."""
    pkg = resolve("packaging", packaging, "technology.packaging")
    cap = int(pkg.max_package_area // die_area)
    if pkg.network == "switch":
        cap = min(cap, pkg.max_dies)
    return max((d for d in range(1, min(cap, num_dies) + 1) if num_dies % d == 0), default=1)


def default_packagings(num_dies: int, die_area: float) -> tuple[PackagingOption, ...]:
    """MCM and CoWoS-S with the most dies of ``die_area`` that one package holds
    (:func:`dies_that_fit`), a wafer-scale mesh with the most dies one wafer holds, the
    same with four explicit stride-4 rings at once (the gradient all-reduces of the replicas
    of kernel groups of four: each X edge carries four flows), and all ``num_dies`` dies on
    one wafer, which is infeasible where their silicon exceeds the wafer."""
    mcm = dies_that_fit(num_dies, die_area, "mcm")
    cowos = dies_that_fit(num_dies, die_area, "cowos-s")
    wafer = dies_that_fit(num_dies, die_area, "wafer-scale")
    options = [
        PackagingOption(f"MCM ({mcm} dies / package)", "mcm", mcm),
        PackagingOption(f"CoWoS-S ({cowos} dies / package)", "cowos-s", cowos),
        PackagingOption(f"wafer-scale mesh ({wafer} dies / wafer)", "wafer-scale", wafer),
    ]
    if wafer % 4 == 0 and wafer > 4:
        options.append(
            PackagingOption(
                f"wafer-scale mesh ({wafer} dies / wafer), 4 stride-4 rings",
                "wafer-scale",
                wafer,
                tuple(tuple(range(j, wafer, 4)) for j in range(4)),
            )
        )
    if wafer < num_dies:
        options.append(
            PackagingOption(f"wafer-scale mesh ({num_dies} dies / wafer)", "wafer-scale", num_dies)
        )
    return tuple(options)


def packaging_options(
    design: DesignSpec,
    problem: WorkloadProblem,
    options: Sequence[PackagingOption] | None = None,
) -> list[Row]:
    """The same per-die budget (die area, TDP, package area per die, allocation) on each
    packaging of ``options``: the cluster of ``problem`` keeps its dies, regrouped into
    scale-up groups of ``option.group`` dies (one package, or one wafer) wired as the
    packaging's ``network`` says (:func:`deepflow.codesign.packaging.scale_up_link`) with
    the packaging's own die-to-die ``link`` technology (``tech/data/packaging.yaml``;
    the design's own scale-up link where the packaging names none); the groups talk over
    the design's scale-out link. A group whose silicon (``group`` x die area) exceeds the
    packaging's ``max_package_area`` is infeasible, with the areas as the reason."""
    system = problem.system
    die_area = design.budget.die_area
    options = options or default_packagings(system.num_accelerators, die_area)
    rows = []
    for opt in options:
        group = min(opt.group, system.num_accelerators)
        if system.num_accelerators % group:
            raise ValueError(f"{opt.label}: {group} dies do not divide the cluster")
        pkg = resolve("packaging", opt.packaging, "technology.packaging")
        tech: dict[str, object] = {"packaging": opt.packaging}
        if pkg.link is not None:
            tech["scale_up"] = pkg.link
        variant = _variant(design, opt.label, tech)
        sys_v = system.model_copy(update={"accelerators_per_node": group, "scale_up_size": group})
        prob = replace(problem, system=sys_v, scale_up_rings=opt.rings)
        point = evaluate_design(variant, prob)
        silicon = group * die_area
        if silicon > pkg.max_package_area:
            reason = (
                f"{group} dies of {die_area:g} mm2 ({silicon:,.0f} mm2 of silicon) exceed one "
                f"{opt.packaging} package ({pkg.max_package_area:,.0f} mm2)"
            )
            point = replace(
                point, feasible=False, reason=reason, step_time_s=math.inf, energy=None,
                cost_per_step=math.inf,
            )  # fmt: skip
        rows.append(Row.of(opt.label, point))
    return rows


def fix_strategy(problem: WorkloadProblem, index: int) -> WorkloadProblem:
    """``problem`` with its candidate strategies cut to the one at ``index`` (a transformer
    grid row, or an operator-graph candidate): hardware-only optimization."""
    if isinstance(problem, Problem):
        return replace(problem, strategies=problem.strategies.take(np.array([index])))
    if isinstance(problem, OpGraphProblem):
        label = list(problem.candidates())[index]
        return replace(problem, only=label)
    raise TypeError(f"cannot fix the strategy of {type(problem).__name__}")


@dataclass(frozen=True)
class Pitfalls:
    """Step times of the cross-stack pitfalls study (CrossFlow, arXiv 2211.03309): the
    baseline (start hardware, baseline strategy), software only, hardware only, hardware
    then software, software then hardware, and joint co-design; each ``*_strategy`` names
    the strategy it ends with."""

    baseline: float
    software_only: float
    hardware_only: float
    hardware_then_software: float
    software_then_hardware: float
    joint: float
    strategies: dict[str, str]

    def gains(self) -> dict[str, float]:
        """Relative change of step time against the baseline (negative: faster)."""
        names = (
            "software_only",
            "hardware_only",
            "hardware_then_software",
            "software_then_hardware",
            "joint",
        )
        return {n: getattr(self, n) / self.baseline - 1.0 for n in names}


def pitfalls(
    design: DesignSpec,
    problem: WorkloadProblem,
    vary: Sequence[str],
    baseline_index: int = 0,
    starts: int = 2,
    iterations: int = 8,
    seed: int = 0,
) -> Pitfalls:
    """The five optimizations of the pitfalls study on one budget:

    * software only: the start hardware, the best strategy (``problem``'s candidates);
    * hardware only: the baseline strategy held, the allocation searched;
    * hardware then software: the allocation found for the baseline strategy, then the
      best strategy on it;
    * software then hardware: the best strategy on the start hardware held, then the
      allocation searched for it;
    * joint: the allocation searched with the best strategy at every point.
    """
    space = DesignSpace.of(design, list(vary))
    fixed = fix_strategy(problem, baseline_index)
    base = evaluate_design(design, fixed)
    sw = evaluate_design(design, problem)
    hw = gradient_search(space, fixed, starts=starts, iterations=iterations, seed=seed).best
    hw_sw = problem.evaluate(hw.generated)
    sw_fixed = fix_strategy(problem, sw.strategy_index)
    sw_hw = gradient_search(space, sw_fixed, starts=starts, iterations=iterations, seed=seed).best
    joint = gradient_search(space, problem, starts=starts, iterations=iterations, seed=seed).best
    d = problem.describe_strategy
    return Pitfalls(
        baseline=base.step_time_s,
        software_only=sw.step_time_s,
        hardware_only=hw.step_time_s,
        hardware_then_software=hw_sw.step_time_s,
        software_then_hardware=sw_hw.step_time_s,
        joint=joint.step_time_s,
        strategies={
            "baseline": d(baseline_index),
            "software_only": d(sw.strategy_index),
            "hardware_then_software": d(hw_sw.strategy_index),
            "software_then_hardware": d(sw.strategy_index),
            "joint": d(joint.strategy_index),
        },
    )


def allocation_sweep(
    design: DesignSpec,
    problem: WorkloadProblem,
    key: str,
    partner: str,
    fractions: Sequence[float],
) -> list[Row]:
    """Memory versus compute: ``key`` set to each of ``fractions`` with ``partner`` (same
    group) taking up the difference, so the group's sum is held."""
    grp, k = key.split(".")
    grp2, k2 = partner.split(".")
    if grp != grp2:
        raise ValueError(f"{key} and {partner} are not in one group")
    alloc = dict(design.allocation.group(grp))
    total = alloc[k] + alloc[k2]
    rows = []
    for f in fractions:
        data = design.model_dump()
        data["allocation"][grp][k] = f
        data["allocation"][grp][k2] = total - f
        variant = design_from(data, name=f"{design.name}-{k}-{f:g}")
        rows.append(Row.of(f"{key}={f:.3f}", evaluate_design(variant, problem)))
    return rows
