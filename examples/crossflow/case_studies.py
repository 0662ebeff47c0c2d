"""CrossFlow/DeepFlow case studies on operator-graph workloads.

    python examples/crossflow/case_studies.py OUT_DIR [--budget B.yaml] [--studies a,b]

writes into OUT_DIR (created if missing; nothing is written elsewhere) a table
(``*.md``) and a plot (``*.png``) per study, and ``results.json`` with every number:

* ``node_scaling``: DeepFlow's LSTM LM (B 4096, S 20, D 19968, V 800k; 64 accelerators,
  CR/RC kernel parallelism, memory checked) on the budget's design built on each node
  from 16/12 nm to 1 nm (n1 is a labelled projection);
* ``hbm_generations``: the same with HBM1 .. HBM4;
* ``packaging``: the same per-die budget on an MCM, a CoWoS-S interposer and a wafer-scale
  mesh, each with the most dies one package (wafer) holds and its own die-to-die link
  (``tech/data/packaging.yaml`` ``link``), the LSTM LM on 64 devices (scale-up groups, their
  network and their rings set by the packaging and the strategy); 64 dies on one wafer
  are reported infeasible (their silicon exceeds the wafer);
* ``memory_vs_compute``: die area moved between compute and the memory controllers;
* ``best_hardware``: the best allocation of the budget for the RNNLM (gradient search);
* ``pitfalls``: software only, hardware only, hardware then software, software then
  hardware, and joint co-design, on AlexNet and the RNNLM (8 accelerators), with the
  scale-up links' area and power also searched.

The numbers come from ``deepflow.codesign.examples`` (pure functions, tested); this script
only draws them and prints them. Needs matplotlib (``pip install 'deepflow[plot]'``).
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from dataclasses import asdict, replace
from pathlib import Path

from deepflow.codesign import examples
from deepflow.codesign.budget import load_budget
from deepflow.codesign.opgraph import OpGraphProblem, load_opgraph_problem
from deepflow.search.mcmc import expert_strategies

HERE = Path(__file__).resolve().parent
NODES = ("n16", "n10", "n7", "n5", "n4", "n3", "n2", "n1")
HBMS = ("hbm1", "hbm2", "hbm2e", "hbm3", "hbm3e", "hbm4")
MEMORY_AREA = (0.03, 0.06, 0.09, 0.12, 0.15, 0.20)
# the pitfalls study also lets the search move area and power to the scale-up links, so that
# the hardware can favour communication-heavy or compute-heavy strategies
STUDIES = (
    "node_scaling",
    "hbm_generations",
    "packaging",
    "memory_vs_compute",
    "best_hardware",
    "pitfalls",
)
PITFALLS_VARY = (
    "area.compute",
    "area.memory_controller",
    "area.scale_up",
    "power.compute",
    "power.memory",
    "power.scale_up",
)


def problem(name: str) -> OpGraphProblem:
    p = load_opgraph_problem(HERE / name)
    s = p.system
    experts = expert_strategies(p.graph, s.num_accelerators, s.scale_up_size)
    return replace(p, extra_starts=tuple(experts.items()))


def rows_table(title: str, rows: list[examples.Row]) -> str:
    lines = [f"### {title}", "", "| variant | step (s) | bf16 PFLOP/s | TB/s | GB | note |"]
    lines.append("|---|---:|---:|---:|---:|---|")
    for r in rows:
        step = f"{r.step_time_s:.3f}" if math.isfinite(r.step_time_s) else "infeasible"
        lines.append(
            f"| {r.label} | {step} | {r.peak_flops / 1e15:.2f} | "
            f"{r.memory_bandwidth / 1e12:.2f} | {r.memory_capacity / 1e9:.0f} | {r.reason or ''} |"
        )
    return "\n".join(lines) + "\n"


def packaging_table(title: str, rows: list[examples.Row]) -> str:
    """The rows with the scale-up group, its link technology, the link a ring over it sees
    (for the chosen strategy's rings), and why a variant is infeasible."""
    lines = [
        f"### {title}",
        "",
        "| variant | step (s) | group | link | scale-up GB/s | latency (us) | note |",
    ]
    lines.append("|---|---:|---:|---|---:|---:|---|")
    for r in rows:
        step = f"{r.step_time_s:.3f}" if math.isfinite(r.step_time_s) else "infeasible"
        lines.append(
            f"| {r.label} | {step} | {r.scale_up_size} | {r.scale_up_link} | "
            f"{r.scale_up_bandwidth / 1e9:.1f} | {r.scale_up_latency * 1e6:.2f} | "
            f"{r.reason or ''} |"
        )
    return "\n".join(lines) + "\n"


def bar_plot(plt, path: Path, labels: list[str], values: list[float], ylabel: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(
        [textwrap.fill(label, 18) for label in labels],
        [v if math.isfinite(v) else 0.0 for v in values],
    )
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the tables and plots")
    parser.add_argument("--budget", type=Path, default=HERE / "budget-4nm.yaml")
    parser.add_argument(
        "--studies", default=",".join(STUDIES), help=f"comma-separated subset of {STUDIES}"
    )
    args = parser.parse_args()
    studies = set(args.studies.split(","))
    if not studies <= set(STUDIES):
        parser.error(f"--studies: unknown {sorted(studies - set(STUDIES))}; known: {STUDIES}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    budget = load_budget(args.budget)
    design = budget.design
    s = budget.search
    lstm = problem("lstm-lm-64.yaml")
    results: dict[str, object] = {}

    sweeps = {
        "node_scaling": (
            lambda: examples.node_scaling(design, lstm, NODES),
            "LSTM LM, 64 accelerators: process node",
        ),
        "hbm_generations": (
            lambda: examples.memory_generations(design, lstm, HBMS),
            "LSTM LM, 64 accelerators: HBM generation",
        ),
        "packaging": (
            lambda: examples.packaging_options(design, lstm),
            "LSTM LM, 64 dies: packaging (same per-die budget)",
        ),
        "memory_vs_compute": (
            lambda: examples.allocation_sweep(
                design, lstm, "area.memory_controller", "area.compute", MEMORY_AREA
            ),
            "LSTM LM, 64 accelerators: memory-controller area",
        ),
    }
    for name, (run, title) in sweeps.items():
        if name not in studies:
            continue
        rows = run()
        table = packaging_table if name == "packaging" else rows_table
        (out / f"{name}.md").write_text(table(title, rows))
        bar_plot(
            plt,
            out / f"{name}.png",
            [r.label for r in rows],
            [r.step_time_s for r in rows],
            "step time (s)",
        )
        results[name] = [asdict(r) for r in rows]
        print(table(title, rows))

    if "best_hardware" in studies:
        rnnlm = problem("rnnlm-8.yaml")
        best = examples.best_chip(design, rnnlm, s.vary, s.starts, s.iterations, seed=0)
        rows = [best.start, best.best]
        text = rows_table("RNNLM, 8 accelerators: best hardware for the budget", rows)
        text += "\n| group.key | start | best |\n|---|---:|---:|\n"
        for grp, vals in best.best.allocation.items():
            for k, v in vals.items():
                text += f"| {grp}.{k} | {best.start.allocation[grp][k]:.3f} | {v:.3f} |\n"
        (out / "best_hardware.md").write_text(text)
        bar_plot(
            plt,
            out / "best_hardware.png",
            ["start", "best"],
            [best.start.step_time_s, best.best.step_time_s],
            "step time (s)",
        )
        results["best_hardware"] = {
            "start": asdict(best.start),
            "best": asdict(best.best),
            "evaluations": best.evaluations,
        }
        print(text)

    if "pitfalls" in studies:
        lines = ["### Cross-stack pitfalls (change of step time against the baseline)", ""]
        lines.append(
            "| workload | baseline (s) | software only | hardware only | HW then SW "
            "| SW then HW | joint | HW-then-SW vs joint | SW-then-HW vs joint |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        fig, ax = plt.subplots(figsize=(8, 3.5))
        pit: dict[str, object] = {}
        for i, name in enumerate(("alexnet-8.yaml", "rnnlm-8.yaml")):
            p = examples.pitfalls(
                design, problem(name), PITFALLS_VARY, 0, s.starts, s.iterations, 0
            )
            g = p.gains()
            gap_hs = p.hardware_then_software / p.joint - 1.0
            gap_sh = p.software_then_hardware / p.joint - 1.0
            lines.append(
                f"| {name.removesuffix('.yaml')} | {p.baseline:.5f} | {g['software_only']:+.1%} | "
                f"{g['hardware_only']:+.1%} | {g['hardware_then_software']:+.1%} | "
                f"{g['software_then_hardware']:+.1%} | {g['joint']:+.1%} | {gap_hs:+.2%} | {gap_sh:+.2%} |"
            )
            keys = list(g)
            ax.bar(
                [x + 0.4 * i for x in range(len(keys))],
                [100 * g[k] for k in keys],
                0.4,
                label=name.removesuffix(".yaml"),
            )
            ax.set_xticks([x + 0.2 for x in range(len(keys))], keys, fontsize=7)
            pit[name] = {
                **asdict(p),
                "gains": g,
                "gap_hw_then_sw": gap_hs,
                "gap_sw_then_hw": gap_sh,
            }
        ax.set_ylabel("change of step time (%)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "pitfalls.png")
        plt.close(fig)
        text = "\n".join(lines) + "\n"
        (out / "pitfalls.md").write_text(text)
        results["pitfalls"] = pit
        print(text)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
