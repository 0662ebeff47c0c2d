"""Run an MSCCL-IR algorithm on symbolic data and check that it computes its collective.

Every chunk of every rank's input starts as the symbol ``(rank, index)``. A chunk's content
is the sorted tuple of the symbols reduced into it, so a reduction is a merge of tuples and a
symbol counted twice stays visible. Steps run as the MSCCL runtime runs them
(microsoft/msccl ``src/collectives/device/msccl_kernel_impl.h``): a send reads its
``srcbuf[srcoff:srcoff+cnt]``; a receive pops the oldest message on its (sender, receiver,
channel) connection; ``rrc``/``rrs``/``rrcs`` reduce the message with the local
``src`` chunks; the copying kinds (``r``, ``rrc``, ``rrcs``, ``rcs``) write ``dst``; ``cpy``
copies and ``re`` reduces ``src`` into ``dst`` locally.

:func:`verify_collective` then compares the final buffers with the collective's definition:

* all-reduce: every rank's result chunk ``c`` holds ``(q, c)`` for every rank ``q``;
* all-gather: output chunk ``q*m + k`` holds rank ``q``'s input chunk ``k``;
* all-to-all: at rank ``r``, output chunk ``q*m + k`` holds rank ``q``'s input chunk ``r*m + k``;
* reduce-scatter: at rank ``r``, output chunk ``k`` holds ``(q, r*m + k)`` for every ``q``;

with ``m`` = ``nchunksperloop / ngpus`` chunks per rank block. In-place algorithms alias
buffers as the runtime does: an in-place all-reduce's output is its input, and an in-place
all-gather's input is the rank's own block of the output.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from deepflow.errors import TraceError
from deepflow.interop.msccl.ir import Buffer, MscclAlgorithm, MscclCollective, StepType
from deepflow.interop.msccl.schedule import ScheduledStep, rank_schedules

__all__ = ["Chunk", "DataflowResult", "run_dataflow", "verify_collective"]

Chunk = tuple[tuple[int, int], ...] | None
"""The symbols reduced into a chunk (sorted), or ``None`` for a chunk never written."""


@dataclass(frozen=True)
class DataflowResult:
    """Final buffer contents: ``buffers[rank][buffer]`` is a tuple of chunks."""

    buffers: dict[int, dict[Buffer, tuple[Chunk, ...]]]
    steps_run: int


def _reduce(a: Chunk, b: Chunk) -> Chunk:
    """The reduction of two chunks: the multiset union of their symbols."""
    merged = tuple(sorted((a or ()) + (b or ())))
    return merged or None


class _Memory:
    """The buffers of every rank, with the runtime's in-place aliasing."""

    def __init__(self, algo: MscclAlgorithm) -> None:
        self.algo = algo
        self.m = algo.nchunksperloop // algo.ngpus if algo.ngpus else 0
        self.alias_out_to_in = algo.inplace and algo.coll in (
            MscclCollective.ALLREDUCE,
            MscclCollective.REDUCE,
            MscclCollective.BROADCAST,
        )
        self.alias_in_to_out = algo.inplace and algo.coll is MscclCollective.ALLGATHER
        self.buffers: dict[int, dict[Buffer, list[Chunk]]] = {}
        for gpu in algo.gpus:
            sizes = {
                Buffer.INPUT: gpu.i_chunks,
                Buffer.OUTPUT: gpu.o_chunks,
                Buffer.SCRATCH: gpu.s_chunks,
            }
            if self.alias_in_to_out:
                sizes[Buffer.OUTPUT] = max(sizes[Buffer.OUTPUT], algo.nchunksperloop)
            if self.alias_out_to_in:
                sizes[Buffer.INPUT] = max(sizes[Buffer.INPUT], algo.nchunksperloop)
            bufs: dict[Buffer, list[Chunk]] = {b: [None] * n for b, n in sizes.items()}
            if self.alias_in_to_out:
                for k in range(self.m):
                    bufs[Buffer.OUTPUT][gpu.id * self.m + k] = ((gpu.id, k),)
            else:
                for k in range(len(bufs[Buffer.INPUT])):
                    bufs[Buffer.INPUT][k] = ((gpu.id, k),)
            self.buffers[gpu.id] = bufs

    def _locate(self, rank: int, buf: Buffer, off: int) -> tuple[Buffer, int]:
        if self.alias_out_to_in and buf is Buffer.OUTPUT:
            return Buffer.INPUT, off
        if self.alias_in_to_out and buf is Buffer.INPUT:
            return Buffer.OUTPUT, rank * self.m + off
        return buf, off

    def _slots(self, step: ScheduledStep, buf: Buffer, off: int) -> tuple[list[Chunk], range]:
        real, start = self._locate(step.rank, buf, off)
        data = self.buffers[step.rank][real]
        if start < 0 or start + step.chunks > len(data):
            raise TraceError(
                f"{self.algo.source}: gpu {step.rank}, tb {step.tb}, step {step.index}: "
                f"chunks {off}..{off + step.chunks - 1} of buffer {buf.value!r} are out of "
                f"range (it holds {len(data)})"
            )
        return data, range(start, start + step.chunks)

    def read(self, step: ScheduledStep, buf: Buffer, off: int) -> list[Chunk]:
        data, span = self._slots(step, buf, off)
        return [data[i] for i in span]

    def write(self, step: ScheduledStep, buf: Buffer, off: int, values: list[Chunk]) -> None:
        data, span = self._slots(step, buf, off)
        for i, v in zip(span, values, strict=True):
            data[i] = v


