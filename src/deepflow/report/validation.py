"""Render validation results: per row scenario, predicted, measured, error; then the summary."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from deepflow.validation.results import DatasetResult


def _numeric(table: Table, name: str) -> None:
    # a number is never wrapped or shortened ("fold" only should 80 columns not hold it)
    table.add_column(name, justify="right", no_wrap=True, overflow="fold")


def render_dataset(result: DatasetResult, console: Console, rows: bool = True) -> None:
    """Print every row of ``result`` (when ``rows``), then its mean and worst error.

    Step times and, where the source measured them, peak memories go in two tables, so
    that each fits 80 columns; the free-text scenario column takes what width is left."""
    if rows:
        table = Table(title=f"{result.name}: {result.description}")
        table.add_column("row", no_wrap=True, overflow="fold")
        table.add_column("scenario", ratio=1, min_width=10)
        for name in ("predicted", "measured", "error"):
            _numeric(table, name)
        for row in result.rows:
            predicted = "infeasible" if row.predicted is None else f"{row.predicted:.4g} {row.unit}"
            error = "-" if row.error is None else f"{row.error:+.1%}"
            table.add_row(
                row.row_id, row.description, predicted, f"{row.measured:.4g} {row.unit}", error
            )
        console.print(table)
        if any(row.measured_memory for row in result.rows):
            mem = Table(title=f"{result.name}: peak memory per device")
            mem.add_column("row", no_wrap=True, overflow="fold")
            for name in ("predicted", "measured", "error"):
                _numeric(mem, name)
            for row in result.rows:
                if not row.measured_memory:
                    continue
                mem.add_row(
                    row.row_id,
                    "-"
                    if row.predicted_memory is None
                    else f"{row.predicted_memory / 2**30:.2f} GiB",
                    f"{row.measured_memory / 2**30:.2f} GiB",
                    "-" if row.memory_error is None else f"{row.memory_error:+.1%}",
                )
            console.print(mem)
    console.print(summary_line(result))


def summary_line(result: DatasetResult) -> str:
    bound = ""
    if result.mape_bound is not None:
        bound = f" (bound: mean {result.mape_bound:.0%}"
        bound += f", worst {result.worst_bound:.0%})" if result.worst_bound is not None else ")"
    status = "" if result.mape_bound is None else (" ok" if result.within_bounds else " OVER BOUND")
    memory = ""
    if result.memory_mape is not None:
        memory = f", peak memory mean abs error {result.memory_mape:.1%}"
        if result.memory_bound is not None:
            memory += f" (bound {result.memory_bound:.0%})"
    return (
        f"{result.name}: {len(result.rows)} rows, mean abs error {result.mape:.1%}, "
        f"worst {result.worst:.1%}, infeasible {result.infeasible}{bound}{memory}{status}"
    )


def measurement_rows(results: list[DatasetResult]) -> list[dict[str, object]]:
    """One mapping per measurement of ``results`` (the CSV of ``validate --csv``): the
    row, measured and predicted values in ``unit``, the signed relative error, and the
    peak memory where the source measured it."""
    return [
        {
            "dataset": r.dataset,
            "row_id": r.row_id,
            "description": r.description,
            "unit": r.unit,
            "measured": r.measured,
            "predicted": r.predicted,
            "error": r.error,
            "reason": r.reason,
            "measured_memory_bytes": r.measured_memory,
            "predicted_memory_bytes": r.predicted_memory,
            "memory_error": r.memory_error,
        }
        for result in results
        for r in result.rows
    ]


def summary_rows(results: list[DatasetResult]) -> list[dict[str, object]]:
    """One mapping per data set (``validate --summary --csv``): rows, mean and worst
    absolute error, infeasible rows, the bounds the tests hold it to."""
    return [
        {
            "dataset": r.name,
            "rows": len(r.rows),
            "mape": r.mape,
            "worst": r.worst,
            "infeasible": r.infeasible,
            "mape_bound": r.mape_bound,
            "worst_bound": r.worst_bound,
            "within_bounds": r.within_bounds,
            "memory_mape": r.memory_mape,
            "memory_bound": r.memory_bound,
        }
        for r in results
    ]
