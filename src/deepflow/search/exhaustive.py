"""Exhaustive strategy search through the vectorized closed-form evaluator.

The search is the three parts of every deepflow search (docs/STYLE.md, practice 9):

* the **space**, data: one :class:`~deepflow.search.space.SearchSpace` per accelerator count
  (a sweep over ``--gpus`` is several spaces), enumerated into chunks;
* the **sampler**, :class:`GridSampler`: it *asks* for every chunk not yet evaluated and is
  *told* each chunk's summary; it has no randomness, so it needs no seed;
* the **objective**, :mod:`deepflow.search.objective`: a pure function of the evaluator's
  arrays.

Each chunk is evaluated by :func:`run_chunk` into a :class:`ChunkSummary`: how many points
it held, how many broke each feasibility rule (by rule name, ``out-of-memory`` for memory),
its best ``top`` points by the objective and its Pareto front over (step time, peak memory).
Summaries are small, so they travel cheaply from worker processes or Dask workers and are
streamed to a JSON Lines file; a search that is interrupted re-reads that file and evaluates
only the chunks it lacks.

:func:`combine` merges summaries into a :class:`SearchResult`. It sorts before it merges, so
the result does not depend on the order in which chunks finish. Ranking is by the objective,
then step time, then accelerator count, then the point's position in its space (``key``),
so equal values are ordered the same way every time. The Pareto front minimizes (step time,
peak memory per accelerator, accelerator count); of points equal in all three, the one with
the smallest key stands for the others.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from deepflow.errors import ConfigError
from deepflow.estimate.evaluate import OOM_RULE, evaluate
from deepflow.parallel.feasibility import RULES
from deepflow.search.executors import Executor, SerialExecutor
from deepflow.search.objective import (
    Objective,
    check_objective,
    cost_per_step,
    energy_per_step,
    has_power,
    has_price,
    objective_values,
)
from deepflow.search.space import Chunk, SearchSpace, strategy_dict

REASONS = (*(rule.name for rule in RULES), "out-of-memory")
"""Names of the reasons a point is infeasible, in the evaluator's order of checking."""
DEFAULT_CHUNK_SIZE = 32768
FILE_VERSION = 1


