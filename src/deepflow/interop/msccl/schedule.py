"""An MSCCL-IR algorithm as a collective algorithm: per rank, ordered steps with peers,
chunk counts and dependencies.

This is the view other layers use to run or cost the algorithm without knowing XML:
:func:`rank_schedules` turns each GPU's threadblocks into one list of
:class:`ScheduledStep`, where

* ``nop`` steps are gone: a ``nop`` only carries a dependency (msccl-tools inserts one per
  extra dependency, reference doc section 3), so its dependencies are forwarded to the steps
  that waited on it;
* ``deps`` lists every step (by ``(tb, index)`` key, same rank) that must finish first:
  the previous step of the same threadblock (program order) and the ``depid``/``deps``
  step, both after ``nop`` forwarding;
* the list is in a topological order of those dependencies (Kahn's algorithm, ties broken
  by ``(tb, index)``), so running it front to back respects every dependency on the rank.

Cross-rank order is not a dependency: it comes from matching a send on channel ``chan``
with the receive on the same channel at the peer, in FIFO order.

:func:`chunk_bytes` resolves the size of one chunk from the collective's total size.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from deepflow.errors import TraceError
from deepflow.interop.msccl.ir import (
    Buffer,
    Gpu,
    MscclAlgorithm,
    MscclCollective,
    Step,
    StepType,
    Threadblock,
)

__all__ = ["ScheduledStep", "StepKey", "chunk_bytes", "input_chunks", "rank_schedules"]

StepKey = tuple[int, int]
"""``(threadblock id, step index)`` of a step on one rank."""


@dataclass(frozen=True)
class ScheduledStep:
    """One non-``nop`` step of one rank, with its resolved peers and dependencies.

    ``send_peer``/``recv_peer`` are set only when the step sends/receives; ``chunks`` is the
    step's ``cnt``; ``deps`` are keys of steps on the same rank.
    """

    rank: int
    tb: int
    index: int
    op: StepType
    channel: int
    send_peer: int | None
    recv_peer: int | None
    chunks: int
    srcbuf: Buffer
    srcoff: int
    dstbuf: Buffer
    dstoff: int
    deps: tuple[StepKey, ...]

    @property
    def key(self) -> StepKey:
        return (self.tb, self.index)


def input_chunks(algo: MscclAlgorithm) -> int:
    """Chunks in one rank's *collective input* as ASTRA-sim sizes it (``comm_size``).

    The MSCCL runtime checks ``i_chunks * m = nchunksperloop`` with ``m`` = number of ranks
    for the all-gather input and 1 otherwise (microsoft/msccl ``src/graph/topo.cc``;
    reference doc section 3). ASTRA-sim's ``comm_size`` of an all-gather is the per-rank
    input and of every other collective the whole buffer (reference doc section 2.6), so one
    chunk is ``comm_size / (nchunksperloop / m)``.
    """
    m = algo.ngpus if algo.coll is MscclCollective.ALLGATHER else 1
    if algo.nchunksperloop % m:
        raise TraceError(
            f"{algo.source}: <algo>: nchunksperloop={algo.nchunksperloop} is not a multiple "
            f"of ngpus={algo.ngpus}, as an all-gather requires"
        )
    return algo.nchunksperloop // m


def chunk_bytes(algo: MscclAlgorithm, collective_size: int) -> int:
    """Bytes in one chunk for a collective of ``collective_size`` bytes (``comm_size``
    semantics of ASTRA-sim; see :func:`input_chunks`). Integer division, as the
    collectiveapi converter does (``coll_size / i_chunks``); a chunk must hold a byte."""
    n = input_chunks(algo)
    size = collective_size // n
    if size < 1:
        raise TraceError(
            f"{algo.source}: collective size {collective_size} B is smaller than its {n} chunks"
        )
    return size


def _completion(
    gpu: Gpu,
    tbs: Mapping[int, Threadblock],
    key: StepKey,
    memo: dict[StepKey, tuple[StepKey, ...]],
    active: set[StepKey],
    source: str,
) -> tuple[StepKey, ...]:
    """The real steps whose completion means step ``key`` has completed: the step itself,
    or for a ``nop`` the completion of everything it waits on."""
    if key in memo:
        return memo[key]
    step = tbs[key[0]].steps[key[1]]
    if step.type is not StepType.NOP:
        memo[key] = (key,)
        return memo[key]
    memo[key] = _wait_set(gpu, tbs, key, memo, active, source)
    return memo[key]


def _wait_set(
    gpu: Gpu,
    tbs: Mapping[int, Threadblock],
    key: StepKey,
    memo: dict[StepKey, tuple[StepKey, ...]],
    active: set[StepKey],
    source: str,
) -> tuple[StepKey, ...]:
    """Real steps that step ``key`` waits on: its program-order predecessor and its
    ``depid``/``deps`` step, each through :func:`_completion`."""
    if key in active:
        raise TraceError(
            f"{source}: gpu {gpu.id}, tb {key[0]}, step {key[1]}: cyclic dependency "
            "through nop steps"
        )
    active.add(key)
    tb_id, index = key
    step: Step = tbs[tb_id].steps[index]
    parents: list[StepKey] = []
    if index > 0:
        parents.append((tb_id, index - 1))
    if step.depid >= 0:
        parents.append((step.depid, step.deps))
    out: dict[StepKey, None] = {}
    for parent in parents:
        for done in _completion(gpu, tbs, parent, memo, active, source):
            out[done] = None
    active.discard(key)
    return tuple(out)


def _gpu_schedule(algo: MscclAlgorithm, gpu: Gpu) -> tuple[ScheduledStep, ...]:
    tbs = {tb.id: tb for tb in gpu.threadblocks}
    memo: dict[StepKey, tuple[StepKey, ...]] = {}
    steps: dict[StepKey, ScheduledStep] = {}
    for tb in gpu.threadblocks:
        for step in tb.steps:
            if step.type is StepType.NOP:
                continue
            key = (tb.id, step.index)
            deps = _wait_set(gpu, tbs, key, memo, set(), algo.source)
            steps[key] = ScheduledStep(
                rank=gpu.id,
                tb=tb.id,
                index=step.index,
                op=step.type,
                channel=tb.chan,
                send_peer=tb.send if step.type.sends else None,
                recv_peer=tb.recv if step.type.receives else None,
                chunks=step.cnt,
                srcbuf=step.srcbuf,
                srcoff=step.srcoff,
                dstbuf=step.dstbuf,
                dstoff=step.dstoff,
                deps=deps,
            )
    # Kahn's algorithm, ties by (tb, index)
    indegree = {k: len(s.deps) for k, s in steps.items()}
    children: dict[StepKey, list[StepKey]] = {k: [] for k in steps}
    for k, s in steps.items():
        for d in s.deps:
            children[d].append(k)
    ready = [k for k, n in indegree.items() if n == 0]
    heapq.heapify(ready)
    order: list[ScheduledStep] = []
    while ready:
        k = heapq.heappop(ready)
        order.append(steps[k])
        for c in children[k]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(ready, c)
    if len(order) != len(steps):
        tb_id, index = min(k for k, n in indegree.items() if n > 0)
        raise TraceError(
            f"{algo.source}: gpu {gpu.id}, tb {tb_id}, step {index}: cyclic dependency "
            "between threadblocks"
        )
    return tuple(order)


def rank_schedules(algo: MscclAlgorithm) -> dict[int, tuple[ScheduledStep, ...]]:
    """Per rank, the algorithm's steps in dependency order (see the module docstring)."""
    return {gpu.id: _gpu_schedule(algo, gpu) for gpu in algo.gpus}
