"""``deepflow simulate``: event-driven simulation of one training step per scenario; the
timeline as Chrome trace JSON (``--trace``), the lowered graphs as Chakra ETs (``--et-out``);
``--contention`` lets concurrent collectives that share a NIC or NVLink port slow each
other (:mod:`deepflow.sim.contention`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from deepflow.cli.app import exits_2_on_bad_input, json_text, main, quiet_option
from deepflow.errors import ConfigError
from deepflow.interop.chakra import graph_to_et, write_workload
from deepflow.interop.msccl import strategy_algorithms
from deepflow.report.progress import progress
from deepflow.report.text import make_console, render_prediction
from deepflow.sim import simulate, write_trace
from deepflow.specs import load_scenario
from deepflow.specs.files import check_output_path


@main.command("simulate")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the timeline as Chrome trace JSON (open in Perfetto).",
)
@click.option(
    "--et-out",
    "et_prefix",
    default=None,
    help="Write the lowered graphs as Chakra ETs, PREFIX.<rank>.et (one per simulated rank).",
)
@click.option(
    "--contention",
    is_flag=True,
    help="Concurrent collectives that share a NIC or NVLink port slow each other "
    "(congestion-aware link engine).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, the keys of predict.")
@quiet_option
@exits_2_on_bad_input
def simulate_command(
    scenario: str,
    trace_path: str | None,
    et_prefix: str | None,
    contention: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Simulate one training step of SCENARIO on per-rank task graphs."""
    # destinations are checked before the run, so a typo costs nothing
    if trace_path:
        check_output_path(trace_path, "--trace")
    if et_prefix:
        out_dir = os.path.dirname(et_prefix)
        if out_dir and not os.path.isdir(out_dir):
            try:
                os.makedirs(out_dir, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create folder {out_dir!r}: {exc.strerror}", "--et-out"
                ) from None
        check_output_path(f"{et_prefix}.0.et", "--et-out")
    loaded = load_scenario(scenario)
    try:
        algorithms = strategy_algorithms(loaded.strategy, Path(scenario).parent)
    except ConfigError as exc:
        raise exc.with_source(scenario) from None
    et_paths: list[str] = []
    with progress("simulating: tasks", quiet) as bar:
        sim = simulate(
            loaded,
            algorithms=algorithms or None,
            on_progress=bar.update,
            contention=contention,
        )
        if trace_path:
            bar.step(f"writing {trace_path}")
            write_trace(sim.execution, trace_path, sim.rank_labels())
        if et_prefix:
            bar.step("writing Chakra ETs")
            et_paths = write_workload(graph_to_et(sim.lowered.graph), et_prefix)
    if as_json:
        click.echo(json_text(sim.prediction.to_json()))
    else:
        render_prediction(sim.prediction, loaded, make_console())
        if trace_path:
            click.echo(f"timeline: {trace_path}")
        if et_paths:
            click.echo(
                f"Chakra ETs: {et_paths[0]} .. {et_paths[-1]} (file k holds rank "
                f"{', '.join(map(str, sim.lowered.stage_ranks))} in order)"
            )
