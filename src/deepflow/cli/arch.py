"""``deepflow arch``, ``deepflow codesign`` and ``deepflow sensitivity``: technology to
hardware, hardware/software co-design, and sensitivity of step time."""

from __future__ import annotations

import math
from dataclasses import replace

import click

from deepflow.cli.app import exits_2_on_bad_input, json_text, main, quiet_option
from deepflow.codesign.budget import BudgetFile, load_budget
from deepflow.codesign.gradient import gradient_search
from deepflow.codesign.opgraph import OpGraphProblem, is_opgraph_scenario, load_opgraph_problem
from deepflow.codesign.pareto import nsga2_search
from deepflow.codesign.point import Problem, WorkloadProblem, evaluate_generated
from deepflow.codesign.sensitivity import elasticities, plot_tornado, tornado_data
from deepflow.codesign.space import DesignSpace
from deepflow.errors import ConfigError
from deepflow.report.progress import progress
from deepflow.search.mcmc import expert_strategies
from deepflow.specs import load_scenario
from deepflow.specs.scenario import Scenario
from deepflow.tech import GeneratedAccelerator, generate, load_design
from deepflow.units import format_bytes, format_si, format_time


def _arch_json(g: GeneratedAccelerator) -> dict:
    op = g.operating_point
    return {
        "feasible": g.feasible,
        "reason": g.reason,
        "accelerator": g.accelerator.model_dump(mode="json"),
        "compute_units": g.compute_units,
        "voltage_v": op.voltage,
        "frequency_hz": op.frequency,
        "active_fraction": op.active_fraction,
        "power_limit": op.limit.value,
        "memory_stacks": g.memory_stacks,
        "scale_up_lanes": g.scale_up_lanes,
        "scale_out_lanes": g.scale_out_lanes,
        "scale_up_bandwidth": g.scale_up_bandwidth,
        "scale_out_bandwidth": g.scale_out_bandwidth,
        "sram": [
            {
                "name": lv.name,
                "scope": lv.scope.value,
                "capacity_bytes": lv.capacity,
                "bandwidth": lv.bandwidth,
                "energy_per_bit_j": lv.energy_per_bit,
            }
            for lv in g.hierarchy.sram
        ],
        "energy_per_flop_j": {p.value: e for p, e in g.energy.energy_per_flop.items()},
        "static_power_w": g.energy.static_power,
        "area_mm2": g.area_mm2,
        "power_w": g.power_w,
        "notes": list(g.notes),
    }


def _arch_text(g: GeneratedAccelerator) -> str:
    a = g.accelerator
    op = g.operating_point
    lines = [
        f"{a.name}: {'feasible' if g.feasible else 'INFEASIBLE: ' + str(g.reason)}",
        f"  compute   {g.compute_units} units at {op.voltage:.3f} V, {format_si(op.frequency, 'Hz')}"
        f" ({op.limit.value}-limited, {op.active_fraction:.0%} active)",
        "  peak      "
        + ", ".join(
            f"{p} {format_si(getattr(a.peak_flops, p), 'FLOP/s')}"
            for p in ("bf16", "fp8", "tf32", "fp32")
        ),
        f"  memory    {g.memory_stacks} x {g.design.technology.memory.name}: "
        f"{format_bytes(a.memory_capacity)}, {format_si(a.memory_bandwidth, 'B/s')}",
    ]
    for lv in g.hierarchy.sram:
        lines.append(
            f"  {lv.name:<9} {format_bytes(lv.capacity)} ({lv.scope.value}), "
            f"{format_si(lv.bandwidth, 'B/s')}, {lv.energy_per_bit * 1e12:.3f} pJ/bit"
        )
    lines += [
        f"  scale-up  {g.scale_up_lanes} lanes, {format_si(g.scale_up_bandwidth, 'B/s')} per direction",
        f"  scale-out {g.scale_out_lanes} lanes, {format_si(g.scale_out_bandwidth, 'B/s')} per direction",
        f"  energy    {g.energy.energy_per_flop[g.design.power_precision] * 1e12:.3f} pJ/FLOP "
        f"({g.design.power_precision.value}), static {g.energy.static_power:.0f} W",
        "  power     "
        + ", ".join(f"{k} {v:.0f} W" for k, v in g.power_w.items())
        + f" of {a.tdp:.0f} W",
        "  area      "
        + ", ".join(f"{k} {v:.0f}" for k, v in g.area_mm2.items())
        + f" of {g.design.budget.total_die_area:.0f} mm2",
    ]
    lines += [f"  note: {n}" for n in g.notes]
    return "\n".join(lines)


