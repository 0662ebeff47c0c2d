"""``deepflow predict``: closed-form prediction of one training step per scenario."""

from __future__ import annotations

from pathlib import Path

import click

from deepflow.cli.app import exits_2_on_bad_input, json_text, main
from deepflow.errors import ConfigError
from deepflow.estimate import predict
from deepflow.interop.msccl import strategy_algorithms
from deepflow.report.text import make_console, render_prediction
from deepflow.specs import default_scenario, load_scenario


@main.command("predict")
@click.argument("scenarios", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per scenario (JSON Lines).")
@exits_2_on_bad_input
def predict_command(scenarios: tuple[str, ...], as_json: bool) -> None:
    """Predict step time, memory and throughput of SCENARIO files (default: built-in GPT-3).

    ``strategy.collective_algorithms`` files (MSCCL-IR XML, relative to the scenario file)
    replace the built-in algorithm of their axis's collectives."""
    paths = [Path(p) for p in scenarios]
    loaded = [load_scenario(p) for p in paths] if paths else [default_scenario()]
    sources: list[Path | None] = [*paths] or [None]
    algorithms = []
    for scenario, path in zip(loaded, sources, strict=True):
        try:
            folder = path.parent if path is not None else Path(".")
            algorithms.append(strategy_algorithms(scenario.strategy, folder))
        except ConfigError as exc:
            raise (exc.with_source(str(path)) if path is not None else exc) from None
    console = make_console()
    for scenario, algos in zip(loaded, algorithms, strict=True):
        prediction = predict(scenario, algos or None)
        if as_json:
            click.echo(json_text(prediction.to_json()))
        else:
            render_prediction(prediction, scenario, console)
