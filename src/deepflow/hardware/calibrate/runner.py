"""The calibration run: which kernels to measure, in which order, within a time budget.

The run is sized to finish in ``max_seconds`` (default 240 s: a full run on one GPU then
ends well inside five minutes with PyTorch's start-up). The budget is shared out among
*groups* (GEMMs of one dtype, attention of one dtype, memory, element-wise, operators,
collectives) by fixed shares; each group starts with its share of the time that is left,
so time a group does not use passes on to the next. Within a group the cases run cheapest
first; when the group's time is spent the rest are left out, and the file's ``notes`` say
how many and why. Nothing is allocated that does not fit in three quarters of the device's
free memory at that moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepflow.errors import ConfigError
from deepflow.hardware.calibrate import measure as m
from deepflow.hardware.calibrate.environment import (
    DeviceInfo,
    describe_environment,
    import_torch,
    select_device,
)
from deepflow.hardware.calibrate.io import SCHEMA
from deepflow.hardware.calibrate.timing import Timer, TimeUp, TimingPlan

__all__ = [
    "SECTIONS",
    "CalibrationOptions",
    "CalibrationRun",
    "parse_dtypes",
    "parse_sections",
    "plan_cases",
    "resolve_device",
    "run_calibration",
]

SECTIONS = ("gemm", "attention", "memory", "elementwise", "collective", "operator")
"""Names ``--only`` takes; ``gemm`` includes the grouped GEMMs."""

# share of the time budget per group kind (split evenly among a kind's dtypes)
_SHARES = {
    "gemm": 0.28,
    "attention": 0.18,
    "elementwise": 0.08,
    "memory": 0.06,
    "grouped_gemm": 0.05,
    "operator": 0.25,
    "collective": 0.10,
}

QUICK_PLAN = TimingPlan(warmup=1, min_repeats=3, max_repeats=5, target_s=0.005)
FULL_PLAN = TimingPlan(warmup=3, min_repeats=5, max_repeats=30, target_s=0.08)


def parse_sections(text: str | None) -> tuple[str, ...]:
    """``--only gemm,attention`` -> the sections, in the run's order."""
    if not text:
        return SECTIONS
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in SECTIONS:
            raise ConfigError(
                f"unknown section {name!r}; choose from {', '.join(SECTIONS)}", "--only"
            )
    return tuple(s for s in SECTIONS if s in names)


def parse_dtypes(text: str | None) -> tuple[str, ...] | None:
    """``--dtypes bf16,fp8`` -> the dtypes (``None``: the device's defaults)."""
    if not text:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in m.DTYPES:
            raise ConfigError(
                f"unknown dtype {name!r}; choose from {', '.join(m.DTYPES)}", "--dtypes"
            )
    return tuple(d for d in m.DTYPES if d in names)


@dataclass(frozen=True)
class CalibrationOptions:
    """What ``deepflow calibrate`` was asked to do."""

    device: str = "auto"
    quick: bool = False
    sections: tuple[str, ...] = SECTIONS
    dtypes: tuple[str, ...] | None = None
    max_seconds: float = 240.0
    command: str = "deepflow calibrate"

    def __post_init__(self) -> None:
        if not self.max_seconds > 0:
            raise ConfigError(f"must be positive, got {self.max_seconds}", "--max-seconds")


@dataclass
class CalibrationRun:
    """The calibration (the file's contents), how long it took and whether it was
    interrupted (Ctrl-C: what was measured until then is kept)."""

    data: dict[str, Any]
    elapsed_s: float
    interrupted: bool = False
    counts: dict[str, int] = field(default_factory=dict)


def _dtypes_for(device: DeviceInfo, dtypes: tuple[str, ...] | None) -> tuple[str, ...]:
    if dtypes is not None:
        return dtypes
    return m.DTYPES if device.is_gpu else ("fp32", "bf16")


def plan_cases(
    device: DeviceInfo,
    options: CalibrationOptions,
    operator_shapes: Sequence[tuple[str, dict[str, Any]]],
) -> list[m.Case]:
    """Every case of the run, in the order they run."""
    dtypes = _dtypes_for(device, options.dtypes)
    quick = options.quick
    cases: list[m.Case] = []
    sec = options.sections
    if "gemm" in sec:
        cases += m.gemm_cases(dtypes, quick)
    if "attention" in sec:
        cases += m.attention_cases(dtypes, quick)
    if "elementwise" in sec:
        cases += m.elementwise_cases(dtypes, quick)
    if "memory" in sec:
        cases += m.memory_cases(quick)
    if "gemm" in sec:
        cases += m.grouped_gemm_cases(dtypes, quick)
    if "operator" in sec:
        op_dtypes = (
            tuple(d for d in options.dtypes if d in ("fp32", "tf32", "fp16", "bf16"))
            if options.dtypes is not None
            else ("fp32",)
        )
        cases += m.operator_cases(operator_shapes, op_dtypes, quick)
    return cases


def _shares(cases: Sequence[m.Case], collective: bool) -> dict[str, float]:
    groups: dict[str, int] = {}
    for c in cases:
        groups.setdefault(c.group, 0)
    per_kind: dict[str, int] = {}
    for g in groups:
        kind = g.split("/")[0]
        per_kind[kind] = per_kind.get(kind, 0) + 1
    shares = {g: _SHARES[g.split("/")[0]] / per_kind[g.split("/")[0]] for g in groups}
    if collective:
        shares["collective"] = _SHARES["collective"]
    return shares


