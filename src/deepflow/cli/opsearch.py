"""``deepflow search-ops``: FlexFlow's per-operator strategy search on an operator graph.

Builds the workload's operator graph (:mod:`deepflow.workload.cnn`,
:mod:`deepflow.workload.rnn`), the system from a preset, and runs the MCMC search of
:mod:`deepflow.search.mcmc` on the simulator of :mod:`deepflow.sim.opsim`; prints the
data-parallel step time, the best one found, the speed-up and each op's config (``--json``
lists them as data).
"""

from __future__ import annotations

import math

import click

from deepflow.cli.app import exits_2_on_bad_input, json_text, main, quiet_option
from deepflow.errors import ConfigError
from deepflow.hardware.calibrate import OperatorProfiles
from deepflow.hardware.calibrate.io import read_calibration
from deepflow.hardware.calibration import accelerator_from_spec
from deepflow.report.progress import progress
from deepflow.search.mcmc import describe, mcmc_search
from deepflow.sim.opsim import MeasuredCost, OpSimulator, gemm_curve_source, with_calibration
from deepflow.specs import system_from
from deepflow.specs.accelerator import Precision
from deepflow.specs.base import MAX_BATCH
from deepflow.units import format_time
from deepflow.workload.graphs import OPGRAPH_WORKLOADS

WORKLOADS = OPGRAPH_WORKLOADS


MAX_OPSEARCH_GPUS = 1024
"""Largest cluster of the per-operator search: the operator simulator builds a task per
operator partition per device (FlexFlow evaluated up to 64 GPUs, arXiv 1807.05358 sec. 8)."""
MAX_OPSEARCH_ITERATIONS = 10_000_000
"""Largest MCMC budget."""


