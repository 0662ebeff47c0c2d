"""Collective schedules: who sends which chunk to whom, in which logical step.

A collective algorithm lowers to a :class:`Schedule`: a sequence of :class:`Round` objects
(the algorithm's logical steps). Each round is a batch of transfers held as NumPy arrays so
that a thousand-rank schedule is built and simulated without a Python loop per transfer.

Data model (the same one MSCCL-IR uses for its chunks, arXiv 2408.11008 sec. 3): every
endpoint owns a buffer of ``slots`` equal chunks of ``slot_bytes`` bytes. A transfer copies
or reduces ``count`` consecutive slots of the source buffer, starting at ``src_slot``, into
the destination buffer starting at ``dst_slot``. Endpoints ``0 .. n-1`` are the ranks; an
algorithm may add endpoints after them (the aggregation point of an in-network reduction).

:func:`execute_symbolically` runs a schedule on *contributions* instead of numbers: each slot
holds a count vector over atoms ``(origin rank, origin slot)``. After the schedule, each op's
postcondition (:func:`check_outcome`) says exactly which atoms each rank must hold, once each,
so a missing or double-counted contribution is caught.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deepflow.network.ops import Collective


@dataclass(frozen=True)
class Round:
    """One logical step: ``len(src)`` concurrent transfers of ``count`` slots each.

    A ``barrier`` round starts no transfer before every earlier transfer has arrived.

    ``reduce[i]`` is True when transfer ``i`` adds into the destination (a reduction) and
    False when it overwrites (a copy).
    """

    src: np.ndarray
    dst: np.ndarray
    src_slot: np.ndarray
    dst_slot: np.ndarray
    count: int
    reduce: np.ndarray
    barrier: bool = False

    @classmethod
    def of(
        cls,
        src: object,
        dst: object,
        src_slot: object,
        dst_slot: object,
        count: int,
        reduce: object,
        barrier: bool = False,
    ) -> Round:
        """Build a round, broadcasting scalars to the transfer count."""
        arrays = np.broadcast_arrays(
            np.asarray(src, dtype=np.int64),
            np.asarray(dst, dtype=np.int64),
            np.asarray(src_slot, dtype=np.int64),
            np.asarray(dst_slot, dtype=np.int64),
            np.asarray(reduce, dtype=bool),
        )
        s, d, ss, ds, r = (np.ascontiguousarray(a).ravel() for a in arrays)
        assert count >= 1, "a transfer moves at least one slot"
        return cls(s, d, ss, ds, int(count), r, barrier)

    def __len__(self) -> int:
        return int(self.src.size)


@dataclass(frozen=True)
class Schedule:
    """A lowered collective: ``op`` over ``ranks`` ranks of a ``size``-byte buffer.

    ``endpoints`` >= ``ranks`` counts the extra endpoints (in-network aggregation points).
    ``block_of_rank`` says which output block each rank holds after a reduce-scatter (and
    contributes before an all-gather); the identity unless an algorithm documents otherwise.
    """

    op: Collective
    ranks: int
    endpoints: int
    slots: int
    size: float
    rounds: tuple[Round, ...]
    block_of_rank: tuple[int, ...] = field(default=())
    root: int = 0

    @property
    def slot_bytes(self) -> float:
        """Bytes per slot; an all-to-all's ``size`` is its send half."""
        half = self.op is Collective.ALL_TO_ALL
        return self.size / (self.slots // 2 if half else self.slots)

    @property
    def transfers(self) -> int:
        return sum(len(r) for r in self.rounds)

    def bytes_sent(self) -> np.ndarray:
        """Bytes each endpoint injects into the network over the whole schedule."""
        out = np.zeros(self.endpoints)
        for r in self.rounds:
            np.add.at(out, r.src, r.count * self.slot_bytes)
        return out

    def blocks(self) -> np.ndarray:
        if self.block_of_rank:
            return np.asarray(self.block_of_rank)
        return np.arange(self.ranks)


def slots_for(op: Collective, ranks: int, chunks: int) -> int:
    """Buffer slots of a collective: ``ranks * chunks`` for the ops whose buffer is split
    into one block per rank, ``chunks`` for broadcast and reduce, and ``2 * ranks`` for
    all-to-all (a send half and a receive half, one block per peer)."""
    if op in (Collective.BROADCAST, Collective.REDUCE):
        return chunks
    if op is Collective.ALL_TO_ALL:
        return 2 * ranks
    return ranks * chunks


def initial_state(schedule: Schedule) -> np.ndarray:
    """Count vectors before the collective: shape (endpoints, slots, ranks * slots)."""
    n, m = schedule.ranks, schedule.slots
    state = np.zeros((schedule.endpoints, m, n * m), dtype=np.int32)
    op = schedule.op
    blocks = schedule.blocks()
    per_block = m // n if op not in (Collective.BROADCAST, Collective.REDUCE) else m
    for r in range(n):
        if op is Collective.ALL_GATHER:
            b = blocks[r]
            owned = range(b * per_block, (b + 1) * per_block)
        elif op is Collective.BROADCAST:
            owned = range(m) if r == schedule.root else range(0)
        elif op is Collective.ALL_TO_ALL:
            owned = range(n)  # the send half; a rank's block for itself is a local copy
            state[r, n + r, r * m + r] = 1
        else:
            owned = range(m)
        for s in owned:
            state[r, s, r * m + s] = 1
    return state


def execute_symbolically(schedule: Schedule) -> np.ndarray:
    """Run ``schedule`` on contribution counts; returns the final state.

    Within a round every transfer reads the state as it was when the round began
    (transfers in one round are concurrent), and reductions into one slot accumulate.
    """
    state = initial_state(schedule)
    for rnd in schedule.rounds:
        before = state.copy()
        offsets = np.arange(rnd.count)
        for i in range(len(rnd)):
            src_slots = rnd.src_slot[i] + offsets
            dst_slots = rnd.dst_slot[i] + offsets
            data = before[rnd.src[i], src_slots]
            if rnd.reduce[i]:
                state[rnd.dst[i], dst_slots] += data
            else:
                state[rnd.dst[i], dst_slots] = data
    return state


def check_outcome(schedule: Schedule, state: np.ndarray) -> list[str]:
    """Postconditions of each op; returns a list of violations (empty when correct).

    * all-reduce: every rank, every slot ``s`` holds atom ``(r, s)`` once for every rank r;
    * reduce-scatter: rank r's output block holds every rank's contribution once;
    * all-gather: every rank holds every block, each from its owner;
    * broadcast: every rank holds the root's slots; reduce: the root holds the sum;
    * all-to-all: rank j's receive slot i holds rank i's send slot j.
    """
    n, m = schedule.ranks, schedule.slots
    op = schedule.op
    blocks = schedule.blocks()
    problems: list[str] = []

    def want_sum(s: int) -> np.ndarray:
        v = np.zeros(n * m, dtype=np.int32)
        v[np.arange(n) * m + s] = 1
        return v

    def want_one(origin: int, s: int) -> np.ndarray:
        v = np.zeros(n * m, dtype=np.int32)
        v[origin * m + s] = 1
        return v

    checks: list[tuple[int, int, np.ndarray]] = []
    if op is Collective.ALL_REDUCE:
        checks = [(r, s, want_sum(s)) for r in range(n) for s in range(m)]
    elif op is Collective.REDUCE_SCATTER:
        k = m // n
        for r in range(n):
            b = blocks[r]
            checks += [(r, s, want_sum(s)) for s in range(b * k, (b + 1) * k)]
    elif op is Collective.ALL_GATHER:
        k = m // n
        owner = {int(blocks[r]): r for r in range(n)}
        checks = [(r, s, want_one(owner[s // k], s)) for r in range(n) for s in range(m)]
    elif op is Collective.BROADCAST:
        checks = [(r, s, want_one(schedule.root, s)) for r in range(n) for s in range(m)]
    elif op is Collective.REDUCE:
        checks = [(schedule.root, s, want_sum(s)) for s in range(m)]
    elif op is Collective.ALL_TO_ALL:
        checks = [(j, n + i, want_one(i, j)) for j in range(n) for i in range(n)]
    for r, s, want in checks:
        if not np.array_equal(state[r, s], want):
            got = {
                (int(a) // m, int(a) % m): int(state[r, s, a]) for a in np.nonzero(state[r, s])[0]
            }
            problems.append(f"rank {r} slot {s}: holds {got}")
            if len(problems) >= 5:
                break
    return problems