def run_dataflow(algo: MscclAlgorithm) -> DataflowResult:
    """Execute the algorithm on symbols; raises :class:`TraceError` on a deadlock (a receive
    whose message never comes, or a dependency cycle across ranks) or a chunk count mismatch
    between a send and its receive."""
    schedules = rank_schedules(algo)
    mem = _Memory(algo)
    links: dict[tuple[int, int, int], deque[list[Chunk]]] = {}
    pending = {rank: list(steps) for rank, steps in schedules.items()}
    done: dict[int, set[tuple[int, int]]] = {rank: set() for rank in schedules}
    steps_run = 0
    while any(pending.values()):
        progressed = False
        for rank in sorted(pending):
            still: list[ScheduledStep] = []
            for step in pending[rank]:
                if not all(d in done[rank] for d in step.deps) or not _run(step, mem, links):
                    still.append(step)
                    continue
                done[rank].add(step.key)
                steps_run += 1
                progressed = True
            pending[rank] = still
        if not progressed:
            rank = min(r for r, s in pending.items() if s)
            step = pending[rank][0]
            raise TraceError(
                f"{algo.source}: gpu {rank}, tb {step.tb}, step {step.index}: deadlock; "
                f"{sum(map(len, pending.values()))} steps can never run (first: "
                f"{step.op.value!r} waiting on {step.deps or 'a message'})"
            )
    leftover = {k: len(q) for k, q in links.items() if q}
    if leftover:
        (src, dst, chan), n = min(leftover.items())
        raise TraceError(
            f"{algo.source}: gpu {src}: {n} message(s) sent to gpu {dst} on channel {chan} "
            "are never received"
        )
    final = {
        rank: {b: tuple(chunks) for b, chunks in bufs.items()} for rank, bufs in mem.buffers.items()
    }
    return DataflowResult(final, steps_run)


def _run(
    step: ScheduledStep,
    mem: _Memory,
    links: dict[tuple[int, int, int], deque[list[Chunk]]],
) -> bool:
    """Run ``step`` if its message (if any) has arrived; return whether it ran."""
    received: list[Chunk] | None = None
    if step.op.receives:
        queue = links.get((step.recv_peer, step.rank, step.channel))  # type: ignore[arg-type]
        if not queue:
            return False
        received = queue.popleft()
        if len(received) != step.chunks:
            raise TraceError(
                f"{mem.algo.source}: gpu {step.rank}, tb {step.tb}, step {step.index}: "
                f"receives {step.chunks} chunk(s) but gpu {step.recv_peer} sent {len(received)}"
            )
    op = step.op
    out: list[Chunk]
    if op is StepType.SEND:
        out = mem.read(step, step.srcbuf, step.srcoff)
    elif op in (StepType.RECV, StepType.RECV_COPY_SEND):
        out = received  # type: ignore[assignment]
        mem.write(step, step.dstbuf, step.dstoff, out)
    elif op in (
        StepType.RECV_REDUCE_COPY,
        StepType.RECV_REDUCE_SEND,
        StepType.RECV_REDUCE_COPY_SEND,
    ):
        local = mem.read(step, step.srcbuf, step.srcoff)
        out = [_reduce(a, b) for a, b in zip(local, received, strict=True)]  # type: ignore[arg-type]
        if op is not StepType.RECV_REDUCE_SEND:
            mem.write(step, step.dstbuf, step.dstoff, out)
    elif op is StepType.COPY:
        mem.write(step, step.dstbuf, step.dstoff, mem.read(step, step.srcbuf, step.srcoff))
        out = []
    elif op is StepType.REDUCE:
        src = mem.read(step, step.srcbuf, step.srcoff)
        dst = mem.read(step, step.dstbuf, step.dstoff)
        mem.write(
            step, step.dstbuf, step.dstoff, [_reduce(a, b) for a, b in zip(dst, src, strict=True)]
        )
        out = []
    else:  # pragma: no cover - nop steps are removed by rank_schedules
        raise AssertionError(op)
    if op.sends:
        links.setdefault((step.rank, step.send_peer, step.channel), deque()).append(out)  # type: ignore[arg-type]
    return True


def _expected(algo: MscclAlgorithm, rank: int) -> tuple[Buffer, list[Chunk]]:
    n, m = algo.ngpus, algo.nchunksperloop // algo.ngpus
    coll = algo.coll
    if coll is MscclCollective.ALLREDUCE:
        buf = Buffer.INPUT if algo.inplace else Buffer.OUTPUT
        return buf, [tuple((q, c) for q in range(n)) for c in range(algo.nchunksperloop)]
    if coll is MscclCollective.ALLGATHER:
        return Buffer.OUTPUT, [((q, k),) for q in range(n) for k in range(m)]
    if coll is MscclCollective.ALLTOALL:
        return Buffer.OUTPUT, [((q, rank * m + k),) for q in range(n) for k in range(m)]
    if coll is MscclCollective.REDUCE_SCATTER:
        return Buffer.OUTPUT, [tuple((q, rank * m + k) for q in range(n)) for k in range(m)]
    raise TraceError(
        f"{algo.source}: <algo>: no postcondition is defined here for coll={coll.value!r}"
    )


def verify_collective(algo: MscclAlgorithm) -> DataflowResult:
    """Run the algorithm on symbols and check every rank ends with what the collective
    defines; raises :class:`TraceError` naming the first rank and chunk that is wrong."""
    result = run_dataflow(algo)
    for rank in range(algo.ngpus):
        buf, want = _expected(algo, rank)
        have = result.buffers[rank][buf]
        for c, expect in enumerate(want):
            got = have[c] if c < len(have) else None
            if got != expect:
                raise TraceError(
                    f"{algo.source}: gpu {rank}: after the algorithm, chunk {c} of buffer "
                    f"{buf.value!r} holds {got}, but {algo.coll.value} requires {expect}"
                )
    return result
