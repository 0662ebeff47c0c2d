"""``deepflow et``: inspect, simulate and convert Chakra execution traces.

* ``deepflow et inspect FILE...`` - decode and check ETs; several files are the ranks of one
  workload, in the order given, and their sends and receives are matched;
* ``deepflow et simulate PREFIX --network N.yml --system S.json`` - replay
  ``PREFIX.<rank>.et`` with ASTRA-sim's analytical semantics; with ``--engine sim``, import
  the ETs as a task graph and run them on the simulator's executor, the one lowered
  scenarios run on, with communication costed by the network layer;
* ``deepflow et convert ALGO.xml --size 1MiB --out PREFIX`` - MSCCL-IR to per-rank ETs;
* ``deepflow et export SCENARIO --out DIR`` - ASTRA-sim inputs (network YAML, system JSON,
  communicator groups, per-rank workload ETs) for one training step of a scenario.

Malformed traces and configurations exit 2 with a message naming the file, the node or key,
and the problem.
"""

from __future__ import annotations

import os
from collections import Counter

import click

from deepflow.cli.app import exits_2_on_bad_input, json_text, main, quiet_option
from deepflow.errors import ConfigError, TraceError
from deepflow.interop.astra import (
    Backend,
    export_scenario,
    load_comm_groups,
    load_network,
    load_system,
    simulate_workload,
)
from deepflow.interop.chakra import (
    CommModel,
    ComputeTiming,
    DependencyPolicy,
    NodeType,
    Roofline,
    check_collectives,
    check_trace,
    check_workload,
    et_to_graph,
    read_et,
    read_workload,
    write_workload,
)
from deepflow.interop.msccl import msccl_to_chakra, read_msccl, verify_collective
from deepflow.report.progress import progress
from deepflow.sim import execute
from deepflow.specs import load_scenario
from deepflow.specs.files import check_output_path
from deepflow.units import Dimension, parse_quantity

MAX_COLLECTIVE_BYTES = 1 << 50
"""Largest collective ``et convert`` writes (1 PiB; Chakra's ``comm_size`` is an int64)."""

_DEPS = click.Choice([p.value for p in DependencyPolicy])


@click.group("et")
def et() -> None:
    """Chakra execution traces: inspect, simulate, convert."""


main.add_command(et)


@et.command("inspect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--deps",
    type=_DEPS,
    default=DependencyPolicy.DATA_AND_CTRL.value,
    show_default=True,
    help="Dependencies that gate a node.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@exits_2_on_bad_input
def inspect(paths: tuple[str, ...], deps: str, as_json: bool) -> None:
    """Decode and check ETs; several files are checked as the ranks of one workload."""
    policy = DependencyPolicy(deps)
    traces = {rank: read_et(path) for rank, path in enumerate(paths)}
    if len(traces) > 1:
        check_workload(traces, policy)
        check_collectives(traces, pg_names_are_ids=False)
    else:
        check_trace(traces[0], policy)
    rows = []
    for trace in traces.values():
        types = Counter(n.type_name for n in trace.nodes)
        rows.append(
            {
                "file": trace.label,
                "version": trace.metadata.version,
                "nodes": len(trace.nodes),
                "types": dict(sorted(types.items())),
                "data_deps": sum(len(n.data_deps) for n in trace.nodes),
                "ctrl_deps": sum(len(n.ctrl_deps) for n in trace.nodes),
                "comm_bytes": sum(
                    int(n.attr_value("comm_size", 0) or 0)  # type: ignore[arg-type]
                    for n in trace.nodes
                    if n.type in (NodeType.COMM_SEND_NODE, NodeType.COMM_COLL_NODE)
                ),
            }
        )
    if as_json:
        click.echo(json_text(rows, indent=2))
        return
    for row in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in row["types"].items())  # type: ignore[attr-defined]
        click.echo(
            f"{row['file']}: version {row['version'] or '-'}, {row['nodes']} nodes ({kinds}), "
            f"{row['data_deps']} data / {row['ctrl_deps']} ctrl deps, "
            f"{row['comm_bytes']} B sent or collective"
        )
    click.echo(f"ok: {len(rows)} trace(s) pass the checks")


