"""A cluster of accelerators running a trace of elastic jobs: VirtualFlow's scheduler
against a static baseline.

VirtualFlow (Or, Zhang, Freedman, MLSys 2022, arXiv 2009.09523) reports up to 48 % lower
job completion time from a cluster scheduler that grows and shrinks jobs by moving their
virtual nodes (reference notes sec. 5.3). Its scheduler is ``WorkloadScheduler`` in the
authors' ``deploy/scheduler.py`` (github.com/andrewor14/models, branch ``virtual``):

* :func:`weighted_fair_shares` is ``get_weighted_fair_shares``: each unallocated job's
  share is ``free GPUs * priority / sum of priorities``, at least 1, rounded down to a power
  of two; while the shares exceed the free GPUs they are halved, lowest priority first;
  jobs whose share covers their demand get their demand and the round repeats with the
  rest, otherwise every remaining job gets its share; GPUs left over are handed out by
  doubling allocations in decreasing priority order, never beyond a job's demand;
* :func:`simulate_cluster` with ``policy="elastic"`` runs ``schedule`` on every arrival
  and completion: queued jobs (highest priority first) are admitted one by one as long as
  admitting them does not lower the fair share of a running job of higher priority, and
  every running job whose fair share changed is resized (``ResizeEvent``): it keeps its
  global batch and ``V`` virtual nodes, now spread over the new number of GPUs
  (:mod:`deepflow.virtual.torch_runtime` does this in PyTorch);
* ``policy="static"`` is the baseline: the same admission and the same fair shares for
  the jobs it admits, but a running job keeps the allocation it started with until it
  finishes; a queued job waits until its share fits in the free GPUs.

With no resize, the two policies are the same schedule (a property test). A job's step
time on ``n`` GPUs comes from the estimator (``predict``'s model:
:func:`deepflow.virtual.elastic.estimator_step_model`, cached per model and ``(n, B,
V)``); a resize pauses the job for the resize time of that module (an assumed
``resize_overhead_s`` plus the broadcast of the weights to new GPUs). Work is divisible:
a job's progress is counted in fractional steps. The simulation is deterministic; a trace
may be generated from a seed (:func:`generate_jobs`: Poisson arrivals, as the authors'
``deploy/scheduler_traces/medium20_*jph.json`` traces of 20 jobs at 5 to 12 jobs per hour).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepflow.errors import ConfigError
from deepflow.specs import StrategySpec, model_from, system_from
from deepflow.specs.files import load_config_file
from deepflow.virtual.elastic import DEFAULT_RESTART_OVERHEAD_S, estimator_step_model

__all__ = [
    "POLICIES",
    "ClusterJob",
    "ClusterResult",
    "JobOutcome",
    "cluster_from_dict",
    "generate_jobs",
    "load_cluster_trace",
    "simulate_cluster",
    "weighted_fair_shares",
]

POLICIES = ("elastic", "static")


@dataclass(frozen=True)
class ClusterJob:
    """One job of a trace: ``steps`` optimizer steps of ``global_batch_size`` samples in
    ``virtual_nodes`` VNs, asking for ``demand`` GPUs (a power of two) at ``priority``."""

    name: str
    arrival_s: float
    model: str
    global_batch_size: int
    virtual_nodes: int
    steps: int
    demand: int
    priority: float = 1.0


@dataclass(frozen=True)
class JobOutcome:
    """What happened to a job: start and end, its completion time (end - arrival), its
    allocations ``(time, GPUs)`` and the number of resizes. ``reason`` says why a job
    never ran (``jct_s`` is then ``inf``)."""

    name: str
    arrival_s: float
    start_s: float
    end_s: float
    jct_s: float
    allocations: tuple[tuple[float, int], ...]
    resizes: int
    reason: str = ""


@dataclass(frozen=True)
class ClusterResult:
    """Per-job outcomes of one policy, their average JCT and the makespan (last end)."""

    policy: str
    gpus: int
    jobs: tuple[JobOutcome, ...]

    @property
    def ran(self) -> tuple[JobOutcome, ...]:
        """The jobs that ran (the others are infeasible: ``reason`` says why)."""
        return tuple(j for j in self.jobs if not j.reason)

    @property
    def average_jct_s(self) -> float:
        """Mean JCT of the jobs that ran."""
        ran = self.ran
        return float(np.mean([j.jct_s for j in ran])) if ran else 0.0

    @property
    def makespan_s(self) -> float:
        """The last end of a job that ran."""
        return max((j.end_s for j in self.ran), default=0.0)

    @property
    def resizes(self) -> int:
        return sum(j.resizes for j in self.jobs)

    def to_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "policy": self.policy,
            "gpus": self.gpus,
            "average_jct_s": num(self.average_jct_s),
            "makespan_s": num(self.makespan_s),
            "resizes": self.resizes,
            "jobs": [
                {
                    "name": j.name,
                    "arrival_s": j.arrival_s,
                    "start_s": num(j.start_s),
                    "end_s": num(j.end_s),
                    "jct_s": num(j.jct_s),
                    "allocations": [list(a) for a in j.allocations],
                    "resizes": j.resizes,
                    **({"reason": j.reason} if j.reason else {}),
                }
                for j in self.jobs
            ],
        }


def _pow2_floor(x: float) -> int:
    return 2 ** math.floor(math.log2(x))


def weighted_fair_shares(jobs: Sequence[tuple[int, float, int]], gpus: int) -> dict[int, int]:
    """GPUs per job for ``(id, priority, demand)`` entries on ``gpus`` GPUs (VirtualFlow's
    ``get_weighted_fair_shares``; module docstring). Needs ``len(jobs) <= gpus``."""
    if len(jobs) > gpus:
        raise ValueError(f"cannot give {len(jobs)} jobs a GPU each on {gpus} GPUs")
    alloc: dict[int, int] = {}
    left = list(jobs)
    free = gpus
    while left:
        psum = sum(p for _, p, _ in left)
        share = {i: _pow2_floor(max(1.0, free * p / psum)) for i, p, _ in left}
        order = sorted(left, key=lambda j: j[1])  # increasing priority, stable
        k = 0
        while sum(share.values()) > free and k < len(order):
            i = order[k][0]
            if share[i] > 1:
                share[i] //= 2
            else:
                k += 1
        covered = [j for j in left if share[j[0]] >= j[2]]
        if covered:
            for i, _, demand in covered:
                alloc[i] = demand
                free -= demand
            left = [j for j in left if j not in covered]
        else:
            for i, _, _ in left:
                alloc[i] = share[i]
                free -= share[i]
            left = []
    for i, _, demand in sorted(jobs, key=lambda j: -j[1]):
        a = alloc[i]
        while free >= a and demand >= 2 * a:
            free -= a
            a *= 2
        alloc[i] = a
    return alloc


StepTime = Callable[[ClusterJob, int], float]
ResizeTime = Callable[[ClusterJob, int, int], float]


def simulate_cluster(
    jobs: Sequence[ClusterJob],
    gpus: int,
    step_time: StepTime,
    resize_time: ResizeTime,
    policy: str = "elastic",
) -> ClusterResult:
    """Run ``jobs`` on ``gpus`` GPUs under ``policy`` (module docstring).

    ``step_time(job, n)`` is the time of one step on ``n`` GPUs; ``resize_time(job, old,
    new)`` the pause of a resize. A job whose step time is not finite on some allocation
    it could get (a power of two up to its demand) never runs; its outcome says why.
    """
    if policy not in POLICIES:
        raise ConfigError(f"expected one of {', '.join(POLICIES)} (got {policy!r})", "policy")
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].arrival_s, i))
    outcomes: dict[int, JobOutcome] = {}
    pending = []  # arrivals not yet processed, in order
    for i in order:
        job = jobs[i]
        sizes = [2**k for k in range(int(math.log2(job.demand)) + 1)]
        bad = [n for n in sizes if not math.isfinite(step_time(job, n))]
        if bad:
            outcomes[i] = JobOutcome(
                job.name,
                job.arrival_s,
                math.inf,
                math.inf,
                math.inf,
                (),
                0,
                f"infeasible: the step does not fit on {bad[0]} GPU(s)",
            )
        else:
            pending.append(i)
    queue: list[int] = []
    alloc: dict[int, int] = {}
    left: dict[int, float] = {}  # steps left
    pause: dict[int, float] = {}  # resize time still to pay
    start: dict[int, float] = {}
    history: dict[int, list[tuple[float, int]]] = {}
    resizes: dict[int, int] = {}
    t = 0.0
    p = 0

    def entry(i: int) -> tuple[int, float, int]:
        return (i, jobs[i].priority, jobs[i].demand)

    def finish_time(i: int) -> float:
        return t + pause[i] + left[i] * step_time(jobs[i], alloc[i])

    def schedule() -> None:
        running = sorted(alloc, key=lambda i: (jobs[i].arrival_s, i))
        fair = weighted_fair_shares([entry(i) for i in running], gpus) if running else {}
        admitted: list[int] = []
        while queue and len(running) + len(admitted) < gpus:
            cand = queue[0]
            pot = weighted_fair_shares([entry(i) for i in (*running, *admitted, cand)], gpus)
            if policy == "elastic":
                ok = all(
                    not (jobs[i].priority > jobs[cand].priority and pot[i] < fair[i])
                    for i in running
                )
            else:
                # running jobs keep their allocation: admit only what fits beside them
                ok = all(pot[i] >= alloc[i] for i in running) and sum(
                    pot[i] for i in (*admitted, cand)
                ) <= gpus - sum(alloc.values())
            if not ok:
                break
            fair = pot
            admitted.append(queue.pop(0))
        if policy == "elastic":
            for i in running:
                if fair[i] != alloc[i]:
                    pause[i] += resize_time(jobs[i], alloc[i], fair[i])
                    alloc[i] = fair[i]
                    resizes[i] += 1
                    history[i].append((t, fair[i]))
        for i in admitted:
            alloc[i] = fair[i]
            left[i] = float(jobs[i].steps)
            pause[i] = 0.0
            start[i] = t
            resizes[i] = 0
            history[i] = [(t, fair[i])]

    while p < len(pending) or queue or alloc:
        nxt_arrival = jobs[pending[p]].arrival_s if p < len(pending) else math.inf
        ends = {i: finish_time(i) for i in alloc}
        nxt_end = min(ends.values(), default=math.inf)
        nxt = min(nxt_arrival, nxt_end)
        if not math.isfinite(nxt):
            break  # pragma: no cover - queued jobs always fit once the cluster drains
        dt = nxt - t
        for i in alloc:
            paid = min(pause[i], dt)
            pause[i] -= paid
            left[i] -= (dt - paid) / step_time(jobs[i], alloc[i])
        t = nxt
        for i, e in sorted(ends.items()):
            if e <= t:
                outcomes[i] = JobOutcome(
                    jobs[i].name,
                    jobs[i].arrival_s,
                    start[i],
                    e,
                    e - jobs[i].arrival_s,
                    tuple(history[i]),
                    resizes[i],
                )
                del alloc[i], left[i], pause[i]
        while p < len(pending) and jobs[pending[p]].arrival_s <= t:
            queue.append(pending[p])
            p += 1
        queue.sort(key=lambda i: (-jobs[i].priority, jobs[i].arrival_s, i))
        schedule()
    return ClusterResult(policy, gpus, tuple(outcomes[i] for i in range(len(jobs))))


# --------------------------------------------------------------------------- traces


def generate_jobs(spec: dict[str, Any], seed: int) -> list[ClusterJob]:
    """``spec["jobs"]`` jobs with exponential inter-arrival times at
    ``spec["jobs_per_hour"]``, each drawing a template, a demand and a priority uniformly
    (``numpy.random.default_rng(seed)``). A template gives ``model``, ``batch_per_gpu``,
    ``virtual_nodes_per_gpu`` and ``steps``; the job's global batch and ``V`` are those
    per GPU times its demand (VirtualFlow: ``V = demand x VNs per device``)."""
    rng = np.random.default_rng(seed)
    t = 0.0
    out = []
    templates = spec["templates"]
    for k in range(spec["jobs"]):
        t += float(rng.exponential(3600.0 / spec["jobs_per_hour"]))
        tpl = templates[int(rng.integers(len(templates)))]
        demand = int(spec["demands"][int(rng.integers(len(spec["demands"])))])
        priority = float(spec["priorities"][int(rng.integers(len(spec["priorities"])))])
        out.append(
            ClusterJob(
                f"job{k:02d}",
                round(t, 3),
                tpl["model"],
                int(tpl["batch_per_gpu"]) * demand,
                int(tpl["virtual_nodes_per_gpu"]) * demand,
                int(tpl["steps"]),
                demand,
                priority,
            )
        )
    return out


def _positive_int(v: object, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"expected a positive integer (got {v!r})", key)
    return v


def _number(v: object, key: str, minimum: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= minimum:
        raise ConfigError(f"expected a number >= {minimum:g} (got {v!r})", key)
    return float(v)


def _pow2(v: object, key: str) -> int:
    n = _positive_int(v, key)
    if n & (n - 1):
        raise ConfigError(
            f"expected a power of two (VirtualFlow's allocations are powers of two; got {n})",
            key,
        )
    return n


def _check_job(job: ClusterJob, gpus: int, models: dict[str, Any], key: str) -> None:
    if job.model not in models:
        raise ConfigError(
            f"unknown model {job.model!r} (the trace's models: {', '.join(models)})",
            f"{key}.model",
        )
    if job.demand > gpus:
        raise ConfigError(f"demand {job.demand} exceeds the {gpus} accelerators", f"{key}.demand")
    if job.virtual_nodes % job.demand:
        raise ConfigError(
            f"virtual_nodes={job.virtual_nodes} is not a multiple of demand={job.demand}",
            f"{key}.virtual_nodes",
        )
    if job.global_batch_size % job.virtual_nodes:
        raise ConfigError(
            f"virtual_nodes={job.virtual_nodes} does not divide "
            f"global_batch_size={job.global_batch_size}",
            f"{key}.virtual_nodes",
        )


@dataclass(frozen=True)
class ClusterTrace:
    """A parsed trace: the jobs, the cluster size and the step and resize times."""

    name: str
    gpus: int
    jobs: tuple[ClusterJob, ...]
    step_time: StepTime
    resize_time: ResizeTime


def cluster_from_dict(data: object, name: str = "cluster", seed: int | None = None) -> ClusterTrace:
    """Parse a cluster trace: ``system`` (accelerator type), ``accelerators`` (G),
    optional ``resize_overhead_s``, ``models`` (name -> preset or mapping), optional
    ``strategy`` (precision, recompute), and ``jobs`` (a list of ``{name, arrival_s,
    model, global_batch_size, virtual_nodes, steps, demand, priority}``) or ``generate``
    (``{jobs, jobs_per_hour, seed, demands, priorities, templates}``; ``seed`` overrides
    the file's seed)."""
    known = (
        "name",
        "system",
        "accelerators",
        "resize_overhead_s",
        "models",
        "strategy",
        "jobs",
        "generate",
    )
    if not isinstance(data, dict):
        raise ConfigError(f"a cluster trace must be a mapping with keys {', '.join(known)}")
    for key in data:
        if key not in known:
            raise ConfigError("unknown key", str(key))
    for key in ("system", "accelerators", "models"):
        if key not in data:
            raise ConfigError("missing required key", key)
    if ("jobs" in data) == ("generate" in data):
        raise ConfigError("give exactly one of jobs and generate", "jobs")
    system = system_from(data["system"])
    gpus = _positive_int(data["accelerators"], "accelerators")
    overhead = _number(
        data.get("resize_overhead_s", DEFAULT_RESTART_OVERHEAD_S), "resize_overhead_s"
    )
    raw_models = data["models"]
    if not isinstance(raw_models, dict) or not raw_models:
        raise ConfigError(f"expected a mapping of name -> model (got {raw_models!r})", "models")
    strat = data.get("strategy") or {}
    if not isinstance(strat, dict):
        raise ConfigError(f"expected a mapping, got {strat!r}", "strategy")
    for key in ("dp", "tp", "pp", "cp", "ep", "virtual_nodes", "micro_batch_size"):
        if key in strat:
            raise ConfigError(
                "cluster jobs are data parallel with their virtual nodes set per job",
                f"strategy.{key}",
            )
    from pydantic import ValidationError

    from deepflow.specs.scenario import config_error_from

    try:
        strategy = StrategySpec.model_validate({**strat, "dp": 1})
    except ValidationError as exc:
        raise config_error_from(exc, StrategySpec, "strategy") from None
    step_models = {
        k: estimator_step_model(model_from(v, f"models.{k}"), system, strategy, 1, overhead)
        for k, v in raw_models.items()
    }
    jobs: list[ClusterJob] = []
    if "jobs" in data:
        raw = data["jobs"]
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"expected a non-empty list of jobs (got {raw!r})", "jobs")
        for k, j in enumerate(raw):
            key = f"jobs[{k}]"
            if not isinstance(j, dict):
                raise ConfigError(f"expected a mapping (got {j!r})", key)
            fields = (
                "name",
                "arrival_s",
                "model",
                "global_batch_size",
                "virtual_nodes",
                "steps",
                "demand",
                "priority",
            )
            for f in j:
                if f not in fields:
                    raise ConfigError("unknown key", f"{key}.{f}")
            for f in ("model", "global_batch_size", "virtual_nodes", "steps", "demand"):
                if f not in j:
                    raise ConfigError("missing required key", f"{key}.{f}")
            job = ClusterJob(
                str(j.get("name", f"job{k:02d}")),
                _number(j.get("arrival_s", 0.0), f"{key}.arrival_s"),
                str(j["model"]),
                _positive_int(j["global_batch_size"], f"{key}.global_batch_size"),
                _positive_int(j["virtual_nodes"], f"{key}.virtual_nodes"),
                _positive_int(j["steps"], f"{key}.steps"),
                _pow2(j["demand"], f"{key}.demand"),
                _number(j.get("priority", 1.0), f"{key}.priority", 1e-9),
            )
            _check_job(job, gpus, step_models, key)
            jobs.append(job)
    else:
        g = data["generate"]
        if not isinstance(g, dict):
            raise ConfigError(f"expected a mapping (got {g!r})", "generate")
        for f in g:
            if f not in ("jobs", "jobs_per_hour", "seed", "demands", "priorities", "templates"):
                raise ConfigError("unknown key", f"generate.{f}")
        for f in ("jobs", "jobs_per_hour", "demands", "templates"):
            if f not in g:
                raise ConfigError("missing required key", f"generate.{f}")
        spec = {
            "jobs": _positive_int(g["jobs"], "generate.jobs"),
            "jobs_per_hour": _number(g["jobs_per_hour"], "generate.jobs_per_hour", 1e-9),
            "priorities": g.get("priorities", [1]),
            "demands": g["demands"],
            "templates": g["templates"],
        }
        for f in ("demands", "priorities", "templates"):
            if not isinstance(spec[f], list) or not spec[f]:
                raise ConfigError(f"expected a non-empty list (got {spec[f]!r})", f"generate.{f}")
        for k, d in enumerate(spec["demands"]):
            _pow2(d, f"generate.demands[{k}]")
        for k, p in enumerate(spec["priorities"]):
            _number(p, f"generate.priorities[{k}]", 1e-9)
        for k, tpl in enumerate(spec["templates"]):
            key = f"generate.templates[{k}]"
            if not isinstance(tpl, dict):
                raise ConfigError(f"expected a mapping (got {tpl!r})", key)
            for f in ("model", "batch_per_gpu", "virtual_nodes_per_gpu", "steps"):
                if f not in tpl:
                    raise ConfigError("missing required key", f"{key}.{f}")
            for f in tpl:
                if f not in ("model", "batch_per_gpu", "virtual_nodes_per_gpu", "steps"):
                    raise ConfigError("unknown key", f"{key}.{f}")
            for f in ("batch_per_gpu", "virtual_nodes_per_gpu", "steps"):
                _positive_int(tpl[f], f"{key}.{f}")
        if seed is None:
            seed = g.get("seed", 0)
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ConfigError(f"expected an integer >= 0 (got {seed!r})", "generate.seed")
        jobs = generate_jobs(spec, seed)
        for k, job in enumerate(jobs):
            _check_job(job, gpus, step_models, f"generate (job {k})")

    def step_time(job: ClusterJob, n: int) -> float:
        return step_models[job.model].step_time(n, job.global_batch_size, job.virtual_nodes)

    def resize_time(job: ClusterJob, old: int, new: int) -> float:
        return step_models[job.model].resize_time(old, new, "virtual_nodes")

    return ClusterTrace(str(data.get("name", name)), gpus, tuple(jobs), step_time, resize_time)


def load_cluster_trace(path: str | Path, seed: int | None = None) -> ClusterTrace:
    """Load a cluster trace file (YAML or JSON); errors name the file and the key path."""
    return load_config_file(path, lambda data, name: cluster_from_dict(data, name, seed))
