"""Pipeline schedules as data: for each stage, the ordered list of its passes.

A schedule is a table: ``table[s]`` is the program of pipeline stage ``s``, a sequence of
:class:`Op` ``(kind, micro_batch, chunk)`` with ``kind`` one of

* ``F`` - the forward pass of one micro-batch through one model chunk,
* ``B`` - its backward pass (input and weight gradients together, unless the table also
  has ``W`` passes, in which case ``B`` computes the input gradient only),
* ``W`` - the deferred weight-gradient pass (zero-bubble schedules).

Chunks are virtual stages: with ``v`` chunks per stage, chunk ``c`` of stage ``s`` is
virtual stage ``c p + s`` (Narayanan et al. 2021, sec. 2.2.2). The executor runs each
stage's list in order on its compute stream; the data dependencies between stages (a
forward needs the activation from the previous virtual stage, a backward the gradient from
the next) come from the lowering, not from the table. So a new schedule is a new table
generator here, not new executor code.

Closed forms on ``p`` uniform stages of per-micro-batch time ``T = F + B`` and ``m``
micro-batches, which the tests hold the simulator to exactly:

* GPipe (Huang et al. 2019, arXiv 1811.06965, sec. 2.3): all forwards, then all
  backwards; bubble ``(p - 1) T``, fraction ``(p - 1) / m``.
* 1F1B / PipeDream-Flush (Narayanan et al. 2021, arXiv 2104.04473, sec. 2.2.1): stage
  ``s`` warms up with ``p - s - 1`` forwards, then alternates one forward and one backward,
  then drains; same bubble as GPipe, at most ``p - s`` micro-batches in flight.
* Interleaved 1F1B (Narayanan et al. 2021, sec. 2.2.2): ``v`` chunks per stage in groups
  of ``p`` micro-batches; bubble ``(p - 1) T / v``.
* ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism", arXiv 2401.10241, sec. 3.1):
  the backward is split into ``B`` and ``W``; ``W`` passes are deferred into the bubbles
  of 1F1B, which shrink from ``(p - 1)(F + B + W)`` to ``(p - 1)(F + B - W)``, with no
  more micro-batches in flight than 1F1B's first stage holds.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import NamedTuple

from deepflow.specs.strategy import PipelineSchedule

__all__ = [
    "Op",
    "Table",
    "gpipe",
    "interleaved_1f1b",
    "one_f_one_b",
    "table_for",
    "validate_table",
    "zb_h1",
]


class Op(NamedTuple):
    """One pass of a stage's program: ``kind`` in ``F``, ``B``, ``W``."""

    kind: str
    micro_batch: int
    chunk: int = 0


Table = tuple[tuple[Op, ...], ...]


def gpipe(p: int, m: int) -> Table:
    """GPipe (Huang et al. 2019): every forward, then every backward, in micro-batch order."""
    one = tuple(Op("F", j) for j in range(m)) + tuple(Op("B", j) for j in range(m))
    return tuple(one for _ in range(p))


def one_f_one_b(p: int, m: int) -> Table:
    """1F1B (PipeDream-Flush; Narayanan et al. 2021, sec. 2.2.1, Fig. 4 top)."""
    table = []
    for s in range(p):
        warm = min(p - s - 1, m)
        ops = [Op("F", j) for j in range(warm)]
        for j in range(m - warm):
            ops += [Op("F", warm + j), Op("B", j)]
        ops += [Op("B", j) for j in range(m - warm, m)]
        table.append(tuple(ops))
    return tuple(table)


def _virtual_order(p: int, m: int, v: int, backward: bool) -> list[tuple[int, int]]:
    """Megatron-LM's order of (micro-batch, chunk) passes on one stage: groups of ``p``
    micro-batches go through chunk 0, 1, ... (forward) or ``v - 1`` ... 0 (backward)."""
    order = []
    for start in range(0, m, p):
        group = range(start, min(start + p, m))
        for c in range(v):
            chunk = v - 1 - c if backward else c
            order += [(j, chunk) for j in group]
    return order


def interleaved_1f1b(p: int, m: int, v: int) -> Table:
    """Interleaved 1F1B (Narayanan et al. 2021, sec. 2.2.2, Fig. 4 bottom; Megatron-LM's
    ``forward_backward_pipelining_with_interleaving``): stage ``s`` warms up with
    ``2 (p - s - 1) + (v - 1) p`` chunk-forwards, then alternates, then drains."""
    if v == 1:
        return one_f_one_b(p, m)
    fwd = _virtual_order(p, m, v, backward=False)
    bwd = _virtual_order(p, m, v, backward=True)
    total = m * v
    table = []
    for s in range(p):
        warm = min(2 * (p - s - 1) + (v - 1) * p, total)
        ops = [Op("F", *fwd[k]) for k in range(warm)]
        for k in range(total - warm):
            ops += [Op("F", *fwd[warm + k]), Op("B", *bwd[k])]
        ops += [Op("B", *bwd[k]) for k in range(total - warm, total)]
        table.append(tuple(ops))
    return tuple(table)


