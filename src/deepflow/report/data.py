"""The numbers of ``deepflow report``: computed here, rendered by :mod:`.html`.

:func:`report_data` is a pure function of a scenario (docs/STYLE.md, practice 13: compute
the report's data first, render second): the closed-form prediction, its time and memory
breakdowns as bars with their shares, the pipeline timeline of the event-driven simulator,
and the error of the *nearest published measurement* that ``deepflow validate`` ships.

Nearest published measurement
    Among the step-time cases of every data set of :data:`STEP_TIME_DATASETS` whose
    accelerator is the scenario's accelerator (same preset name), the one whose model has
    the closest total parameter count on a log scale, ``|ln(N_case / N)|``; ties go to the
    closest accelerator count on a log scale, then to the data set's order and the row's
    order. Its error is ``(predicted - measured) / measured`` of that case, exactly what
    ``deepflow validate`` prints for it. No case on the same accelerator: no nearest
    measurement, and the report says so. This tells a reader how far the model was off on
    the published run most like theirs; it is not an error bar for their scenario.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from deepflow.errors import ConfigError
from deepflow.estimate import Prediction, predict
from deepflow.network.collectives import Algorithm
from deepflow.network.programs import ProgramAlgorithm
from deepflow.report.text import strategy_line
from deepflow.sim import simulate
from deepflow.sim.executor import Execution
from deepflow.specs.scenario import Scenario
from deepflow.units import format_bytes, format_si, format_time
from deepflow.validation.datasets import Case
from deepflow.validation.runner import STEP_TIME_DATASETS, run_case
from deepflow.workload.transformer import parameter_count

__all__ = [
    "Bar",
    "NearestMeasurement",
    "ReportData",
    "Segment",
    "nearest_case",
    "report_data",
    "timeline_segments",
]

TIMELINE_RESOLUTION = 2000
"""Timeline segments closer than ``span / TIMELINE_RESOLUTION`` merge (one pixel of a
2,000-pixel-wide chart): a 1,024-GPU GPT-3 step has 55,000 tasks, a chart shows a few
thousand bars."""


@dataclass(frozen=True)
class Bar:
    """One part of a breakdown: its name, its value (seconds or bytes) and its share of the
    total (0..1)."""

    label: str
    value: float
    share: float
    text: str  # the value formatted with its unit


@dataclass(frozen=True)
class Segment:
    """A run of consecutive tasks of one track (rank and stream) of the simulated step with
    the same phase, micro-batch and chunk, from the first start to the last end."""

    track: str
    phase: str
    category: str
    micro_batch: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class NearestMeasurement:
    """The published measurement nearest the scenario (see the module docstring)."""

    dataset: str
    row_id: str
    description: str
    source: str
    parameters: int
    num_accelerators: int
    measured_s: float
    predicted_s: float | None
    error: float | None
    reason: str | None


@dataclass(frozen=True)
class ReportData:
    """Everything the HTML report shows, in SI units; ``timeline_note`` says why there is no
    timeline (the simulator refused the scenario), ``nearest_note`` why there is no nearest
    measurement."""

    title: str
    subtitle: str
    strategy: str
    prediction: Prediction
    headline: tuple[tuple[str, str], ...]
    time_parts: tuple[Bar, ...]
    memory_parts: tuple[Bar, ...]
    memory_capacity_bytes: float
    timeline: tuple[Segment, ...]
    tracks: tuple[str, ...]
    simulated_step_s: float | None
    timeline_note: str | None
    nearest: NearestMeasurement | None
    nearest_note: str | None


def _bars(parts: Mapping[str, float], total: float, fmt: Callable[[float], str]) -> tuple[Bar, ...]:
    out = []
    for key, value in parts.items():
        if value > 0:
            share = value / total if total > 0 and math.isfinite(total) else 0.0
            out.append(Bar(key, float(value), share, fmt(value)))
    return tuple(out)


def timeline_segments(
    execution: Execution, labels: Mapping[int, str]
) -> tuple[tuple[Segment, ...], tuple[str, ...]]:
    """The simulated step as segments per track, tracks in rank then stream order.

    Consecutive tasks of one ``(rank, stream)`` in program order merge when they share
    phase, micro-batch and chunk and the gap between them is below
    ``makespan / TIMELINE_RESOLUTION``; zero-length tasks are dropped."""
    graph = execution.graph
    span = execution.makespan
    gap = span / TIMELINE_RESOLUTION if span > 0 else 0.0
    order = {"compute": 0, "pp": 1, "dp": 2}
    streams = graph.streams()
    keys = sorted(streams, key=lambda k: (k[0], order.get(k[1], 3), k[1]))
    segments: list[Segment] = []
    tracks: list[str] = []
    for rank, stream in keys:
        track = f"{labels.get(rank, f'rank {rank}')}: {stream}"
        tracks.append(track)
        current: Segment | None = None
        cur_key: tuple[str, int, int] | None = None
        for tid in streams[(rank, stream)]:
            t = graph.tasks[tid]
            if t.duration_s <= 0:
                continue
            start, end = float(execution.start[tid]), float(execution.end[tid])
            key = (t.phase, t.micro_batch, t.chunk)
            if current is not None and key == cur_key and start - current.end_s <= gap:
                current = Segment(
                    track, current.phase, current.category, current.micro_batch,
                    current.start_s, max(end, current.end_s),
                )  # fmt: skip
                continue
            if current is not None:
                segments.append(current)
            current = Segment(track, t.phase, t.category, t.micro_batch, start, end)
            cur_key = key
        if current is not None:
            segments.append(current)
    return tuple(segments), tuple(tracks)


def nearest_case(scenario: Scenario) -> tuple[Case, str, int] | None:
    """The nearest published case to ``scenario`` (module docstring), with its data set's
    source and its parameter count; ``None`` when no case ran on the same accelerator."""
    accel = scenario.system.accelerator.name
    params = parameter_count(scenario.model).total
    gpus = scenario.system.num_accelerators
    best: tuple[tuple[float, float, int], Case, str, int] | None = None
    order = 0
    for dataset in STEP_TIME_DATASETS:
        for case in dataset.cases():
            order += 1
            case_scenario = case.to_scenario()
            if case_scenario.system.accelerator.name != accel:
                continue
            n = parameter_count(case_scenario.model).total
            key = (
                abs(math.log(n / params)),
                abs(math.log(case_scenario.system.num_accelerators / gpus)),
                order,
            )
            if best is None or key < best[0]:
                best = (key, case, dataset.source, n)
    if best is None:
        return None
    return best[1], best[2], best[3]


def _nearest(scenario: Scenario) -> tuple[NearestMeasurement | None, str | None]:
    found = nearest_case(scenario)
    if found is None:
        return None, (
            f"no published measurement on {scenario.system.accelerator.name} among "
            "the data sets of deepflow validate"
        )
    case, source, params = found
    row = run_case(case)
    gpus = case.to_scenario().system.num_accelerators
    return (
        NearestMeasurement(
            dataset=case.dataset,
            row_id=case.row_id,
            description=case.description,
            source=source,
            parameters=params,
            num_accelerators=gpus,
            measured_s=row.measured,
            predicted_s=row.predicted,
            error=row.error,
            reason=row.reason,
        ),
        None,
    )


def report_data(
    scenario: Scenario,
    algorithms: Mapping[str, Algorithm | ProgramAlgorithm] | None = None,
) -> ReportData:
    """The numbers of the report of ``scenario`` (``algorithms`` as in ``predict``)."""
    prediction = predict(scenario, algorithms)
    acc = scenario.system.accelerator
    headline: list[tuple[str, str]] = []
    if prediction.feasible:
        headline = [
            ("step time", format_time(prediction.step_time_s)),
            ("throughput", format_si(prediction.tokens_per_s, "tokens/s")),
            ("MFU / HFU", f"{prediction.mfu:.1%} / {prediction.hfu:.1%}"),
            ("model FLOPs/step", format_si(prediction.model_flops_per_step, "FLOP")),
            (
                "peak memory",
                f"{format_bytes(prediction.peak_memory_bytes)} of "
                f"{format_bytes(acc.memory_capacity)} (stage {prediction.peak_memory_stage})",
            ),
            ("micro-batches", str(prediction.micro_batches)),
        ]
        if prediction.time_to_train_s is not None:
            headline.append(("time to train", format_time(prediction.time_to_train_s)))
    time_parts = (
        _bars(prediction.breakdown_s, prediction.step_time_s, format_time)
        if prediction.feasible
        else ()
    )
    memory_parts = _bars(prediction.memory_bytes, acc.memory_capacity, format_bytes)

    timeline: tuple[Segment, ...] = ()
    tracks: tuple[str, ...] = ()
    simulated: float | None = None
    note: str | None = None
    if not prediction.feasible:
        note = f"not simulated: infeasible ({prediction.reason})"
    else:
        try:
            sim = simulate(scenario, algorithms=algorithms)
        except ConfigError as exc:
            note = f"not simulated: {exc}"
        else:
            simulated = sim.step_time_s
            timeline, tracks = timeline_segments(sim.execution, sim.rank_labels())
    nearest, nearest_note = _nearest(scenario)
    return ReportData(
        title=scenario.name,
        subtitle=(
            f"{scenario.model.name} on {scenario.system.num_accelerators} x {acc.name} "
            f"({scenario.system.name})"
        ),
        strategy=strategy_line(scenario),
        prediction=prediction,
        headline=tuple(headline),
        time_parts=time_parts,
        memory_parts=memory_parts,
        memory_capacity_bytes=float(acc.memory_capacity),
        timeline=timeline,
        tracks=tracks,
        simulated_step_s=simulated,
        timeline_note=note,
        nearest=nearest,
        nearest_note=nearest_note,
    )
