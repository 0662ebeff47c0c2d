"""``deepflow calibrate``: measure this machine's accelerator with PyTorch and write a
calibration file (:mod:`deepflow.hardware.calibrate`)."""

from __future__ import annotations

import shlex
import sys

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deepflow.cli.app import exits_2_on_bad_input, main
from deepflow.hardware.calibrate import (
    CalibrationOptions,
    check_output_path,
    parse_dtypes,
    parse_sections,
    resolve_device,
    run_calibration,
    write_calibration,
)
from deepflow.report.text import make_console
from deepflow.workload.profiles import builtin_operator_shapes


def _command_line() -> str:
    """The command as given: ``deepflow calibrate`` and the options set on the command line
    (whatever started the interpreter, a console script, ``python -m`` or a test runner)."""
    ctx = click.get_current_context()
    words = ["deepflow", "calibrate"]
    for param in ctx.command.params:
        name = param.name or ""
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        flag = param.opts[0]
        value = ctx.params[name]
        if isinstance(param, click.Option) and param.is_flag:
            if value:
                words.append(flag)
        else:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(words)


@main.command("calibrate")
@click.option(
    "--device",
    type=click.Choice(["auto", "cuda", "rocm", "cpu"]),
    default="auto",
    show_default=True,
    help="Accelerator to measure (auto: the GPU if PyTorch sees one, else the CPU).",
)
@click.option("--quick", is_flag=True, help="Tiny shapes and few repeats (seconds; for CI).")
@click.option(
    "--out",
    default="calibration.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Output file: .yaml/.yml, .json, or .csv (the measurements only).",
)
@click.option(
    "--only",
    default=None,
    help="Comma-separated sections: gemm,attention,memory,elementwise,collective,operator.",
)
@click.option(
    "--dtypes",
    default=None,
    help="Comma-separated dtypes of fp32,tf32,fp16,bf16,fp8 (default: all the device has).",
)
@click.option(
    "--max-seconds",
    default=240.0,
    show_default=True,
    type=float,
    help="Time budget: the run stops cleanly with what it measured.",
)
@exits_2_on_bad_input
def calibrate_command(
    device: str, quick: bool, out: str, only: str | None, dtypes: str | None, max_seconds: float
) -> None:
    """Measure GEMMs, attention, memory, element-wise kernels, collectives and operator
    profiles on this machine's accelerator, and write them as a calibration file."""
    path = check_output_path(out)
    options = CalibrationOptions(
        device=device,
        quick=quick,
        sections=parse_sections(only),
        dtypes=parse_dtypes(dtypes),
        max_seconds=max_seconds,
        command=_command_line(),
    )
    resolve_device(device)  # no PyTorch, or no such GPU: a one-line error before any display
    shapes = (
        builtin_operator_shapes(
            batch=2 if quick else None, divisors=(1,) if quick else (1, 2, 4, 8)
        )
        if "operator" in options.sections
        else []
    )
    console = make_console(stderr=True)
    with Progress(
        TextColumn("[bold]calibrate"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("starting PyTorch", total=None)

        def on_case(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        run = run_calibration(options, shapes, on_case)
    written = write_calibration(run.data, path)
    table = Table(title=f"{run.data['device']['name']} ({run.data['device']['backend']})")
    table.add_column("kind")
    table.add_column("records", justify="right")
    for kind, n in run.counts.items():
        table.add_row(kind, str(n))
    console.print(table)
    for note in run.data["notes"]:
        console.print(f"note: {note}", highlight=False)
    console.print(
        f"{len(run.data['measurements'])} measurements in {run.elapsed_s:.1f} s -> {written}",
        highlight=False,
    )
    if run.interrupted:
        sys.exit(130)
