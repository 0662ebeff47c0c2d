"""Elastic training: job completion time on a changing number of accelerators.

VirtualFlow (Or, Zhang, Freedman, MLSys 2022, arXiv 2009.09523; reference sec. 5.3) keeps
the number of virtual nodes ``V`` and the global batch ``B`` fixed while the job is resized:
on ``n`` replicas each processes ``V / n`` VNs per step, so the hyperparameters and the
training trajectory do not change; only the step time does. The alternative without virtual
nodes restarts the job with the per-replica batch kept, so the global batch becomes
``n * b``: every resize changes the semantics of a step (learning-rate schedules and
convergence per sample are those of another batch size), and the number of steps needed for
the same number of samples changes.

Job completion time (reference sec. 5.3, "JCT model")::

    JCT = queue wait + sum_phases steps_i T_iter(n_i) + sum resize overheads

:func:`elastic_jct` walks a resource timeline (``(start_s, accelerators)`` entries, each
holding until the next) and returns, per mode, the phases with their replica count, step
time, steps and samples done, and the resize cost. Work is divisible at phase boundaries
(a step in flight when the allocation changes is counted fractionally; the error is under
one step per resize). Resize cost, paid whenever the used replica count changes after the
job has started (the first start is free in both modes):

* ``virtual_nodes`` mode: ``restart_overhead_s`` plus, when growing, a broadcast of the
  model weights to the new replicas (VirtualFlow's resize broadcasts the variables from the
  existing ranks and does not restart from a checkpoint; it does not transfer optimizer
  slots);
* ``new_batch`` mode: ``restart_overhead_s`` plus a reload of the checkpoint (weights and
  optimizer state) by every replica, modelled as a broadcast of those bytes.

``restart_overhead_s`` defaults to :data:`DEFAULT_RESTART_OVERHEAD_S` = 30 s, an assumed
figure for spawning workers, initializing the communicator and warming up the input
pipeline; it is not a measurement, so pass the one of your cluster.

In ``virtual_nodes`` mode the replicas used are the largest divisor of ``V`` not above the
replicas available (each replica takes the same number of VNs; VirtualFlow's scheduler
additionally restricts allocations to powers of two); the others idle. In ``new_batch`` mode
all available replicas are used, each with the per-replica batch ``b = B / demand`` of the
job's design point (``demand`` replicas), split in VNs of ``s = B / V`` so that per-replica
memory is the same as in the other mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from deepflow.errors import ConfigError
from deepflow.estimate import evaluate
from deepflow.network.collectives import Collective, collective_time
from deepflow.network.hierarchy import Hierarchy, place_group
from deepflow.parallel.batch import StrategyBatch
from deepflow.specs import ModelSpec, StrategySpec, SystemSpec, model_from, system_from
from deepflow.specs.files import load_config_file
from deepflow.specs.scenario import config_error_from
from deepflow.units import format_time

__all__ = [
    "DEFAULT_RESTART_OVERHEAD_S",
    "MODES",
    "ElasticJob",
    "ElasticResult",
    "Phase",
    "StepModel",
    "elastic_jct",
    "estimator_step_model",
    "job_from_dict",
    "load_timeline",
    "plot_progress",
    "progress_series",
]

DEFAULT_RESTART_OVERHEAD_S = 30.0
MODES = ("virtual_nodes", "new_batch")


@dataclass(frozen=True)
class StepModel:
    """What the JCT walk needs from a cost model (all in seconds).

    ``step_time(replicas, global_batch, virtual_nodes)`` is the time of one optimizer step
    (``inf`` if it does not fit); ``resize_time(old, new, mode)`` the cost of changing
    from ``old`` to ``new`` replicas, resize overhead included.
    """

    step_time: Callable[[int, int, int], float]
    resize_time: Callable[[int, int, str], float]


@dataclass(frozen=True)
class ElasticJob:
    """A job: ``steps`` optimizer steps of ``global_batch_size`` sequences in
    ``virtual_nodes`` VNs, designed for ``demand`` replicas (sets the ``new_batch`` mode's
    per-replica batch). ``replica_size`` accelerators form one data-parallel replica."""

    steps: int
    global_batch_size: int
    virtual_nodes: int
    demand: int
    replica_size: int = 1

    @property
    def samples(self) -> int:
        return self.steps * self.global_batch_size


@dataclass(frozen=True)
class Phase:
    """One interval of constant allocation in one mode."""

    start_s: float
    end_s: float
    accelerators: int
    replicas: int
    global_batch_size: int
    step_time_s: float
    resize_s: float
    steps: float
    samples: float


@dataclass(frozen=True)
class ElasticResult:
    """Per-mode phases and completion times (``inf`` if the timeline never finishes)."""

    job: ElasticJob
    phases: dict[str, tuple[Phase, ...]]
    jct_s: dict[str, float]
    steps: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    """Per mode whose JCT is infinite: why the job never finishes."""

    def table(self) -> list[dict[str, Any]]:
        """Rows ``mode, start, end, accelerators, replicas, batch, step time, resize, steps``."""
        rows = []
        for mode, phases in self.phases.items():
            for p in phases:
                rows.append({"mode": mode, **p.__dict__})
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job.__dict__,
            "jct_s": {k: (v if math.isfinite(v) else None) for k, v in self.jct_s.items()},
            "steps": self.steps,
            "reasons": self.reasons,
            "phases": self.table(),
        }


def _usable(mode: str, job: ElasticJob, accelerators: int) -> int:
    replicas = accelerators // job.replica_size
    if mode == "new_batch":
        return replicas
    # largest divisor of V not above the available replicas (equal VNs per replica)
    return max((d for d in range(1, min(replicas, job.virtual_nodes) + 1)
                if job.virtual_nodes % d == 0), default=0)  # fmt: skip


def elastic_jct(
    job: ElasticJob, timeline: Sequence[tuple[float, int]], model: StepModel
) -> ElasticResult:
    """Job completion time of ``job`` on ``timeline`` in both modes (module docstring)."""
    entries = sorted((float(t), int(n)) for t, n in timeline)
    assert entries, "empty timeline"
    phases: dict[str, tuple[Phase, ...]] = {}
    jct: dict[str, float] = {}
    steps_taken: dict[str, float] = {}
    reasons: dict[str, str] = {}
    per_replica = job.global_batch_size / job.demand
    vns_per_replica = job.virtual_nodes // job.demand
    for mode in MODES:
        left = float(job.samples)
        done_steps = 0.0
        current = 0
        started = False
        out: list[Phase] = []
        end = math.inf
        for i, (start, acc) in enumerate(entries):
            stop = entries[i + 1][0] if i + 1 < len(entries) else math.inf
            n = _usable(mode, job, acc)
            if n == 0:
                current = 0 if not started else current
                out.append(Phase(start, stop, acc, 0, 0, math.inf, 0.0, 0.0, 0.0))
                continue
            if mode == "new_batch":
                gbs, vns = round(n * per_replica), n * vns_per_replica
            else:
                gbs, vns = job.global_batch_size, job.virtual_nodes
            step = model.step_time(n, gbs, vns)
            resize = model.resize_time(current, n, mode) if started and n != current else 0.0
            started, current = True, n
            usable_time = max(0.0, stop - start - resize)
            rate = gbs / step if math.isfinite(step) and step > 0 else 0.0
            samples = min(left, rate * usable_time)
            finish = start + resize + samples / rate if rate > 0 and samples >= left else math.inf
            out.append(
                Phase(start, min(stop, finish), acc, n, gbs, step, resize, samples / gbs, samples)
            )
            left -= samples
            done_steps += samples / gbs
            if left <= 0:
                end = finish
                break
        phases[mode], jct[mode], steps_taken[mode] = tuple(out), end, done_steps
        if not math.isfinite(end):
            reasons[mode] = _never_finishes(job, out, left)
    return ElasticResult(job, phases, jct, steps_taken, reasons)


def _never_finishes(job: ElasticJob, phases: Sequence[Phase], left: float) -> str:
    """Why a mode's job completion time is infinite."""
    last = phases[-1]
    if last.replicas == 0:
        return (
            f"the timeline ends with {last.accelerators} accelerators, fewer than one "
            f"replica of {job.replica_size} (no progress after t={format_time(last.start_s)})"
        )
    if not math.isfinite(last.step_time_s):
        return (
            f"the step does not fit on {last.replicas} replicas of {job.replica_size} "
            "accelerators (infeasible: out of memory or indivisible)"
        )
    return f"{left:,.0f} samples remain when the timeline ends"