def resolve_device(requested: str) -> DeviceInfo:
    """The device ``--device`` names on this machine; a one-line :class:`ConfigError`
    without PyTorch, or for a GPU that is not there (call it before starting a display)."""
    return select_device(requested, import_torch())


def run_calibration(
    options: CalibrationOptions,
    operator_shapes: Sequence[tuple[str, dict[str, Any]]] = (),
    on_case: Callable[[int, int, str], None] | None = None,
) -> CalibrationRun:
    """Measure this machine's accelerator; ``on_case(done, total, label)`` reports progress.

    ``operator_shapes`` are the operator profiles to measure (the CLI passes
    :func:`deepflow.workload.profiles.builtin_operator_shapes`).
    """
    t_start = time.perf_counter()
    deadline = t_start + options.max_seconds
    torch = import_torch()
    device = select_device(options.device, torch)
    torch.manual_seed(0)
    notes: list[str] = []
    records: list[dict[str, object]] = []
    plan = QUICK_PLAN if options.quick else FULL_PLAN
    flush = 0
    if device.is_gpu:
        l2 = int(device.properties.get("l2_bytes", 0) or 0)  # type: ignore[call-overload]
        flush = max(256 << 20, 2 * l2)
    timer = Timer(torch, device.torch_device, plan, flush)
    ctx = m.Context(torch, device.torch_device, device.backend, timer, options.quick, deadline)
    cases = plan_cases(device, options, operator_shapes)
    want_collective = "collective" in options.sections
    can_collective = want_collective and device.is_gpu and device.count > 1
    if want_collective and not can_collective:
        why = (
            f"1 {device.backend} device visible"
            if device.is_gpu
            else "collectives are measured across GPUs only"
        )
        notes.append(f"collective: skipped: {why}")
    shares = _shares(cases, can_collective)
    order = list(dict.fromkeys([c.group for c in cases]))
    if can_collective:
        order.append("collective")
    total = len(cases) + (1 if can_collective else 0)
    done = 0
    interrupted = False
    counts: dict[str, int] = {}
    skipped: dict[tuple[str, str], list[str]] = {}
    by_group: dict[str, list[m.Case]] = {}
    for c in cases:
        by_group.setdefault(c.group, []).append(c)
    fp8_why = m.fp8_supported(ctx) if "gemm/fp8" in by_group else None
    if fp8_why:
        notes.append(f"gemm/fp8: skipped: {fp8_why}")
        done += len(by_group.pop("gemm/fp8"))
        order = [g for g in order if g != "gemm/fp8"]
    try:
        for gi, group in enumerate(order):
            now = time.perf_counter()
            left_share = sum(shares[g] for g in order[gi:])
            group_deadline = now + max(deadline - now, 0.0) * shares[group] / left_share
            if group == "collective":
                from deepflow.hardware.calibrate.collective import measure_collectives

                if on_case:
                    on_case(done, total, "collectives")
                try:
                    recs, left = measure_collectives(
                        device.count, "nccl", options.quick, max(group_deadline - now, 1.0)
                    )
                except Exception as exc:  # a worker process failed: keep the rest of the run
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                    notes.append(f"collective: failed: {first[:200]}")
                    recs, left = [], 0
                records += recs
                counts["collective"] = len(recs)
                if left:
                    notes.append(f"collective: {left} sizes not measured: time budget spent")
                done += 1
                continue
            group_cases = by_group[group]
            ctx.deadline = group_deadline
            for i, case in enumerate(group_cases):
                if on_case:
                    on_case(done, total, case.label)
                if time.perf_counter() >= group_deadline:
                    rest = len(group_cases) - i
                    notes.append(
                        f"{group}: {rest} of {len(group_cases)} cases not measured: time "
                        f"budget spent (--max-seconds {options.max_seconds:g})"
                    )
                    done += rest
                    break
                try:
                    recs = case.run(ctx)
                except (m.SkipCase, TimeUp, RuntimeError, NotImplementedError) as exc:
                    text = str(exc).strip()
                    reason = text.splitlines()[0][:160] if text else type(exc).__name__
                    detail = case.label
                    if isinstance(exc, TimeUp):
                        detail += f" ({reason})"
                        reason = "time budget spent"
                    elif isinstance(exc, m.SkipCase):
                        detail += f" ({exc.detail})" if exc.detail else ""
                    else:
                        reason = f"{type(exc).__name__}: {reason}"
                    skipped.setdefault((group, reason), []).append(detail)
                    if device.is_gpu:
                        torch.cuda.empty_cache()
                    recs = []
                for rec in recs:
                    rec["time_s"] = float(f"{rec['time_s']:.5g}")
                records += recs
                counts[case.kind] = counts.get(case.kind, 0) + len(recs)
                done += 1
    except KeyboardInterrupt:
        interrupted = True
        notes.append(f"interrupted after {done} of {total} cases")
    for (group, reason), labels in skipped.items():
        example = labels[0] if len(labels) == 1 else f"{len(labels)} cases, e.g. {labels[0]}"
        notes.append(f"{group}: {reason}: skipped {example}")
    if on_case:
        on_case(total, total, "done")
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "device": {"name": device.name, "backend": device.backend, "count": device.count},
        "environment": describe_environment(device, torch, options.command),
        "measurements": records,
        "notes": notes,
    }
    return CalibrationRun(data, time.perf_counter() - t_start, interrupted, counts)