@et.command("simulate")
@click.argument("prefix")
@click.option(
    "--network",
    "network_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="ASTRA-sim analytical network YAML.",
)
@click.option(
    "--system",
    "system_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="ASTRA-sim system JSON (required by --engine astra; with --engine sim, the "
    "roofline of compute nodes given as FLOPs and bytes).",
)
@click.option(
    "--comm-groups",
    "groups_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="ASTRA-sim communicator-group JSON.",
)
@click.option(
    "--custom-dir",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Base directory of custom collective ET prefixes.",
)
@click.option(
    "--deps",
    type=_DEPS,
    default=DependencyPolicy.DATA_AND_CTRL.value,
    show_default=True,
    help="Dependencies that gate a node.",
)
@click.option(
    "--engine",
    type=click.Choice(["astra", "sim"]),
    default="astra",
    show_default=True,
    help="astra: ASTRA-sim's analytical semantics; sim: the simulator's executor, with "
    "communication costed by the network layer.",
)
@click.option(
    "--backend",
    type=click.Choice([b.value for b in Backend]),
    default=Backend.CONGESTION_UNAWARE.value,
    show_default=True,
    help="--engine astra: ASTRA-sim's analytical network, congestion-unaware or "
    "congestion-aware (links shared by the messages that cross them).",
)
@click.option(
    "--cpu-comm-as-compute",
    is_flag=True,
    help="Run communication nodes with is_cpu_op true as CPU compute (ASTRA-sim refuses "
    "them; without this flag they are an error).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@quiet_option
@exits_2_on_bad_input
def simulate(
    prefix: str,
    network_path: str,
    system_path: str | None,
    groups_path: str | None,
    custom_dir: str,
    deps: str,
    engine: str,
    backend: str,
    cpu_comm_as_compute: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Replay PREFIX.<rank>.et on an ASTRA-sim analytical network."""
    with progress("reading traces", quiet) as bar:
        network = load_network(network_path)
        groups = load_comm_groups(groups_path) if groups_path else None
        traces = read_workload(prefix)
        policy = DependencyPolicy(deps)
        # a workload whose sends, receives or collectives do not pair up would be replayed with
        # wrong (or missing) transfers: refuse it, as et inspect does
        check_workload(traces, policy)
        check_collectives(traces, pg_names_are_ids=groups is not None)
        if engine == "sim":
            system = load_system(system_path) if system_path else None
            roofline = None
            if system is not None and system.peak_perf_flops and system.local_mem_bw_Bps:
                roofline = Roofline(system.peak_perf_flops, system.local_mem_bw_Bps)
            if len(traces) > network.npus:
                raise TraceError(
                    f"{network.source}: the network has {network.npus} NPUs but the workload "
                    f"has {len(traces)} ranks"
                )
            imported = et_to_graph(
                traces,
                CommModel.from_astra(network),
                groups=groups,
                policy=policy,
                roofline=roofline,
                compute=(
                    ComputeTiming.ROOFLINE
                    if system is not None and system.roofline_enabled
                    else ComputeTiming.TRACE
                ),
            )
            bar.step("replaying: tasks")
            execution = execute(imported.graph, bar.update)
            rows = []
            for rank in sorted(traces):
                finish = round(execution.rank_end(rank) * 1e9)
                compute = round(
                    sum(
                        t.duration_s
                        for t in imported.graph.tasks
                        if t.rank == rank and t.stream == "compute"
                    )
                    * 1e9
                )
                rows.append((rank, finish, compute))
            makespan = round(execution.makespan * 1e9)
            extra = {"engine": "sim", "durations": dict(imported.sources)}
        else:
            if system_path is None:
                raise click.UsageError("--system is required with --engine astra")
            bar.step("replaying on the ASTRA-sim analytical network")
            result = simulate_workload(
                traces,
                network,
                load_system(system_path),
                groups,
                policy,
                custom_dir=custom_dir,
                backend=Backend(backend),
                cpu_comm_as_compute=cpu_comm_as_compute,
            )
            rows = [(r.rank, r.finish_ns, r.compute_ns) for r in result.ranks]
            makespan = result.makespan_ns
            extra = {"backend": backend} if backend != Backend.CONGESTION_UNAWARE.value else {}
            for warning in result.warnings:
                click.echo(f"warning: {warning}", err=True)
    if as_json:
        ranks = [
            {
                "rank": rank,
                "finish_ns": finish,
                "compute_ns": compute,
                "exposed_comm_ns": finish - compute,
            }
            for rank, finish, compute in rows
        ]
        click.echo(json_text({"makespan_ns": makespan, "ranks": ranks, **extra}, indent=2))
        return
    for rank, finish, compute in rows:
        click.echo(
            f"rank {rank} finished, {finish} ns, exposed communication {finish - compute} ns"
        )
    click.echo(f"makespan {makespan} ns")
    if "durations" in extra:
        sources = ", ".join(f"{k} {v}" for k, v in extra["durations"].items())  # type: ignore[attr-defined]
        click.echo(f"engine sim; task durations from: {sources}")


@et.command("convert")
@click.argument("xml_path", type=click.Path(dir_okay=False))
@click.option("--size", required=True, help="Collective size (ASTRA-sim comm_size), e.g. 1MiB.")
@click.option("--out", "prefix", required=True, help="Output prefix: writes PREFIX.<rank>.et.")
@click.option(
    "--local-mem-bw",
    default="50 GB/s",
    show_default=True,
    help="Local memory bandwidth for reduction and copy nodes.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Check on symbolic data that the algorithm computes its collective.",
)
@exits_2_on_bad_input
def convert(xml_path: str, size: str, prefix: str, local_mem_bw: str, verify: bool) -> None:
    """Convert an MSCCL-IR algorithm into one Chakra ET per rank."""
    algo = read_msccl(xml_path)
    size_bytes = parse_quantity(size, Dimension.BYTES, "--size")
    if not size_bytes.is_integer():
        raise TraceError(f"--size: {size!r} is not a whole number of bytes")
    if not 1 <= size_bytes <= MAX_COLLECTIVE_BYTES:
        raise ConfigError(
            f"must be 1 B .. {MAX_COLLECTIVE_BYTES:,} B (1 PiB), got {size!r}", "--size"
        )
    bandwidth = parse_quantity(local_mem_bw, Dimension.BANDWIDTH, "--local-mem-bw")
    if verify:
        verify_collective(algo)
    traces = msccl_to_chakra(algo, int(size_bytes), bandwidth)
    out_dir = os.path.dirname(prefix)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    check_output_path(f"{prefix}.0.et", "--out")
    paths = write_workload(traces, prefix)
    nodes = sum(len(t.nodes) for t in traces.values())
    click.echo(f"wrote {len(paths)} ET files ({nodes} nodes) to {prefix}.<rank>.et")


@et.command("export")
@click.argument("scenario_path", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option(
    "--max-ranks",
    type=click.IntRange(min=2),
    default=64,
    show_default=True,
    help="Largest job written in full; bigger jobs keep fewer data-parallel replicas.",
)
@click.option(
    "--merge-layers",
    is_flag=True,
    help="One compute node and one tensor-parallel all-reduce per stage and micro-batch.",
)
@quiet_option
@exits_2_on_bad_input
def export(
    scenario_path: str, out_dir: str, max_ranks: int, merge_layers: bool, quiet: bool
) -> None:
    """Write ASTRA-sim inputs for one training step of SCENARIO into OUT."""
    scenario = load_scenario(scenario_path)
    with progress("building rank traces", quiet) as bar:
        result = export_scenario(
            scenario, out_dir, max_ranks=max_ranks, merge_layers=merge_layers,
            on_progress=bar.update,
        )  # fmt: skip
    size = sum(os.path.getsize(f) for f in result.files)
    click.echo(
        f"wrote {len(result.files)} files ({size} B) to {result.directory}: {result.ranks} "
        f"ranks (tp {result.tp} x pp {result.pp} x dp {result.dp} of {result.job_dp}), "
        f"{result.nodes_per_rank} nodes per rank"
    )
    click.echo(
        f"run: deepflow et simulate {result.workload_prefix} --network "
        f"{os.path.join(result.directory, 'network.yml')} --system "
        f"{os.path.join(result.directory, 'system.json')} --comm-groups "
        f"{os.path.join(result.directory, 'comm_groups.json')}"
    )