@main.command("search-ops")
@click.argument("workload", type=click.Choice(sorted(WORKLOADS)))
@click.option("--gpus", default=16, show_default=True, help="Accelerators in the cluster.")
@click.option("--nodes", default=4, show_default=True, help="Nodes they are spread over.")
@click.option("--system", "preset", default="dgx-v100", show_default=True, help="System preset.")
@click.option("--batch", default=64, show_default=True, help="Global batch size.")
@click.option("--budget", default=2000, show_default=True, help="MCMC iterations in all.")
@click.option("--seed", default=0, show_default=True, help="Seed of the search.")
@click.option(
    "--precision",
    type=click.Choice([p.value for p in Precision]),
    default="fp32",
    show_default=True,
)
@click.option(
    "--sync",
    type=click.Choice(["overlapped", "after-backward"]),
    default="overlapped",
    show_default=True,
    help="Gradient synchronization overlapping the backward pass, or after it (FlexFlow's "
    "simulators).",
)
@click.option(
    "--accelerator",
    default=None,
    help="Replace the preset's accelerator: a preset name or a YAML/JSON file holding an "
    "accelerator mapping (as deepflow calibrate --accelerator takes).",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False),
    default=None,
    help="A calibration file (deepflow calibrate): price the operator partitions it "
    "measured at --precision by their measured times, and the others by its fitted kernel "
    "curves (when it has a fitted block; its device must match the accelerator).",
)
@click.option(
    "--no-branch-moves",
    is_flag=True,
    help="Search with one-op moves only (no whole-branch placement of multi-branch modules).",
)
@click.option(
    "--kernel-parallel",
    is_flag=True,
    help="Also search DeepFlow's CR/RC kernel splits of each GEMM over a device grid.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@quiet_option
@exits_2_on_bad_input
def search_ops(
    workload: str,
    gpus: int,
    nodes: int,
    preset: str,
    batch: int,
    budget: int,
    seed: int,
    precision: str,
    sync: str,
    accelerator: str | None,
    calibration: str | None,
    no_branch_moves: bool,
    kernel_parallel: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Search per-operator parallelization strategies for WORKLOAD (FlexFlow's SOAP space)."""
    if not 1 <= gpus <= MAX_OPSEARCH_GPUS:
        raise ConfigError(f"must be 1 .. {MAX_OPSEARCH_GPUS:,}, got {gpus:,}", "--gpus")
    if gpus < 1 or nodes < 1 or gpus % nodes:
        raise ConfigError(f"{nodes} nodes must divide {gpus} accelerators", "--nodes")
    if not 1 <= batch <= MAX_BATCH:
        raise ConfigError(f"must be 1 .. {MAX_BATCH:,}, got {batch:,}", "--batch")
    if not 0 <= budget <= MAX_OPSEARCH_ITERATIONS:
        raise ConfigError(f"must be 0 .. {MAX_OPSEARCH_ITERATIONS:,}, got {budget:,}", "--budget")
    system = system_from(
        {"preset": preset, "num_accelerators": gpus, "accelerators_per_node": gpus // nodes},
        "--system",
    )
    if accelerator is not None:
        system = system.model_copy(update={"accelerator": accelerator_from_spec(accelerator)})
    graph = WORKLOADS[workload](batch)
    profiles = OperatorProfiles.from_file(calibration) if calibration else None
    if calibration and "fitted" in read_calibration(calibration):
        # the file's fitted GEMM and streaming curves price what it did not measure
        system = with_calibration(system, calibration)
    sim = OpSimulator(
        graph,
        system,
        Precision(precision),
        overlap_sync=sync == "overlapped",
        profiles=profiles,
    )
    with progress("searching: MCMC chains", quiet) as bar:
        result = mcmc_search(
            sim,
            iterations=budget,
            seed=seed,
            on_progress=bar.update,
            kernel_parallel=kernel_parallel,
            branch_moves=not no_branch_moves,
        )
    ops = describe(graph, result.best)
    curve = gemm_curve_source(system.accelerator, Precision(precision))
    step = sim.run(result.best)
    if as_json:
        out = {
            "workload": workload,
            "system": system.name,
            "gpus": gpus,
            "nodes": nodes,
            "batch": batch,
            "precision": precision,
            "sync": sync,
            "seed": seed,
            "data_parallel_s": result.data_parallel_cost,
            "best_s": result.best_cost,
            "speedup": result.speedup,
            "best_start": result.best_start,
            "start_costs_s": result.start_costs,
            "iterations": result.iterations,
            "elapsed_s": result.elapsed_s,
            "stopped": result.stopped,
            "calibration": calibration,
            "accelerator": system.accelerator.name,
            "gemm_curve": curve,
            "branch_moves": not no_branch_moves,
            "kernel_parallel": kernel_parallel,
            "peak_memory_bytes": step.peak_memory_bytes,
            "infeasible": step.infeasible,
            "ops": ops,
        }
        click.echo(json_text(out, indent=2))
        return
    click.echo(f"{graph.name}: {len(graph.ops)} ops, {graph.parameter_count / 1e6:.1f} M params")
    click.echo(
        f"system: {system.name}, {gpus} accelerators on {nodes} nodes, batch {batch}, sync {sync}"
    )
    dp_fits = math.isfinite(result.data_parallel_cost)
    dp_text = format_time(result.data_parallel_cost) if dp_fits else "does not fit in memory"
    click.echo(f"kernel curves : {system.accelerator.name} {precision}, {curve}")
    click.echo(f"data parallel : {dp_text}")
    click.echo(
        f"best found    : {format_time(result.best_cost)}  (from {result.best_start}, "
        f"{result.iterations} iterations, {result.elapsed_s:.1f} s, {result.stopped})"
    )
    if dp_fits:
        click.echo(f"speed-up      : {result.speedup:.3f}x")
    click.echo(f"peak memory   : {step.peak_memory_bytes / 1e9:.1f} GB per device")
    if step.infeasible:
        click.echo(f"infeasible    : {step.infeasible}")
    if isinstance(sim.cost, MeasuredCost):
        click.echo(
            f"operator cost : {sim.cost.measured} partitions measured ({calibration}), "
            f"{sim.cost.modelled} modelled"
        )
    for o in ops:
        deg = " ".join(f"{k}={v}" for k, v in o["degrees"].items()) or "1"  # type: ignore[union-attr]
        first, last = o["devices"]  # type: ignore[misc]
        kern = f" {o['kernel']}" if "kernel" in o else ""
        click.echo(f"  {o['op']:<36} {deg + kern:<28} devices {first}-{last}")
