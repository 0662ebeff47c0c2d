"""``deepflow report``: one scenario as a self-contained HTML page (``--html``)."""

from __future__ import annotations

from pathlib import Path

import click

from deepflow.cli.app import exits_2_on_bad_input, main
from deepflow.errors import ConfigError
from deepflow.interop.msccl import strategy_algorithms
from deepflow.report.data import report_data
from deepflow.report.html import render_html
from deepflow.specs import default_scenario, load_scenario
from deepflow.specs.files import atomic_write, check_output_path


@main.command("report")
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--html",
    "html_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Write the report here: prediction, breakdown charts, simulated pipeline "
    "timeline, error of the nearest published measurement (no JavaScript, no other file).",
)
@exits_2_on_bad_input
def report_command(scenario: str | None, html_path: str) -> None:
    """Report SCENARIO (default: built-in GPT-3) as one HTML page."""
    check_output_path(html_path, "--html", (".html", ".htm"))
    if scenario is None:
        loaded, folder = default_scenario(), Path(".")
    else:
        loaded, folder = load_scenario(scenario), Path(scenario).parent
    try:
        algorithms = strategy_algorithms(loaded.strategy, folder)
    except ConfigError as exc:
        raise (exc.with_source(scenario) if scenario else exc) from None
    data = report_data(loaded, algorithms or None)
    atomic_write(html_path, render_html(data), "--html")
    click.echo(f"report: {html_path}")
