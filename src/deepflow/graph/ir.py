"""The task-graph IR: compute, communication and memory tasks with dependencies.

A :class:`TaskGraph` is a set of :class:`Task` nodes shaped like a Chakra execution-trace
node set (Sridharan et al. 2023, arXiv 2305.14516; the ``et_def.proto`` node has an id, a
name, a type, a duration or a size, data and control dependencies, and runs on one rank):

* ``COMPUTE`` - a kernel (or a fused group of kernels) with a duration, Chakra's
  ``COMP_NODE``;
* ``COLLECTIVE`` - a collective (all-reduce, all-gather, reduce-scatter, all-to-all) with a
  size in bytes and its duration on the group, Chakra's ``COMM_COLL_NODE``;
* ``SEND`` / ``RECV`` - a point-to-point transfer, Chakra's ``COMM_SEND_NODE`` and
  ``COMM_RECV_NODE``;
* ``MEMORY`` - a memory operation (load, store, host offload), Chakra's ``MEM_LOAD_NODE``.

Every task runs on one ``stream`` of one ``rank``. A stream is in-order, as a CUDA stream
is: a task starts once the task before it on its stream has finished and all of its
dependencies have finished (FlexFlow's assumption A3, Jia et al. 2019, sec. 5). Durations
are known when the graph is built (FlexFlow's assumption A1); where a graph came from -
lowering a scenario, or an imported trace - is no business of this layer.

``rank`` is the rank the program stands for: a lowered scenario simulates one
representative rank per group of ranks with identical programs, and a task's ``rank`` is
that representative.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["Task", "TaskGraph", "TaskKind", "topological_order"]


class TaskKind(str, Enum):
    """Task types, one for each Chakra ET node type a simulator executes."""

    COMPUTE = "compute"
    COLLECTIVE = "collective"
    SEND = "send"
    RECV = "recv"
    MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class Task:
    """One node of a task graph.

    ``duration_s`` is the time the task holds its stream; ``size_bytes`` is the payload of
    a communication or memory task (0 for compute). ``deps`` are ids of tasks that must
    finish first (in addition to the previous task on the same stream). ``category`` names
    the part of the step the task's time counts towards (one of the breakdown keys of the
    estimator for lowered scenarios); ``layer``, ``micro_batch``, ``chunk`` and ``phase``
    (``F``, ``B``, ``W``, ``R``ecompute, ``opt``, ...) label the task in timelines, -1 where
    they do not apply.
    """

    id: int
    name: str
    kind: TaskKind
    rank: int
    stream: str
    duration_s: float
    deps: tuple[int, ...] = ()
    size_bytes: float = 0.0
    category: str = "compute"
    phase: str = ""
    layer: int = -1
    micro_batch: int = -1
    chunk: int = -1


@dataclass(frozen=True)
class TaskGraph:
    """Tasks whose ids are their positions (``tasks[i].id == i``).

    The order of the tasks of one ``(rank, stream)`` in ``tasks`` is the program order of
    that stream. ``meta`` carries free-form facts about where the graph came from
    (micro-batches, stages, schedule) for reports.
    """

    tasks: tuple[Task, ...]
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, t in enumerate(self.tasks):
            if t.id != i:
                raise ValueError(f"task {t.name!r} has id {t.id}, expected its position {i}")
            if t.duration_s < 0:
                raise ValueError(f"task {t.name!r} has negative duration {t.duration_s}")
            for d in t.deps:
                if not 0 <= d < len(self.tasks) or d == i:
                    raise ValueError(f"task {t.name!r} depends on unknown task {d}")

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def ranks(self) -> tuple[int, ...]:
        """Ranks that have tasks, ascending."""
        return tuple(sorted({t.rank for t in self.tasks}))

    def streams(self) -> dict[tuple[int, str], list[int]]:
        """Program order of each ``(rank, stream)``: task ids in the order they run."""
        out: dict[tuple[int, str], list[int]] = {}
        for t in self.tasks:
            out.setdefault((t.rank, t.stream), []).append(t.id)
        return out

    def successors(self) -> list[list[int]]:
        """For each task, the tasks that list it as a dependency."""
        succ: list[list[int]] = [[] for _ in self.tasks]
        for t in self.tasks:
            for d in t.deps:
                succ[d].append(t.id)
        return succ


def topological_order(graph: TaskGraph) -> list[int]:
    """Task ids in an order that respects dependencies and stream order (Kahn's algorithm);
    raises ``ValueError`` on a cycle, which an executor would see as a deadlock."""
    n = len(graph)
    preds: list[list[int]] = [list(t.deps) for t in graph.tasks]
    for ids in graph.streams().values():
        for a, b in itertools.pairwise(ids):
            preds[b].append(a)
    succ: list[list[int]] = [[] for _ in range(n)]
    left = [0] * n
    for i, ps in enumerate(preds):
        left[i] = len(ps)
        for p in ps:
            succ[p].append(i)
    ready = [i for i in range(n) if left[i] == 0]
    order: list[int] = []
    while ready:
        i = ready.pop()
        order.append(i)
        for s in succ[i]:
            left[s] -= 1
            if left[s] == 0:
                ready.append(s)
    if len(order) != n:
        stuck = next(i for i in range(n) if left[i] > 0)
        raise ValueError(f"task graph has a cycle through task {graph.tasks[stuck].name!r}")
    return order


class GraphBuilder:
    """Appends tasks with consecutive ids; :meth:`build` freezes them into a graph."""

    def __init__(self) -> None:
        self._tasks: list[Task] = []

    def __len__(self) -> int:
        return len(self._tasks)

    def add(
        self,
        name: str,
        kind: TaskKind,
        rank: int,
        stream: str,
        duration_s: float,
        deps: Iterable[int] = (),
        **labels: object,
    ) -> int:
        tid = len(self._tasks)
        self._tasks.append(
            Task(tid, name, kind, rank, stream, float(duration_s), tuple(deps), **labels)  # type: ignore[arg-type]
        )
        return tid

    def build(self, meta: dict[str, object] | None = None) -> TaskGraph:
        return TaskGraph(tuple(self._tasks), dict(meta or {}))


def total_duration(tasks: Sequence[Task]) -> float:
    """Sum of the durations of ``tasks`` (seconds)."""
    return float(sum(t.duration_s for t in tasks))
