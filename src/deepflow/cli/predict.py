"""``deepflow predict``: closed-form prediction of one training step per scenario."""

from __future__ import annotations

import json

import click
from rich.console import Console

from deepflow.cli.app import exits_2_on_bad_input, main
from deepflow.estimate import predict
from deepflow.report.text import render_prediction
from deepflow.specs import default_scenario, load_scenario


@main.command("predict")
@click.argument("scenarios", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per scenario (JSON Lines).")
@exits_2_on_bad_input
def predict_command(scenarios: tuple[str, ...], as_json: bool) -> None:
    """Predict step time, memory and throughput of SCENARIO files (default: built-in GPT-3)."""
    loaded = [load_scenario(path) for path in scenarios] if scenarios else [default_scenario()]
    console = Console()
    for scenario in loaded:
        prediction = predict(scenario)
        if as_json:
            click.echo(json.dumps(prediction.to_json()))
        else:
            render_prediction(prediction, scenario, console)
