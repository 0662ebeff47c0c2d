"""``deepflow predict``: closed-form prediction of one training step per scenario."""

from __future__ import annotations

from pathlib import Path

import click

from deepflow.cli.app import exits_2_on_bad_input, json_text, main
from deepflow.errors import ConfigError
from deepflow.estimate import Prediction, predict
from deepflow.interop.msccl import strategy_algorithms
from deepflow.report.tabular import csv_text, flatten
from deepflow.report.text import make_console, render_prediction
from deepflow.specs import Scenario, default_scenario, load_scenario, model_from, with_model


def predict_files(
    scenarios: tuple[str, ...], hf_config: str | None = None, seq_len: int | None = None
) -> list[tuple[Scenario, Prediction]]:
    """Load SCENARIO files (the built-in default when none), optionally with the model of
    a Hugging Face config.json, and predict each with its collective-algorithm files.
    Every file is loaded and checked before the first prediction."""
    paths = [Path(p) for p in scenarios]
    loaded = [load_scenario(p) for p in paths] if paths else [default_scenario()]
    sources: list[Path | None] = [*paths] or [None]
    if seq_len is not None and hf_config is None:
        raise ConfigError("needs --hf-config (a scenario file sets model.seq_len)", "--seq-len")
    if hf_config is not None:
        section: dict[str, object] = {"hf_config": hf_config}
        if seq_len is not None:
            section["seq_len"] = seq_len
        model = model_from(section, "--hf-config")
        loaded = [with_model(s, model) for s in loaded]
    algorithms = []
    for scenario, path in zip(loaded, sources, strict=True):
        try:
            folder = path.parent if path is not None else Path(".")
            algorithms.append(strategy_algorithms(scenario.strategy, folder))
        except ConfigError as exc:
            raise (exc.with_source(str(path)) if path is not None else exc) from None
    return [
        (scenario, predict(scenario, algos or None))
        for scenario, algos in zip(loaded, algorithms, strict=True)
    ]


@main.command("predict")
@click.argument("scenarios", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per scenario (JSON Lines).")
@click.option(
    "--csv", "as_csv", is_flag=True, help="CSV: one row per scenario, nested keys dotted."
)
@click.option(
    "--hf-config",
    type=click.Path(dir_okay=False),
    default=None,
    help="A Hugging Face transformers config.json: replaces the model of every scenario.",
)
@click.option(
    "--seq-len",
    type=click.IntRange(min=1),
    default=None,
    help="With --hf-config: the training sequence length (default: max_position_embeddings).",
)
@exits_2_on_bad_input
def predict_command(
    scenarios: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
    hf_config: str | None,
    seq_len: int | None,
) -> None:
    """Predict step time, memory and throughput of SCENARIO files (default: built-in GPT-3).

    ``strategy.collective_algorithms`` files (MSCCL-IR XML, relative to the scenario file)
    replace the built-in algorithm of their axis's collectives."""
    if as_json and as_csv:
        raise ConfigError("give one of --json and --csv", "--csv")
    results = predict_files(scenarios, hf_config, seq_len)
    if as_csv:
        click.echo(csv_text(flatten(p.to_json()) for _, p in results), nl=False)
        return
    console = make_console()
    for scenario, prediction in results:
        if as_json:
            click.echo(json_text(prediction.to_json()))
        else:
            render_prediction(prediction, scenario, console)
