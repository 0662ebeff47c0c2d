"""``deepflow validate``: predictions against the published measurements shipped with the
package, row by row, with mean and worst error per data set."""

from __future__ import annotations

import click

from deepflow.cli.app import exits_2_on_bad_input, json_text, main, quiet_option
from deepflow.errors import ConfigError
from deepflow.report.progress import progress
from deepflow.report.tabular import csv_text
from deepflow.report.text import make_console
from deepflow.report.validation import measurement_rows, render_dataset, summary_rows
from deepflow.validation.runner import all_dataset_names, run_by_name


@main.command("validate")
@click.option(
    "--dataset", "-d", "names", multiple=True, help="Data set to run (repeatable); default: all."
)
@click.option("--summary", is_flag=True, help="Only the per-data-set summary lines.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per data set.")
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="CSV: one row per measurement (with --summary, one per data set).",
)
@quiet_option
@exits_2_on_bad_input
def validate_command(
    names: tuple[str, ...], summary: bool, as_json: bool, as_csv: bool, quiet: bool
) -> None:
    """Compare predictions with published measurements (errors per row, mean and worst)."""
    if as_json and as_csv:
        raise ConfigError("give one of --json and --csv", "--csv")
    known = all_dataset_names()
    for name in names:
        if name not in known:
            raise click.BadParameter(
                f"unknown data set {name!r}; known: {', '.join(known)}", param_hint="--dataset"
            )
    console = make_console()
    if as_csv:
        results = [run_by_name(name) for name in names or tuple(known)]
        click.echo(
            csv_text(summary_rows(results) if summary else measurement_rows(results)), nl=False
        )
        return
    chosen = names or tuple(known)
    for i, name in enumerate(chosen):
        with progress(f"validating: {name}, data set", quiet) as bar:
            bar.update(i, len(chosen))
            result = run_by_name(name)
        if as_json:
            click.echo(
                json_text(
                    {
                        "dataset": result.name,
                        "rows": len(result.rows),
                        "mape": result.mape,
                        "worst": result.worst,
                        "infeasible": result.infeasible,
                        "mape_bound": result.mape_bound,
                        "worst_bound": result.worst_bound,
                        "within_bounds": result.within_bounds,
                        "errors": {r.row_id: r.error for r in result.rows},
                        "memory_mape": result.memory_mape,
                        "memory_bound": result.memory_bound,
                        "memory_errors": {
                            r.row_id: r.memory_error for r in result.rows if r.measured_memory
                        },
                    }
                )
            )
        else:
            render_dataset(result, console, rows=not summary)