@dataclass(frozen=True)
class Candidate:
    """One evaluated, feasible strategy with its predicted metrics.

    ``strategy`` is in the scenario file's ``strategy`` format, so it can be pasted into a
    scenario and fed to ``deepflow predict``. ``key`` is ``(space, point)``: the position of
    the space in the sweep and of the point in the space's enumeration. ``cost_per_step`` is
    None without a price, ``energy_per_step_j`` None without a TDP.
    """

    num_accelerators: int
    strategy: dict[str, Any]
    step_time_s: float
    peak_memory_bytes: float
    mfu: float
    cost_per_step: float | None
    energy_per_step_j: float | None
    key: tuple[int, int]

    def value(self, objective: Objective) -> float:
        """The objective's value (cost and energy need a price and a TDP)."""
        if objective is Objective.TIME:
            return self.step_time_s
        value = self.cost_per_step if objective is Objective.COST else self.energy_per_step_j
        assert value is not None, "check_objective() runs before a search"
        return value

    def rank_key(self, objective: Objective) -> tuple[float, float, int, tuple[int, int]]:
        return (self.value(objective), self.step_time_s, self.num_accelerators, self.key)

    def to_json(self) -> dict[str, Any]:
        return {
            "num_accelerators": self.num_accelerators,
            "strategy": self.strategy,
            "step_time_s": self.step_time_s,
            "peak_memory_bytes": self.peak_memory_bytes,
            "mfu": self.mfu,
            "cost_per_step": self.cost_per_step,
            "energy_per_step_j": self.energy_per_step_j,
            "key": list(self.key),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(**{**data, "key": tuple(data["key"])})


@dataclass(frozen=True)
class ChunkSummary:
    """What one chunk contributes to the result (see the module docstring)."""

    space: int
    chunk: int
    evaluated: int
    counts: dict[str, int]
    top: tuple[Candidate, ...]
    pareto: tuple[Candidate, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "chunk",
            "space": self.space,
            "chunk": self.chunk,
            "evaluated": self.evaluated,
            "counts": self.counts,
            "top": [c.to_json() for c in self.top],
            "pareto": [c.to_json() for c in self.pareto],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChunkSummary:
        return cls(
            space=int(data["space"]),
            chunk=int(data["chunk"]),
            evaluated=int(data["evaluated"]),
            counts={str(k): int(v) for k, v in data["counts"].items()},
            top=tuple(Candidate.from_json(c) for c in data["top"]),
            pareto=tuple(Candidate.from_json(c) for c in data["pareto"]),
        )


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to evaluate one chunk (picklable, no enumeration cache)."""

    space: SearchSpace
    chunk: Chunk
    objective: Objective
    top: int


def _pareto_2d(t: np.ndarray, mem: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated in (t, mem), both minimized: in the order of
    increasing ``t`` (then ``mem``, then ``key``), a point is on the front iff its memory is
    below that of every point before it."""
    order = np.lexsort((key, mem, t))
    m = mem[order]
    best_before = np.concatenate(([np.inf], np.minimum.accumulate(m)[:-1]))
    return order[m < best_before]


def run_chunk(task: ChunkTask) -> ChunkSummary:
    """Evaluate one chunk and summarize it (the objective function of the search)."""
    space, chunk = task.space, task.chunk
    system = space.system
    result = evaluate(space.model, system, space.global_batch_size, space.batch(chunk.columns))
    codes = np.bincount(result.violation + 1, minlength=OOM_RULE + 2)
    counts = {REASONS[i]: int(codes[i + 1]) for i in range(OOM_RULE + 1) if codes[i + 1]}
    ok = np.flatnonzero(result.feasible)
    t = result.step_time[ok]
    mem = result.peak_memory[ok]
    keys = chunk.positions(ok)
    values = objective_values(task.objective, t, system)
    best = ok[np.lexsort((keys, t, values))[: task.top]]
    front = ok[_pareto_2d(t, mem, keys)]
    cost = cost_per_step(result.step_time, system) if has_price(system) else None
    energy = energy_per_step(result.step_time, system) if has_power(system) else None
    mfu = result.mfu

    def candidate(i: int) -> Candidate:
        return Candidate(
            num_accelerators=system.num_accelerators,
            strategy=strategy_dict(space.base, chunk.columns, int(i)),
            step_time_s=float(result.step_time[i]),
            peak_memory_bytes=float(result.peak_memory[i]),
            mfu=float(mfu[i]),
            cost_per_step=None if cost is None else float(cost[i]),
            energy_per_step_j=None if energy is None else float(energy[i]),
            key=(chunk.space, int(chunk.positions(np.asarray(i)))),
        )

    return ChunkSummary(
        space=chunk.space,
        chunk=chunk.index,
        evaluated=len(chunk),
        counts=counts,
        top=tuple(candidate(i) for i in best),
        pareto=tuple(candidate(i) for i in front),
    )


def pareto_front(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates not dominated in (step time, peak memory, accelerators), all
    minimized, in order of increasing step time. Of exactly equal points the one with the
    smallest key is kept.

    In the sort order (t, memory, accelerators, key) only an earlier point can dominate a
    later one, and a point dominated by a dominated point is dominated by what dominates
    that; so checking each point against the front kept so far is enough.
    """
    ordered = sorted(
        candidates,
        key=lambda c: (c.step_time_s, c.peak_memory_bytes, c.num_accelerators, c.key),
    )
    front: list[Candidate] = []
    mem = np.empty(0)
    acc = np.empty(0)
    for c in ordered:
        if np.any((mem <= c.peak_memory_bytes) & (acc <= c.num_accelerators)):
            continue
        front.append(c)
        mem = np.append(mem, c.peak_memory_bytes)
        acc = np.append(acc, c.num_accelerators)
    return front


@dataclass(frozen=True)
class SpaceInfo:
    """Size of one space of the search."""

    num_accelerators: int
    points: int
    chunks: int


@dataclass(frozen=True)
class SearchResult:
    """The outcome of an exhaustive search.

    ``top`` holds the best feasible strategies by ``objective`` (fewer if fewer are
    feasible); ``pareto`` the front over (step time, peak memory, accelerators);
    ``infeasible`` counts the points each rule rejected, by rule name, in :data:`REASONS`
    order. ``chunks_resumed`` chunks were read back from the results file and
    ``chunks_evaluated`` evaluated by this call.
    """

    objective: Objective
    top: list[Candidate]
    pareto: list[Candidate]
    evaluated: int
    feasible: int
    infeasible: dict[str, int]
    spaces: list[SpaceInfo]
    chunks_resumed: int = 0
    chunks_evaluated: int = 0
    wall_s: float = 0.0
    price_per_accelerator_hour: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_price(self) -> bool:
        return self.price_per_accelerator_hour > 0

    @property
    def evaluations_per_s(self) -> float:
        return self.evaluated / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "objective": self.objective.value,
            "evaluated": self.evaluated,
            "feasible": self.feasible,
            "infeasible": self.infeasible,
            "price_per_accelerator_hour": self.price_per_accelerator_hour
            if self.has_price
            else None,
            "spaces": [
                {"num_accelerators": s.num_accelerators, "points": s.points, "chunks": s.chunks}
                for s in self.spaces
            ],
            "top": [{"rank": i + 1, **c.to_json()} for i, c in enumerate(self.top)],
            "pareto": [c.to_json() for c in self.pareto],
            "chunks_resumed": self.chunks_resumed,
            "chunks_evaluated": self.chunks_evaluated,
            "wall_s": self.wall_s,
        }


def combine(
    summaries: Iterable[ChunkSummary],
    objective: Objective,
    top: int,
    spaces: Sequence[SpaceInfo] = (),
) -> SearchResult:
    """Merge chunk summaries into a result; the order of ``summaries`` does not matter."""
    ordered = sorted(summaries, key=lambda s: (s.space, s.chunk))
    totals = dict.fromkeys(REASONS, 0)
    for s in ordered:
        for reason, n in s.counts.items():
            totals[reason] += n
    evaluated = sum(s.evaluated for s in ordered)
    infeasible = {k: v for k, v in totals.items() if v}
    ranked = sorted((c for s in ordered for c in s.top), key=lambda c: c.rank_key(objective))
    return SearchResult(
        objective=objective,
        top=ranked[:top],
        pareto=pareto_front(c for s in ordered for c in s.pareto),
        evaluated=evaluated,
        feasible=evaluated - sum(infeasible.values()),
        infeasible=infeasible,
        spaces=list(spaces),
    )


class GridSampler:
    """The exhaustive sampler: it asks for every chunk of every space exactly once.

    :meth:`ask` returns the tasks of the chunks not yet told (in enumeration order);
    :meth:`tell` records a chunk's summary. Chunks told before the first ask (read back from
    a results file) are never asked for.
    """

    def __init__(
        self, spaces: Sequence[SearchSpace], objective: Objective, top: int, chunk_size: int
    ) -> None:
        self.spaces = list(spaces)
        self.objective = objective
        self.top = top
        self.chunk_size = chunk_size
        self.summaries: dict[tuple[int, int], ChunkSummary] = {}

    @property
    def total(self) -> int:
        return sum(s.num_chunks(self.chunk_size) for s in self.spaces)

    def ask(self) -> list[ChunkTask]:
        tasks = []
        for i, space in enumerate(self.spaces):
            light = space.without_cache()
            for chunk in space.chunks(self.chunk_size, space=i):
                if (i, chunk.index) not in self.summaries:
                    tasks.append(ChunkTask(light, chunk, self.objective, self.top))
        return tasks

    def tell(self, summary: ChunkSummary) -> None:
        self.summaries[(summary.space, summary.chunk)] = summary


class ResultsFile:
    """A JSON Lines file of chunk summaries, for resuming.

    The first line is a header naming the search (a fingerprint of the spaces, the
    objective, ``top`` and the chunk size); every further line is one chunk's summary,
    written and flushed as the chunk finishes. A line cut short by a kill is dropped (and
    cut off the file) on the next open. A file whose header names another search is
    refused rather than mixed in.
    """

    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = {"kind": "header", "version": FILE_VERSION, **header}
        self._handle: Any = None

    def read(self) -> list[ChunkSummary]:
        """The summaries already in the file (empty if there is no file)."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        good_end = 0
        lines: list[dict[str, Any]] = []
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                break
            good_end += len(line)
        if not lines:
            if raw.strip():
                # appending to a file without our header would never resume: each run
                # would append its chunks again after the garbage
                raise ConfigError(
                    "the file is not a deepflow search results file (its first line is not "
                    "a results header); choose another --out or delete the file",
                    "--out",
                    source=str(self.path),
                )
            return []
        if lines[0] != self.header:
            raise ConfigError(
                "the results file belongs to another search (different scenario, "
                "restrictions, objective, --top or chunk size); choose another --out "
                "or delete the file",
                "--out",
                source=str(self.path),
            )
        if good_end < len(raw):
            with self.path.open("r+b") as f:
                f.truncate(good_end)
        return [ChunkSummary.from_json(d) for d in lines[1:] if d.get("kind") == "chunk"]

    def open(self) -> None:
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if fresh:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")
        if fresh:
            self._write(self.header)

    def _write(self, data: dict[str, Any]) -> None:
        self._handle.write(json.dumps(data, sort_keys=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def append(self, summary: ChunkSummary) -> None:
        self._write(summary.to_json())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None



def checked_search_arguments(spaces, objective, top: int, chunk_size: int):
    """The objective and the list of spaces of a search, after the argument rules every
    search shares (at least one space, ``top`` and ``chunk_size`` at least 1, an objective
    the systems can price); a broken rule is a ConfigError naming the option."""
    objective = Objective(objective)
    space_list = [spaces] if isinstance(spaces, SearchSpace) else list(spaces)
    if not space_list:
        raise ConfigError("no accelerator counts to search", "--gpus")
    if top < 1:
        raise ConfigError(f"must be at least 1 (got {top})", "--top")
    if chunk_size < 1:
        raise ConfigError(f"must be at least 1 (got {chunk_size})", "--chunk-size")
    for space in space_list:
        check_objective(objective, space.system)
    return objective, space_list


def exhaustive_search(
    spaces: SearchSpace | Sequence[SearchSpace],
    *,
    objective: Objective | str = Objective.TIME,
    top: int = 10,
    executor: Executor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    out: str | Path | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """Evaluate every point of ``spaces`` and rank them.

    ``executor`` runs the chunks (default: in this process). With ``out``, every finished
    chunk is appended to that JSON Lines file and a rerun with the same arguments skips the
    chunks already there. ``on_chunk(done, total)`` is called once with the resumed count
    and then after every chunk (a progress bar hooks in here; an exception raised by it
    stops the search, with the finished chunks already on file).
    """
    start = time.perf_counter()
    objective, space_list = checked_search_arguments(spaces, objective, top, chunk_size)
    sampler = GridSampler(space_list, objective, top, chunk_size)
    results = None
    if out is not None:
        results = ResultsFile(
            out,
            {
                "spaces": [s.fingerprint() for s in space_list],
                "objective": objective.value,
                "top": top,
                "chunk_size": chunk_size,
            },
        )
        for summary in results.read():
            sampler.tell(summary)
    resumed = len(sampler.summaries)
    total = sampler.total
    if on_chunk is not None:
        on_chunk(resumed, total)
    runner = executor if executor is not None else SerialExecutor()
    evaluated = 0
    try:
        if results is not None:
            results.open()
        tasks = sampler.ask()
        stream: Iterator[ChunkSummary] = runner.map_unordered(run_chunk, tasks)
        try:
            for summary in stream:
                if results is not None:
                    results.append(summary)
                sampler.tell(summary)
                evaluated += 1
                if on_chunk is not None:
                    on_chunk(resumed + evaluated, total)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
    finally:
        if results is not None:
            results.close()
        if executor is None:
            runner.close()
    infos = [
        SpaceInfo(s.system.num_accelerators, len(s), s.num_chunks(chunk_size)) for s in space_list
    ]
    result = combine(sampler.summaries.values(), objective, top, infos)
    return replace(
        result,
        chunks_resumed=resumed,
        chunks_evaluated=evaluated,
        wall_s=time.perf_counter() - start,
        price_per_accelerator_hour=space_list[0].system.price_per_accelerator_hour,
    )
