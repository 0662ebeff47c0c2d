"""``deepflow predict``: closed-form prediction of one training step per scenario."""

from __future__ import annotations

from pathlib import Path

import click

from deepflow.cli.app import exits_2_on_bad_input, json_text, main
from deepflow.errors import ConfigError
from deepflow.estimate import predict
from deepflow.interop.msccl import strategy_algorithms
from deepflow.report.text import make_console, render_prediction
from deepflow.specs import default_scenario, load_scenario, model_from, with_model


@main.command("predict")
@click.argument("scenarios", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per scenario (JSON Lines).")
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
    scenarios: tuple[str, ...], as_json: bool, hf_config: str | None, seq_len: int | None
) -> None:
    """Predict step time, memory and throughput of SCENARIO files (default: built-in GPT-3).

    ``strategy.collective_algorithms`` files (MSCCL-IR XML, relative to the scenario file)
    replace the built-in algorithm of their axis's collectives."""
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
    console = make_console()
    for scenario, algos in zip(loaded, algorithms, strict=True):
        prediction = predict(scenario, algos or None)
        if as_json:
            click.echo(json_text(prediction.to_json()))
        else:
            render_prediction(prediction, scenario, console)
