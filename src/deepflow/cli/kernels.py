"""``deepflow kernels``: what one GEMM or one attention kernel costs on an accelerator.

Prints the predicted time, TFLOP/s, the fraction of the data-sheet dense peak at the
precision, and what bounds the kernel (compute, memory or latency), from the calibrated
kernel model (:mod:`deepflow.hardware.kernels`); ``--json`` prints one object with keys
``time_s``, ``tflops``, ``efficiency``, ``bound`` (spec/scenario.md).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from deepflow.cli.app import exits_2_on_bad_input, json_text, main
from deepflow.errors import ConfigError
from deepflow.hardware.kernels import attention_time, gemm_kernel_time, kernel_table
from deepflow.specs import accelerator_from
from deepflow.specs.accelerator import AcceleratorSpec, Precision
from deepflow.specs.kernels import PRECISION_NAMES, read_calibration

MAX_DIM = 1 << 24
"""Largest accepted shape dimension (16,777,216): beyond any kernel a training step runs."""


def _dim(value: str, key: str) -> int:
    try:
        x = float(value)
    except ValueError:
        raise ConfigError(f"must be a positive integer, got {value!r}", key) from None
    if not np.isfinite(x) or x != int(x) or x < 1:
        raise ConfigError(f"must be a positive integer, got {value!r}", key)
    if x > MAX_DIM:
        raise ConfigError(f"must be at most {MAX_DIM}, got {value!r}", key)
    return int(x)


def _accelerator(
    name: str, dtype: str, calibration: str | None
) -> tuple[AcceleratorSpec, Precision]:
    if dtype not in PRECISION_NAMES:
        raise ConfigError(
            f"unknown dtype {dtype!r}; expected one of {', '.join(PRECISION_NAMES)}", "dtype"
        )
    acc = accelerator_from(name, "accelerator")
    precision = Precision(dtype)
    if acc.peak(precision) <= 0:
        raise ConfigError(f"{acc.name} has no {dtype} matrix units (peak 0)", "dtype")
    if calibration is not None:
        cal = read_calibration(Path(calibration), acc.device_names, acc.name)
        acc = acc.model_copy(update={"calibration": cal})
    return acc, precision


def _bound(compute: float, memory: float, latency: float) -> str:
    if latency >= max(compute, memory):
        return "latency"
    return "compute" if compute >= memory else "memory"


def _report(result: dict[str, object], as_json: bool, title: str) -> None:
    if as_json:
        click.echo(json_text({k: result[k] for k in ("time_s", "tflops", "efficiency", "bound")}))
        return
    click.echo(title)
    click.echo(f"  time        {float(result['time_s']) * 1e6:,.2f} us")  # type: ignore[arg-type]
    click.echo(f"  throughput  {result['tflops']:,.1f} TFLOP/s")
    click.echo(f"  efficiency  {float(result['efficiency']):.1%} of the data-sheet dense peak")  # type: ignore[arg-type]
    click.echo(f"  bound       {result['bound']}")
    click.echo(f"  curves      {result['source']}")


@main.group("kernels")
def kernels_group() -> None:
    """Predicted cost of one GEMM or attention kernel on an accelerator."""


_COMMON = [
    click.option("--accelerator", required=True, help="Accelerator preset name."),
    click.option("--dtype", default="bf16", show_default=True, help="fp32|tf32|fp16|bf16|fp8"),
    click.option("--json", "as_json", is_flag=True, help="One JSON object."),
    click.option(
        "--calibration",
        type=click.Path(dir_okay=False),
        default=None,
        help="Calibration file (deepflow calibrate) instead of the preset's kernel table.",
    ),
]


def _common(func):  # type: ignore[no-untyped-def]
    for option in reversed(_COMMON):
        func = option(func)
    return func


@kernels_group.command("gemm")
@click.argument("m")
@click.argument("n")
@click.argument("k")
@click.option("--groups", default="1", show_default=True, help="Independent GEMMs in one launch.")
@_common
@exits_2_on_bad_input
def gemm_command(
    m: str,
    n: str,
    k: str,
    groups: str,
    accelerator: str,
    dtype: str,
    as_json: bool,
    calibration: str | None,
) -> None:
    """Time of a GEMM [M, K] x [K, N] (GROUPS of them with --groups)."""
    mm, nn, kk = _dim(m, "m"), _dim(n, "n"), _dim(k, "k")
    g = _dim(groups, "groups")
    acc, precision = _accelerator(accelerator, dtype, calibration)
    peak = acc.peak(precision)
    t, compute, memory = gemm_kernel_time(mm, nn, kk, acc, peak, 2.0, g, precision)
    table = kernel_table(acc)
    curve = table.grouped if g > 1 else table.gemm
    latency = float(curve.latency[PRECISION_NAMES.index(precision.value)])
    flops = 2.0 * mm * nn * kk * g
    time_s = float(t)
    result = {
        "time_s": time_s,
        "tflops": flops / time_s / 1e12,
        "efficiency": flops / time_s / peak,
        "bound": _bound(float(compute), float(memory), latency),
        "source": acc.calibration.file
        if acc.calibration
        else (acc.kernel_table or "efficiency block"),
    }
    _report(
        result,
        as_json,
        f"GEMM {mm} x {nn} x {kk}"
        + (f" x {g} groups" if g > 1 else "")
        + f" on {acc.name}, {dtype}",
    )


@kernels_group.command("attention")
@click.option("--batch", required=True)
@click.option("--heads", required=True)
@click.option("--kv-heads", "kv_heads", default=None, help="Default: --heads (no GQA).")
@click.option("--seq", required=True)
@click.option("--head-dim", "head_dim", required=True)
@click.option("--causal", is_flag=True)
@click.option("--backward", is_flag=True, help="Forward + backward time.")
@_common
@exits_2_on_bad_input
def attention_command(
    batch: str,
    heads: str,
    kv_heads: str | None,
    seq: str,
    head_dim: str,
    causal: bool,
    backward: bool,
    accelerator: str,
    dtype: str,
    as_json: bool,
    calibration: str | None,
) -> None:
    """Time of fused (flash) attention, forward only or forward + backward."""
    b, h, s, d = (
        _dim(batch, "batch"),
        _dim(heads, "heads"),
        _dim(seq, "seq"),
        _dim(head_dim, "head_dim"),
    )
    g = _dim(kv_heads, "kv_heads") if kv_heads is not None else h
    if h % g:
        raise ConfigError(f"must divide heads={h}, got {g}", "kv_heads")
    acc, precision = _accelerator(accelerator, dtype, calibration)
    peak = acc.peak(precision)
    fwd, bwd, flops = attention_time(b, h, s, s, d, d, causal, acc, peak, precision)
    table = kernel_table(acc)
    latency = float(table.attn_latency[PRECISION_NAMES.index(precision.value)])
    time_s = float(fwd + bwd) if backward else float(fwd)
    work = float(flops) * (3.5 if backward else 1.0)
    kernels = 2 if backward else 1
    result = {
        "time_s": time_s,
        "tflops": work / time_s / 1e12,
        "efficiency": work / time_s / peak,
        "bound": "latency" if kernels * latency >= time_s / 2 else "compute",
        "source": acc.calibration.file
        if acc.calibration
        else (acc.kernel_table or "efficiency block"),
    }
    label = f"attention b{b} h{h}/{g} s{s} d{d}{' causal' if causal else ''}{' fwd+bwd' if backward else ' fwd'} on {acc.name}, {dtype}"
    _report(result, as_json, label)