@main.command("arch")
@click.argument("design", type=click.Path(dir_okay=False))
@click.option(
    "--scenario",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also evaluate the accelerator on a workload: a transformer scenario (its own "
    "strategy) or an operator-graph scenario (LSTM LM, RNNs, CNNs; its best candidate).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the derived accelerator as JSON.")
@exits_2_on_bad_input
def arch_command(design: str, scenario: str | None, as_json: bool) -> None:
    """Derive the accelerator of a DESIGN file (technology + budgets + allocation)."""
    generated = generate(load_design(design))
    point = None
    problem: WorkloadProblem | None = None
    if scenario is not None:
        if is_opgraph_scenario(scenario):
            problem = _with_experts(load_opgraph_problem(scenario))
        else:
            problem = Problem.from_scenario(load_scenario(scenario))
        point = evaluate_generated(generated, problem)
    if as_json:
        out = _arch_json(generated)
        if point is not None and problem is not None:
            out["workload"] = {
                "feasible": point.feasible,
                "reason": point.reason,
                "step_time_s": point.step_time_s if point.feasible else None,
                "strategy": problem.describe_strategy(point.strategy_index),
            }
        click.echo(json_text(out))
        return
    click.echo(_arch_text(generated))
    if point is not None and problem is not None:
        if point.feasible:
            click.echo(
                f"  workload  {format_time(point.step_time_s)} per step with "
                f"{problem.describe_strategy(point.strategy_index)}"
            )
        else:
            click.echo(f"  workload  INFEASIBLE: {point.reason}")


def workload_problem(scenario: str, budget: BudgetFile) -> WorkloadProblem:
    """A transformer scenario with the budget's strategy grid, or an operator-graph
    scenario (a file naming a ``workload``: LSTM LM, RNNs, CNNs) with its candidates and
    the search's expert strategies: the one workload interface of ``deepflow codesign``
    (and of ``examples/arch/plots.py``)."""
    if is_opgraph_scenario(scenario):
        return _with_experts(load_opgraph_problem(scenario, budget.cost))
    return Problem.from_scenario(load_scenario(scenario), budget.strategies, budget.cost)


@main.command("codesign")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--budget", "budget_path", required=True, type=click.Path(dir_okay=False))
@click.option("--objectives", default="time", show_default=True, help="time[,energy][,cost]")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
@quiet_option
@exits_2_on_bad_input
def codesign_command(
    scenario: str, budget_path: str, objectives: str, seed: int, as_json: bool, quiet: bool
) -> None:
    """Search the allocation of a BUDGET for SCENARIO's workload: gradient descent on step
    time, or NSGA-II when several objectives are given."""
    budget = load_budget(budget_path)
    names = tuple(o.strip() for o in objectives.split(",") if o.strip())
    if not names:
        raise ConfigError("give at least one objective", "--objectives")
    problem = workload_problem(scenario, budget)
    space = DesignSpace.of(budget.design, budget.search.vary, budget.search.lower)
    s = budget.search
    if names == ("time",):
        with progress("gradient search: starts", quiet) as bar:
            result = gradient_search(
                space, problem, s.starts, s.iterations, seed, on_progress=bar.update
            )
        best = result.best
        out = {
            "objective": "time",
            "starts": [
                {"time0_s": st.time0, "time_s": st.time, "evaluations": st.evaluations}
                for st in result.starts
            ],
            "best": {
                "step_time_s": best.step_time_s,
                "energy_j": best.energy_j,
                "cost_per_step": best.cost_per_step,
                "allocation": {
                    f"{g}.{k}": float(v)
                    for (g, k), v in zip(space.variables, result.best_start.x, strict=True)
                },
                "strategy": problem.describe_strategy(best.strategy_index)
                if best.feasible
                else None,
            },
        }
        if as_json:
            click.echo(json_text(out))
            return
        for i, st in enumerate(result.starts):
            click.echo(
                f"start {i}: {format_time(st.time0)} -> {format_time(st.time)} ({st.evaluations} points)"
            )
        click.echo(
            f"best: {format_time(best.step_time_s)} per step, {best.energy_j / 1e6:.3g} MJ, ${best.cost_per_step:.3g}"
        )
        for key, value in out["best"]["allocation"].items():
            click.echo(f"  {key:<26} {value:.4f}")
        click.echo(f"  strategy: {out['best']['strategy']}")
        click.echo(_arch_text(best.generated))
        return
    with progress("NSGA-II search: trials", quiet) as bar:
        pareto = nsga2_search(
            space, problem, names, s.trials, s.population, seed, on_progress=bar.update
        )
    rows = []
    for i in pareto.front:
        rows.append(
            {
                **{n: float(pareto.values[i][j]) for j, n in enumerate(names)},
                "allocation": {
                    f"{g}.{k}": float(v)
                    for (g, k), v in zip(space.variables, pareto.points[i], strict=True)
                },
            }
        )
    rows.sort(key=lambda r: r[names[0]])
    if as_json:
        click.echo(
            json_text({"objectives": list(names), "front": rows, "evaluated": len(pareto.points)})
        )
        return
    click.echo(f"non-dominated front: {len(rows)} of {len(pareto.points)} points")
    for r in rows:
        click.echo("  " + ", ".join(f"{n} {r[n]:.4g}" for n in names))


def _with_experts(problem: OpGraphProblem) -> OpGraphProblem:
    """The problem with the search's expert strategies as extra candidates."""
    s = problem.system
    experts = expert_strategies(problem.graph, s.num_accelerators, s.scale_up_size)
    return replace(problem, extra_starts=tuple(experts.items()))


def _sensitivity_scenario(path: str) -> Scenario | OpGraphProblem:
    if is_opgraph_scenario(path):
        return _with_experts(load_opgraph_problem(path))
    return load_scenario(path)


@main.command("sensitivity")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--vary", required=True, help="Comma-separated keys (system or design paths).")
@click.option("--design", "design_path", type=click.Path(dir_okay=False), default=None)
@click.option("--step", default=0.05, show_default=True, type=float)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True)
@exits_2_on_bad_input
def sensitivity_command(
    scenario: str,
    vary: str,
    design_path: str | None,
    step: float,
    plot_path: str | None,
    as_json: bool,
) -> None:
    """Elasticity d ln T / d ln x of SCENARIO's step time to each --vary key."""
    sc = _sensitivity_scenario(scenario)
    design = load_design(design_path) if design_path else None
    keys = [k.strip() for k in vary.split(",") if k.strip()]
    rows = elasticities(sc, keys, design, step)
    bars = tornado_data(rows)
    if plot_path:
        plot_tornado(bars, plot_path, step)
    if as_json:
        click.echo(
            json_text(
                [
                    {
                        k: (None if isinstance(v, float) and math.isnan(v) else v)
                        for k, v in b.items()
                    }
                    for b in bars
                ]
            )
        )
        return
    for b in bars:
        click.echo(
            f"{b['key']:<40} {float(b['elasticity']):+.3f}   ({float(b['low']):+.2%} / {float(b['high']):+.2%})"
        )