def zb_h1(
    p: int,
    m: int,
    f: Sequence[float] | float = 1.0,
    b: Sequence[float] | float = 1.0,
    w: Sequence[float] | float = 1.0,
) -> Table:
    """ZB-H1 (Qi et al. 2023, sec. 3.1): 1F1B's order of ``F`` and ``B``, with each ``W``
    placed where the stage would otherwise wait, and the ``W`` of a micro-batch forced
    before a new forward when ``p`` micro-batches are in flight (1F1B's peak, on stage 0).

    The table is generated by a list schedule of the passes with per-stage times ``f``,
    ``b``, ``w`` (unit times give the paper's handcrafted schedule); the result is frozen
    as data like any other table.
    """
    ff, bb, ww = (_per_stage(x, p) for x in (f, b, w))
    base = one_f_one_b(p, m)
    pos = [0] * p  # next F/B in the 1F1B order
    pending: list[list[int]] = [[] for _ in range(p)]  # micro-batches with B done, W not
    in_flight = [0] * p
    f_end = [[-1.0] * m for _ in range(p)]
    b_end = [[-1.0] * m for _ in range(p)]
    out: list[list[Op]] = [[] for _ in range(p)]
    heap = [(0.0, s) for s in range(p)]
    blocked: list[int] = []  # stages waiting for a pass another stage has not scheduled
    while heap:
        t, s = heapq.heappop(heap)
        if pos[s] == len(base[s]) and not pending[s]:
            continue
        op = base[s][pos[s]] if pos[s] < len(base[s]) else None
        ready_at = -1.0  # unknown: the dependency is not scheduled yet
        if op is not None:
            if op.kind == "F":
                ready_at = f_end[s - 1][op.micro_batch] if s > 0 else 0.0
                if in_flight[s] >= p and pending[s]:
                    ready_at = math.inf  # memory cap: retire a W first
            else:
                ready_at = b_end[s + 1][op.micro_batch] if s < p - 1 else f_end[s][op.micro_batch]
        if op is not None and 0.0 <= ready_at <= t:
            pos[s] += 1
            if op.kind == "F":
                end = t + ff[s]
                f_end[s][op.micro_batch] = end
                in_flight[s] += 1
            else:
                end = t + bb[s]
                b_end[s][op.micro_batch] = end
                pending[s].append(op.micro_batch)
            out[s].append(op)
        elif pending[s]:
            # fill the wait with a deferred weight-gradient pass
            j = pending[s].pop(0)
            in_flight[s] -= 1
            end = t + ww[s]
            out[s].append(Op("W", j))
        elif ready_at > t:
            heapq.heappush(heap, (ready_at, s))
            continue
        else:
            blocked.append(s)
            continue
        heapq.heappush(heap, (end, s))
        for other in blocked:
            heapq.heappush(heap, (end, other))
        blocked.clear()
    if blocked:
        raise AssertionError(f"ZB-H1 table generation deadlocked on stages {blocked}")
    return tuple(tuple(ops) for ops in out)


def _per_stage(x: Sequence[float] | float, p: int) -> list[float]:
    if isinstance(x, (int, float)):
        return [float(x)] * p
    values = [float(v) for v in x]
    if len(values) != p:
        raise ValueError(f"expected {p} per-stage times, got {len(values)}")
    return values


def table_for(
    schedule: PipelineSchedule,
    p: int,
    m: int,
    v: int = 1,
    times: tuple[Sequence[float], Sequence[float], Sequence[float]] | None = None,
) -> Table:
    """The table of ``schedule``; ``times`` = per-stage ``(F, B, W)`` for ZB-H1."""
    if schedule is PipelineSchedule.GPIPE:
        return gpipe(p, m)
    if schedule is PipelineSchedule.ZERO_BUBBLE:
        return zb_h1(p, m, *(times or (1.0, 1.0, 1.0)))
    if schedule is PipelineSchedule.INTERLEAVED or v > 1:
        return interleaved_1f1b(p, m, v)
    return one_f_one_b(p, m)


def validate_table(table: Table, m: int, v: int = 1) -> None:
    """Check that every stage runs each forward and backward (and ``W``, if the table has
    any) of every (micro-batch, chunk) exactly once, a backward after its forward."""
    for s, ops in enumerate(table):
        seen: dict[tuple[str, int, int], int] = {}
        for i, op in enumerate(ops):
            key = (op.kind, op.micro_batch, op.chunk)
            if key in seen:
                raise ValueError(f"stage {s}: {key} appears twice")
            seen[key] = i
        split = any(op.kind == "W" for op in ops)
        for j in range(m):
            for c in range(v):
                kinds = ("F", "B", "W") if split else ("F", "B")
                for kind in kinds:
                    if (kind, j, c) not in seen:
                        raise ValueError(f"stage {s}: missing {kind} of micro-batch {j} chunk {c}")
                if seen[("B", j, c)] < seen[("F", j, c)]:
                    raise ValueError(f"stage {s}: backward of {j} before its forward")
