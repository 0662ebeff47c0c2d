"""``deepflow plan-hetero`` and ``deepflow elastic``: virtual-node planning (VirtualFlow,
Or et al., MLSys 2022, arXiv 2009.09523).

``plan-hetero CLUSTER.yaml`` prints each pool's per-VN time and memory, the even split, the
optimal equal-VN plan (Form A), the per-device-batch plan (Form B) and the throughput gain
over the even split. ``elastic TIMELINE.yaml`` prints the job completion time with a fixed
number of virtual nodes and with restarts at a new batch size, phase by phase, and with
``--plot`` draws the progress of both (matplotlib, the ``plot`` extra).
"""

from __future__ import annotations

import math

import click

from deepflow.cli.app import exits_2_on_bad_input, json_text, main
from deepflow.errors import ConfigError
from deepflow.report.text import add_columns, compact_table, make_console, styled
from deepflow.units import format_bytes, format_time
from deepflow.virtual.cluster import POLICIES, load_cluster_trace, simulate_cluster
from deepflow.virtual.elastic import elastic_jct, load_timeline, plot_progress
from deepflow.virtual.hetero import Plan, compare, load_cluster


def _units(plan: Plan) -> str:
    parts = []
    for pool in plan.units:
        values = sorted(set(pool), reverse=True)
        parts.append("/".join(str(v) for v in values) if pool else "-")
    return ", ".join(parts)


