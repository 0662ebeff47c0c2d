"""``deepflow compare``: several scenarios side by side (step time, MFU, memory, breakdown)."""

from __future__ import annotations

import click
from rich.table import Table

from deepflow.cli.app import exits_2_on_bad_input, json_text, main
from deepflow.cli.predict import predict_files
from deepflow.errors import ConfigError
from deepflow.report.tabular import Row, comparison, csv_text
from deepflow.report.text import make_console
from deepflow.units import format_bytes, format_si, format_time


def _format(row: Row, value: object) -> str:
    if value is None:
        return "-"
    if row.kind == "time":
        return format_time(float(value))  # type: ignore[arg-type]
    if row.kind == "bytes":
        return format_bytes(float(value))  # type: ignore[arg-type]
    if row.kind == "fraction":
        return f"{float(value):.1%}"  # type: ignore[arg-type]
    if row.kind == "rate":
        return format_si(float(value), "")  # type: ignore[arg-type]
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _column_names(names: list[str]) -> list[str]:
    """Scenario names, made unique (``a``, ``a#2``) for headers and CSV columns."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


@main.command("compare")
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the predictions in order.")
@click.option(
    "--csv", "as_csv", is_flag=True, help="CSV: one row per metric, one column per scenario."
)
@exits_2_on_bad_input
def compare_command(scenarios: tuple[str, ...], as_json: bool, as_csv: bool) -> None:
    """Predict SCENARIO files and show them side by side: step time, time to train, MFU,
    peak memory, where the time goes and where the memory goes."""
    if as_json and as_csv:
        raise ConfigError("give one of --json and --csv", "--csv")
    results = predict_files(scenarios)
    predictions = [p for _, p in results]
    names = _column_names([p.scenario for p in predictions])
    rows = comparison(predictions)
    if as_json:
        click.echo(
            json_text({"scenarios": names, "predictions": [p.to_json() for p in predictions]})
        )
        return
    if as_csv:
        table_rows = [
            {"metric": row.key, **dict(zip(names, row.values, strict=True))} for row in rows
        ]
        click.echo(csv_text(table_rows), nl=False)
        return
    table = Table(title="comparison")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right", overflow="fold")
    section = ""
    for row in rows:
        part = row.key.split(".")[0] if "." in row.key else ""
        if part != section:
            section = part
            title = {"breakdown_s": "where the step time goes", "memory_bytes": "memory"}
            table.add_section()
            if part:
                table.add_row(title.get(part, part), *([""] * len(names)))
        label = f"  {row.label}" if part else row.label
        table.add_row(label, *(_format(row, v) for v in row.values))
    make_console().print(table)
