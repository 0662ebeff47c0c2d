"""Co-design example plots for any workload (GPT-3 175B on 1024 accelerators by default).

    python examples/arch/plots.py OUT_DIR [--scenario S.yaml] [--budget B.yaml] [--fast]

``--scenario`` is a transformer scenario or an operator-graph scenario (a file naming a
``workload``: LSTM LM, RNNLM, NMT, CNNs, e.g. ``examples/crossflow/lstm-lm-64.yaml``), read
through the workload interface of ``deepflow codesign``
(:func:`deepflow.cli.arch.workload_problem`). It writes into OUT_DIR (created if missing;
nothing is written elsewhere):

* ``node_scaling.png``: step time per process node at the budget's die area and TDP, with
  the budget's allocation and with each node's own best allocation (gradient search);
* ``hbm_generations.png``: step time and memory bandwidth per HBM generation;
* ``best_chip.png``: the starting and the best allocation of area and power (co-design);
* ``integration.png`` (transformer scenarios): one die per package, two dies per package,
  and a wafer-scale part of the same silicon and power density;
* ``packaging.png`` (operator-graph scenarios): the same per-die budget on an MCM, a
  CoWoS-S interposer and a wafer-scale mesh (``examples.packaging_options``).

The numbers come from ``deepflow.codesign.examples`` (pure functions, tested); this script
only draws them and prints them as tables. Needs matplotlib (``pip install 'deepflow[plot]'``).
"""

from __future__ import annotations

import argparse
import math
import textwrap
from pathlib import Path

from deepflow.cli.arch import workload_problem
from deepflow.codesign import examples
from deepflow.codesign.budget import load_budget
from deepflow.codesign.point import Problem
from deepflow.specs import load_scenario

HERE = Path(__file__).resolve().parent


def _table(title: str, rows: list[examples.Row]) -> None:
    print(f"\n{title}")
    print(f"  {'variant':34s} {'step s':>8s} {'PFLOP/s':>8s} {'TB/s':>6s} {'GB':>6s}")
    for r in rows:
        print(
            f"  {r.label:34s} {r.step_time_s:8.3f} {r.peak_flops / 1e15:8.2f} "
            f"{r.memory_bandwidth / 1e12:6.2f} {r.memory_capacity / 1e9:6.0f}"
            + (f"  ({r.reason})" if r.reason else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the PNG files")
    parser.add_argument("--scenario", type=Path, default=HERE / "gpt3-1024.yaml")
    parser.add_argument("--budget", type=Path, default=HERE / "budget-3nm.yaml")
    parser.add_argument("--fast", action="store_true", help="fewer search iterations")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = load_budget(args.budget)
    problem = workload_problem(str(args.scenario), budget)
    name = args.scenario.stem
    design = budget.design
    vary = budget.search.vary
    iterations = 5 if args.fast else budget.search.iterations
    args.out.mkdir(parents=True, exist_ok=True)
    where = (
        f"{design.budget.total_die_area:g} mm2, {design.budget.tdp:g} W, "
        f"{design.technology.memory.name}"
    )

    # --- technology-node scaling
    fixed = examples.node_scaling(design, problem)
    best = examples.node_scaling(design, problem, optimize=vary, iterations=iterations)
    _table("node scaling, budget allocation", fixed)
    _table("node scaling, best allocation per node", best)
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [r.label for r in fixed]
    ax.plot(labels, [r.step_time_s for r in fixed], "o-", label="budget allocation")
    ax.plot(labels, [r.step_time_s for r in best], "s-", label="best allocation per node")
    ax.set_yscale("log")
    ax.set_xlabel("process node")
    ax.set_ylabel("step time (s)")
    ax.set_title(f"{name}: step time per node ({where})", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "node_scaling.png", dpi=120)
    plt.close(fig)

    # --- HBM generations
    hbm = examples.memory_generations(design, problem)
    _table("HBM generations", hbm)
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [r.label for r in hbm]
    ax.bar(labels, [r.step_time_s if math.isfinite(r.step_time_s) else 0.0 for r in hbm])
    ax.set_ylabel("step time (s)")
    ax2 = ax.twinx()
    ax2.plot(labels, [r.memory_bandwidth / 1e12 for r in hbm], "ko-")
    ax2.set_ylabel("memory bandwidth (TB/s)")
    ax.set_title(f"{name} per HBM generation ({design.technology.node.name})", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "hbm_generations.png", dpi=120)
    plt.close(fig)

    # --- the best chip for the budget
    chip = examples.best_chip(
        design, problem, vary, starts=budget.search.starts, iterations=iterations
    )
    _table("best chip (co-design)", [chip.start, chip.best])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, group in zip(axes, ("area", "power"), strict=True):
        keys = list(chip.start.allocation[group])
        xs = range(len(keys))
        ax.bar([x - 0.2 for x in xs], [chip.start.allocation[group][k] for k in keys], 0.4)
        ax.bar([x + 0.2 for x in xs], [chip.best.allocation[group][k] for k in keys], 0.4)
        ax.set_xticks(list(xs), keys, rotation=30, ha="right")
        ax.set_title(f"{group} fractions")
    axes[0].legend(
        [f"start: {chip.start.step_time_s:.2f} s", f"best: {chip.best.step_time_s:.2f} s"]
    )
    fig.suptitle(f"Best chip for {name} ({design.technology.node.name}, {where})", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "best_chip.png", dpi=120)
    plt.close(fig)

    # --- wafer-scale vs. multi-chip packages
    if isinstance(problem, Problem):
        scenario = load_scenario(args.scenario)
        integ = examples.integration_options(design, scenario, budget.strategies)
        _table("integration (same silicon and W/mm2)", integ)
        plot, title = "integration.png", f"{name}: same silicon, different integration"
    else:
        integ = examples.packaging_options(design, problem)
        _table("packaging (same per-die budget)", integ)
        plot, title = "packaging.png", f"{name}: same per-die budget, different packaging"
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(
        [textwrap.fill(r.label, 16) for r in integ],
        [r.step_time_s if math.isfinite(r.step_time_s) else 0.0 for r in integ],
    )
    ax.set_ylabel("step time (s)")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / plot, dpi=120)
    plt.close(fig)
    print(f"\nwrote 4 plots to {args.out}")


if __name__ == "__main__":
    main()
