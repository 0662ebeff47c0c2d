"""``deepflow calibrate``: measure this machine's accelerator with PyTorch and write a
calibration file (:mod:`deepflow.hardware.calibrate`) with its fitted kernel curves; with
``--fit FILE``, fit a table measured elsewhere instead. Both fit with
:func:`deepflow.hardware.calibration.fit_kernel_params`, the function that
``scripts/fit_kernels.py`` fits the shipped tables with."""

from __future__ import annotations

import shlex
import sys

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deepflow.cli.app import exits_2_on_bad_input, main
from deepflow.errors import ConfigError
from deepflow.hardware.calibrate import (
    CalibrationOptions,
    check_output_path,
    parse_dtypes,
    parse_sections,
    read_calibration,
    resolve_device,
    run_calibration,
    write_calibration,
)
from deepflow.hardware.calibration import (
    accelerator_for_device,
    accelerator_from_spec,
    fit_measured_file,
)
from deepflow.report.text import make_console
from deepflow.specs.accelerator import AcceleratorSpec
from deepflow.specs.kernels import device_matches
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
@click.option(
    "--fit",
    "fit_file",
    default=None,
    metavar="MEASUREMENTS",
    help="Fit a table measured elsewhere (.csv, or a measurements-only .yaml/.json) "
    "instead of measuring; writes the file with its fitted curves to --out.",
)
@click.option(
    "--accelerator",
    default=None,
    metavar="NAME|FILE",
    help="Accelerator the fit is for: a preset name, or a YAML/JSON file with an "
    "accelerator mapping whose device_names list the measured device (default: the "
    "preset whose device_names match the device).",
)
@exits_2_on_bad_input
def calibrate_command(
    device: str,
    quick: bool,
    out: str,
    only: str | None,
    dtypes: str | None,
    max_seconds: float,
    fit_file: str | None,
    accelerator: str | None,
) -> None:
    """Measure GEMMs, attention, memory, element-wise kernels, collectives and operator
    profiles on this machine's accelerator, fit the kernel curves, and write both as a
    calibration file; with --fit, fit a measured table instead."""
    path = check_output_path(out)
    if fit_file is not None:
        _fit_only(fit_file, accelerator, path)
        return
    options = CalibrationOptions(
        device=device,
        quick=quick,
        sections=parse_sections(only),
        dtypes=parse_dtypes(dtypes),
        max_seconds=max_seconds,
        command=_command_line(),
    )
    # no PyTorch, or no such GPU: a one-line error before any display
    measured = resolve_device(device)
    acc = _fit_accelerator(accelerator, measured.name)
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
    if acc is not None:
        run.data = fit_measured_file(run.data, acc, options.command)
    else:
        run.data["notes"].append(
            f"fitted: not written: no accelerator preset lists device {measured.name!r}; "
            "fit with deepflow calibrate --fit FILE --accelerator NAME|FILE"
        )
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


def _fit_accelerator(spec: str | None, device: str) -> AcceleratorSpec | None:
    """The accelerator a measured ``device`` is fitted for: ``--accelerator`` (which must
    list the device in its ``device_names``), else the preset that lists it, else none."""
    if spec is None:
        name = accelerator_for_device(device)
        return None if name is None else accelerator_from_spec(name)
    acc = accelerator_from_spec(spec)
    if not device_matches(device, acc.device_names):
        raise ConfigError(
            f"accelerator {acc.name!r} does not list the measured device {device!r} in its "
            f"device_names ({', '.join(acc.device_names)})",
            "--accelerator",
        )
    return acc


def _fit_only(fit_file: str, spec: str | None, path) -> None:
    """``deepflow calibrate --fit``: read a measured table, fit it, write the result."""
    if path.suffix.lower() == ".csv":
        raise ConfigError(
            f"{str(path)!r}: a fitted calibration is written as .yaml or .json", "--out"
        )
    data = read_calibration(fit_file)
    device = str((data.get("device") or {}).get("name") or "")
    if spec is not None:
        acc = accelerator_from_spec(spec)
    elif device and (name := accelerator_for_device(device)) is not None:
        acc = accelerator_from_spec(name)
    else:
        why = f"no accelerator preset lists device {device!r}" if device else "no device name"
        raise ConfigError(f"required: {fit_file} has {why}", "--accelerator")
    result = fit_measured_file(data, acc, _command_line())
    written = write_calibration(result, path)
    fitted = result["fitted"]
    console = make_console(stderr=True)
    table = Table(title=f"{result['device']['name']} fitted for {acc.name}")
    table.add_column("curve")
    table.add_column("precisions / ops")
    for key in ("gemm", "grouped_gemm", "attention", "elementwise"):
        if fitted.get(key):
            table.add_row(key, ", ".join(fitted[key]))
    if fitted.get("memory"):
        table.add_row("memory", f"{fitted['memory']['fraction']:.3f} of the data-sheet bandwidth")
    console.print(table)
    console.print(
        f"{len(result['measurements'])} measurements fitted -> {written}", highlight=False
    )