def progress_series(result: ElasticResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per mode, ``(time_s, fraction of samples done)`` at phase boundaries: the numbers a
    progress plot shows (piecewise linear between the points)."""
    out = {}
    total = float(result.job.samples)
    for mode, phases in result.phases.items():
        t, f, done = [0.0], [0.0], 0.0
        for p in phases:
            if p.replicas and p.resize_s:
                t.append(min(p.end_s, p.start_s + p.resize_s))
                f.append(done / total)
            elif p.start_s > t[-1]:
                t.append(p.start_s)
                f.append(done / total)
            done += p.samples
            if math.isfinite(p.end_s):
                t.append(p.end_s)
                f.append(done / total)
        out[mode] = (np.array(t), np.array(f))
    return out


def plot_progress(result: ElasticResult, path: str | Path) -> Path:
    """Plot the training progress of both modes over time to ``path`` (needs the ``plot``
    extra: matplotlib is imported here, not at module import)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "plotting needs matplotlib: pip install 'deepflow[plot]'", "--plot"
        ) from exc
    fig, ax = plt.subplots(figsize=(7, 4))
    for mode, (t, f) in progress_series(result).items():
        jct = result.jct_s[mode]
        label = f"{mode} (JCT {jct / 3600:.2f} h)" if math.isfinite(jct) else f"{mode} (unfinished)"
        ax.plot(t / 3600.0, 100.0 * f, label=label)
    ax.set_xlabel("time (h)")
    ax.set_ylabel("samples done (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- estimator


def estimator_step_model(
    model: ModelSpec,
    system: SystemSpec,
    strategy: StrategySpec,
    replica_size: int,
    restart_overhead_s: float = DEFAULT_RESTART_OVERHEAD_S,
) -> StepModel:
    """Step and resize times from the closed-form estimator on ``system``'s accelerator."""

    @cache
    def run(replicas: int, gbs: int, vns: int) -> tuple[float, float, float]:
        sys_n = system.replace(num_accelerators=replicas * replica_size)
        assert isinstance(sys_n, SystemSpec)
        spec = strategy.replace(dp=replicas, virtual_nodes=vns, micro_batch_size=gbs // vns)
        assert isinstance(spec, StrategySpec)
        r = evaluate(model, sys_n, gbs, StrategyBatch.from_specs([spec]))
        return (
            float(r.step_time[0]),
            float(r.memory["weights"][0]),
            float(r.memory["optimizer_state"][0]),
        )

    def step_time(replicas: int, gbs: int, vns: int) -> float:
        return run(replicas, gbs, vns)[0]

    def resize_time(old: int, new: int, mode: str) -> float:
        # bytes per accelerator do not depend on the batch: read them at one sequence
        _, weights, opt = run(1, 1, 1)
        # VirtualFlow broadcasts weights to new ranks; a restart reloads the checkpoint
        grow = weights if new > old else 0.0
        size = grow if mode == "virtual_nodes" else weights + opt
        hierarchy = Hierarchy.from_system(system)
        group = place_group(new, replica_size, hierarchy.scale_up_size)
        bcast = float(collective_time(Collective.BROADCAST, size, group, hierarchy))
        return restart_overhead_s + bcast

    return StepModel(step_time, resize_time)


def job_from_dict(data: object, name: str = "timeline") -> tuple[ElasticJob, list, StepModel]:
    """Parse a timeline file: ``model``, ``system`` (preset or mapping: the accelerator
    type), optional ``strategy`` (tp, pp, precision ...), ``global_batch_size``,
    ``virtual_nodes``, ``steps``, optional ``demand`` (accelerators; default the first
    entry's), optional ``restart_overhead_s`` and ``timeline`` (a list of ``[start_s,
    accelerators]`` pairs or ``{start_s, accelerators}`` mappings)."""
    known = (
        "name", "model", "system", "strategy", "global_batch_size", "virtual_nodes",
        "steps", "demand", "restart_overhead_s", "timeline",
    )  # fmt: skip
    if not isinstance(data, dict):
        raise ConfigError(f"a timeline file must be a mapping with keys {', '.join(known)}")
    for key in data:
        if key not in known:
            raise ConfigError("unknown key", str(key))
    for key in ("model", "system", "global_batch_size", "virtual_nodes", "steps", "timeline"):
        if key not in data:
            raise ConfigError("missing required key", key)
    model = model_from(data["model"])
    system = system_from(data["system"])
    strat = data.get("strategy") or {}
    if not isinstance(strat, dict):
        raise ConfigError(f"expected a mapping, got {strat!r}", "strategy")
    for key in ("dp", "virtual_nodes", "micro_batch_size"):
        if key in strat:
            raise ConfigError(
                "set from the timeline (virtual_nodes at the top level)", f"strategy.{key}"
            )
    from pydantic import ValidationError

    try:
        strategy = StrategySpec.model_validate({**strat, "dp": 1})
    except ValidationError as exc:
        raise config_error_from(exc, StrategySpec, "strategy") from None
    ints = {}
    for key in ("global_batch_size", "virtual_nodes", "steps"):
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"expected a positive integer (got {v!r})", key)
        ints[key] = v
    if ints["global_batch_size"] % ints["virtual_nodes"]:
        raise ConfigError(
            f"does not divide global_batch_size={ints['global_batch_size']} "
            f"(got {ints['virtual_nodes']})",
            "virtual_nodes",
        )
    raw = data["timeline"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(
            f"expected a non-empty list of [start_s, accelerators] (got {raw!r})", "timeline"
        )
    timeline = []
    for i, entry in enumerate(raw):
        if isinstance(entry, dict):
            entry = [entry.get("start_s"), entry.get("accelerators")]
        ok = isinstance(entry, list) and len(entry) == 2
        if ok:
            t, n = entry
            ok = isinstance(t, (int, float)) and t >= 0 and isinstance(n, int) and n >= 0
        if not ok:
            raise ConfigError(
                f"expected [start_s >= 0, accelerators >= 0] (got {entry!r})", f"timeline[{i}]"
            )
        timeline.append((float(entry[0]), int(entry[1])))
    r = strategy.model_parallel_size
    demand_acc = data.get("demand", timeline[0][1])
    if isinstance(demand_acc, bool) or not isinstance(demand_acc, int) or demand_acc < r:
        raise ConfigError(f"expected an integer >= tp*pp*cp={r} (got {demand_acc!r})", "demand")
    demand = demand_acc // r
    if ints["virtual_nodes"] % demand:
        raise ConfigError(
            f"virtual_nodes={ints['virtual_nodes']} is not a multiple of the {demand} replicas "
            "of the design point",
            "demand",
        )
    overhead = data.get("restart_overhead_s", DEFAULT_RESTART_OVERHEAD_S)
    if isinstance(overhead, bool) or not isinstance(overhead, (int, float)) or overhead < 0:
        raise ConfigError(f"expected seconds >= 0 (got {overhead!r})", "restart_overhead_s")
    job = ElasticJob(
        steps=ints["steps"],
        global_batch_size=ints["global_batch_size"],
        virtual_nodes=ints["virtual_nodes"],
        demand=demand,
        replica_size=r,
    )
    return job, timeline, estimator_step_model(model, system, strategy, r, float(overhead))


def load_timeline(path: str | Path) -> tuple[ElasticJob, list, StepModel]:
    """Load a timeline file (YAML or JSON); errors name the file and the key path."""
    return load_config_file(path, lambda data, name: job_from_dict(data, name=name))