@main.command("plan-hetero")
@click.argument("cluster", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@exits_2_on_bad_input
def plan_hetero(cluster: str, as_json: bool) -> None:
    """Assign virtual nodes to a heterogeneous CLUSTER and compare with the even split."""
    result = compare(load_cluster(cluster))
    if as_json:
        click.echo(json_text(result.to_json(), indent=2))
        return
    c = result.cluster
    console = make_console()
    pools = compact_table(f"{c.name}: B={c.global_batch_size}, V={c.virtual_nodes}, s={c.vn_batch}")
    add_columns(
        pools,
        (
            "pool",
            "accelerator",
            "replicas",
            "per-VN time",
            "per-step extra",
            "peak mem",
            "capacity",
        ),
        text=("pool", "accelerator"),
    )
    for p in result.profiles:
        pools.add_row(
            p.pool.name,
            p.pool.system.accelerator.name,
            str(p.replicas),
            format_time(p.vn_time_s),
            format_time(p.overhead_s),
            format_bytes(p.peak_memory_bytes),
            format_bytes(p.pool.system.accelerator.memory_capacity),
        )
    console.print(pools)
    for p in result.profiles:
        if not p.feasible:
            console.print(styled(p.pool.name, "red", f": {p.reason}"))
    plans = compact_table("plans (units per replica, by pool: VNs, or samples for form B)")
    add_columns(
        plans,
        ("plan", "units per replica", "compute", "all-reduce", "step time", "samples/s", "gain"),
        text=("plan", "units per replica"),
    )
    for label, plan, gain in (
        ("even split", result.even, None),
        ("form A (equal VNs)", result.form_a, result.gain),
        ("form B (per-device batch)", result.form_b, result.gain_b),
    ):
        finite = plan.feasible
        plans.add_row(
            label,
            _units(plan),
            format_time(plan.compute_s) if finite else "-",
            format_time(plan.allreduce_s) if finite else "-",
            format_time(plan.step_time_s) if finite else "infeasible",
            f"{plan.samples_per_s:,.1f}",
            "" if gain is None else (f"{gain:+.1%}" if math.isfinite(gain) else str(gain)),
        )
    console.print(plans)
    if not result.even.feasible:
        console.print(f"even split infeasible: {result.even.reason}")
    console.print(
        f"throughput gain of the plan over the even split: {_percent(result.gain)} "
        f"(form B: {_percent(result.gain_b)})"
    )


def _percent(gain: float) -> str:
    """A gain as a signed percentage; "n/a" where no plan is feasible (0/0), "inf" where
    only the plan is."""
    if math.isnan(gain):
        return "n/a (no feasible plan)"
    if math.isinf(gain):
        return "unbounded (the even split is infeasible)"
    return f"{gain:+.1%}"


@main.command("elastic")
@click.argument("timeline", type=click.Path(dir_okay=False), required=False)
@click.option(
    "--cluster",
    "cluster_path",
    type=click.Path(dir_okay=False),
    help="A cluster trace of jobs: elastic (VirtualFlow) vs static scheduling.",
)
@click.option("--seed", type=int, default=None, help="Seed of a generated trace (--cluster).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a progress plot.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@exits_2_on_bad_input
def elastic(
    timeline: str | None,
    cluster_path: str | None,
    seed: int | None,
    plot_path: str | None,
    as_json: bool,
) -> None:
    """Job completion time on an accelerator TIMELINE (fixed virtual nodes vs new batch),
    or of a trace of jobs on a cluster (--cluster JOBS.yaml: elastic vs static)."""
    if (timeline is None) == (cluster_path is None):
        raise ConfigError("give a TIMELINE file or --cluster JOBS.yaml (one of them)", "elastic")
    if cluster_path is not None:
        if plot_path:
            raise ConfigError("plots are for a single-job timeline", "--plot")
        if seed is not None and seed < 0:
            raise ConfigError(f"expected an integer >= 0 (got {seed})", "--seed")
        _cluster(cluster_path, seed, as_json)
        return
    if seed is not None:
        raise ConfigError("a seed is for a generated cluster trace (--cluster)", "--seed")
    assert timeline is not None
    job, entries, model = load_timeline(timeline)
    result = elastic_jct(job, entries, model)
    if plot_path:
        plot_progress(result, plot_path)
    if as_json:
        click.echo(json_text(result.to_json(), indent=2))
        return
    console = make_console()
    table = compact_table(
        f"{job.steps} steps of B={job.global_batch_size}, V={job.virtual_nodes}, "
        f"designed for {job.demand} replicas"
    )
    add_columns(
        table,
        ("mode", "start", "end", "GPUs", "replicas", "batch", "step time", "resize", "steps"),
        text=("mode",),
    )
    for row in result.table():
        table.add_row(
            row["mode"],
            format_time(row["start_s"]) if row["start_s"] else "0",
            format_time(row["end_s"]),
            str(row["accelerators"]),
            str(row["replicas"]),
            str(row["global_batch_size"]),
            format_time(row["step_time_s"]) if row["replicas"] else "-",
            format_time(row["resize_s"]) if row["resize_s"] else "-",
            f"{row['steps']:,.1f}",
        )
    console.print(table)
    for mode, jct in result.jct_s.items():
        steps = result.steps[mode]
        note = (
            "" if mode == "virtual_nodes" else " (global batch changes: other training semantics)"
        )
        if mode in result.reasons:
            note += f"; never finishes: {result.reasons[mode]}"
        console.print(f"{mode}: JCT {format_time(jct)}, {steps:,.1f} optimizer steps{note}")
    if plot_path:
        console.print(f"plot written to {plot_path}")


def _cluster(path: str, seed: int | None, as_json: bool) -> None:
    trace = load_cluster_trace(path, seed)
    results = {
        p: simulate_cluster(trace.jobs, trace.gpus, trace.step_time, trace.resize_time, p)
        for p in POLICIES
    }
    if as_json:
        click.echo(
            json_text(
                {"trace": trace.name, "gpus": trace.gpus}
                | {p: r.to_json() for p, r in results.items()},
                indent=2,
            )
        )
        return
    console = make_console()
    el, st = results["elastic"], results["static"]
    table = compact_table(f"{trace.name}: {len(trace.jobs)} jobs on {trace.gpus} GPUs")
    add_columns(
        table,
        ("job", "model", "arrival", "GPUs", "prio", "JCT elastic", "JCT static", "resizes"),
        text=("job", "model"),
    )
    for a, b, job in zip(el.jobs, st.jobs, trace.jobs, strict=True):
        table.add_row(
            job.name,
            job.model,
            format_time(job.arrival_s),
            str(job.demand),
            f"{job.priority:g}",
            format_time(a.jct_s) if not a.reason else "infeasible",
            format_time(b.jct_s) if not b.reason else "infeasible",
            str(a.resizes),
        )
    console.print(table)
    for p, r in results.items():
        console.print(
            f"{p}: average JCT {format_time(r.average_jct_s)}, makespan "
            f"{format_time(r.makespan_s)}, {r.resizes} resizes"
        )
    if st.average_jct_s > 0:
        console.print(
            f"elastic vs static average JCT: {el.average_jct_s / st.average_jct_s - 1:+.1%}"
        )
    for j in el.jobs:
        if j.reason:
            console.print(f"{j.name}: {j.reason}")
