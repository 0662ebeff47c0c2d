"""The executor: runs a task graph on the discrete-event engine.

Each ``(rank, stream)`` of the graph is an in-order resource, like a CUDA stream or a
communication channel: it holds one task at a time, in program order. A task starts when
it is at the head of its stream, the stream is free, and every task it depends on has
finished; it then holds the stream for its duration. This is FlexFlow's full simulation
(Jia et al. 2019, sec. 5.2: a task's ``startTime = max(readyTime, end of the previous task
on its device)``), driven by :class:`deepflow.sim.engine.Environment`: a task's end is an
event on the engine's heap, and its callback releases the stream and the successors.
Ties at the same instant are broken by the engine's sequence numbers, so a run is
deterministic.

With a :class:`deepflow.sim.contention.Contention`, a communication task does not simply
hold its stream for its duration: its chunks cross its rank's port on the congestion-aware
link engine, so that concurrent tasks on one port slow each other (``simulate
--contention``).

The executor knows nothing about where a graph came from; :func:`breakdown` reads the
``category`` of each task to split a lowered step into the estimator's breakdown keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from deepflow.graph.ir import TaskGraph
from deepflow.sim.engine import NORMAL, Environment, Event

if TYPE_CHECKING:
    from deepflow.sim.contention import Contention

__all__ = ["DeadlockError", "Execution", "breakdown", "execute"]


class DeadlockError(RuntimeError):
    """The graph cannot finish: some task waits for a task that waits for it."""


@dataclass(frozen=True)
class Execution:
    """Start and end time of every task (seconds, indexed by task id)."""

    graph: TaskGraph
    start: np.ndarray
    end: np.ndarray

    @property
    def makespan(self) -> float:
        return float(self.end.max()) if len(self.end) else 0.0

    def rank_end(self, rank: int) -> float:
        ids = [t.id for t in self.graph.tasks if t.rank == rank]
        return float(self.end[ids].max()) if ids else 0.0


PROGRESS_EVERY = 8192
"""Finished tasks between two ``on_progress`` calls of :func:`execute`."""


def execute(
    graph: TaskGraph,
    on_progress: Callable[[int, int], None] | None = None,
    contention: Contention | None = None,
) -> Execution:
    """Run ``graph`` to completion; raises :class:`DeadlockError` if it cannot finish.
    ``on_progress(done, total)`` hears the finished task count every
    :data:`PROGRESS_EVERY` tasks and at the end (it cannot change the run);
    ``contention`` plays communication tasks on shared ports (module docstring)."""
    env = Environment()
    if contention is not None:
        contention.bind(env)
    tasks = graph.tasks
    n = len(tasks)
    left = [len(t.deps) for t in tasks]
    succ = graph.successors()
    order = graph.streams()
    queues = list(order.values())
    stream_of = [0] * n
    for si, ids in enumerate(queues):
        for tid in ids:
            stream_of[tid] = si
    head = [0] * len(queues)
    busy = [False] * len(queues)
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    durations = [t.duration_s for t in tasks]
    done = [0]

    def try_start(si: int) -> None:
        if busy[si]:
            return
        q = queues[si]
        h = head[si]
        if h >= len(q):
            return
        tid = q[h]
        if left[tid]:
            return
        busy[si] = True
        start[tid] = env.now
        if contention is not None:
            port = contention.port_of(tasks[tid])
            if port is not None:
                contention.run(tasks[tid], port, lambda: finished(tid))
                return
        ev = Event(env)
        ev._value = tid
        ev.callbacks.append(finish)  # type: ignore[union-attr]
        env.schedule(ev, NORMAL, durations[tid])

    def finish(ev: Event) -> None:
        finished(ev._value)

    def finished(tid: int) -> None:
        end[tid] = env.now
        done[0] += 1
        if on_progress is not None and not done[0] % PROGRESS_EVERY:
            on_progress(done[0], n)
        si = stream_of[tid]
        busy[si] = False
        head[si] += 1
        for s in succ[tid]:
            left[s] -= 1
            if not left[s]:
                try_start(stream_of[s])
        try_start(si)

    for si in range(len(queues)):
        try_start(si)
    env.run()
    if on_progress is not None:
        on_progress(done[0], n)
    if done[0] != n:
        waiting = [queues[si][head[si]] for si in range(len(queues)) if head[si] < len(queues[si])]
        names = ", ".join(tasks[t].name for t in waiting[:4])
        raise DeadlockError(f"{n - done[0]} of {n} tasks never ran; stuck at: {names}")
    return Execution(graph, start, end)


BLOCKING_STREAMS = ("compute", "pp")


def breakdown(execution: Execution, keys: tuple[str, ...]) -> tuple[int, dict[str, float]]:
    """Split the step into ``keys`` on the rank that finishes last (the critical rank).

    Busy time of its blocking streams (compute, and the pipeline sends it waits for) is
    summed by task category; its idle time before its last pipeline pass is the pipeline
    bubble, and the wait after it for the data-parallel gradient buckets is exposed
    ``dp_comm``; tasks after the optimizer step (phase ``after_optimizer``: the ZeRO-1/2
    parameter gather) count by their category. The parts sum to the step time.
    """
    graph = execution.graph
    step = execution.makespan
    ends: dict[int, float] = {}
    for t in graph.tasks:
        e = float(execution.end[t.id])
        if e > ends.get(t.rank, -1.0):
            ends[t.rank] = e
    critical = min(r for r, e in ends.items() if e == step) if ends else 0
    parts = dict.fromkeys(keys, 0.0)
    pipeline_end = 0.0
    busy_before = 0.0
    for t in graph.tasks:
        if t.rank != critical or t.stream not in BLOCKING_STREAMS:
            continue
        parts[t.category] = parts.get(t.category, 0.0) + t.duration_s
        if t.category != "optimizer" and t.phase != "after_optimizer":
            pipeline_end = max(pipeline_end, float(execution.end[t.id]))
            busy_before += t.duration_s
    opt_start = max(
        (
            float(execution.start[t.id])
            for t in graph.tasks
            if t.rank == critical and t.category == "optimizer"
        ),
        default=pipeline_end,
    )
    parts["pipeline_bubble"] = parts.get("pipeline_bubble", 0.0) + max(
        0.0, pipeline_end - busy_before
    )
    parts["dp_comm"] = parts.get("dp_comm", 0.0) + max(0.0, opt_start - pipeline_end)
    return critical, {k: parts.get(k, 0.0) for k in keys}
