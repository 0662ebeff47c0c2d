"""Exact pruning for the exhaustive search: the same top strategies and Pareto front, fewer
evaluations.

The points of a :class:`~deepflow.search.space.SearchSpace` fall into *groups* that share
the dense mesh ``(pp, vpp, tp, cp, dp)`` and every knob in :data:`GROUP_KNOBS`
(``ep``, ``expert_tp``, ``micro_batch_size``, ``sequence_parallel``, ``fp8_recipe``); the
members of a group differ only in ``zero``, the recompute setting and the pipeline
schedule (up to 4 x 3 x 3 points, more with recompute policies).

**The bound.** The closed-form step (:mod:`deepflow.estimate.evaluate`) is

    step = m max_i T_i + bubble + exposed data-parallel sync + optimizer

with every term non-negative (:func:`deepflow.estimate.pipeline.pipeline_time` returns
``steady = m max_i T_i`` and a bubble ``>= 0``), and each stage time ``T_i`` the sum of its
parts (:data:`~deepflow.estimate.evaluate.STAGE_PARTS`), all non-negative. Of these parts,
the compute, the tensor-, context- and expert-parallel communication of the forward and
backward passes (recomputation's reruns are the separate ``recompute`` part and the
``recompute_*`` collectives) and the pipeline point-to-point transfers
(:data:`BOUND_PARTS`) are functions of the group's knobs only: none of
:func:`deepflow.estimate.layer_cost.layer_cost`'s ``forward_compute``,
``backward_compute``, ``tp/cp/ep_comm_forward/backward`` nor the embedding and head costs
read ``zero``, ``recompute`` or ``pipeline_schedule``. So for any stage ``c`` and any
member ``x`` of a group,

    step(x) >= m T_c(x) >= m sum_{k in BOUND_PARTS} part_k,c(x) = m sum_k part_k,c(r)

for the group's representative ``r`` (its first member). The evaluator's breakdown holds
exactly ``m part_k,c`` for the representative's critical stage ``c``, so the bound of a
group is one ordinary :func:`~deepflow.estimate.evaluate.evaluate` of its representative,
summed over :data:`BOUND_PARTS`: no cost formula is restated here.
``tests/search/test_prune.py`` checks ``bound <= step`` on random strategies
(Hypothesis) and identical top strategies against the unpruned search.

**The memory bound.** The same evaluation gives the group's peak-memory lower bound:
the estimator's ``memory_floor`` (:func:`deepflow.estimate.evaluate.evaluate` with
``memory_floor_zeros``, proof in its docstring), the least peak memory any strategy that
differs from the representative only in ZeRO stage, recompute setting and pipeline
schedule can have: the weights, gradients, optimizer state and buffers at each ZeRO stage
of the group, the activations at their least over recompute settings and schedules
(``LayerCost.saved_floor`` / ``live_floor``, ``in_flight`` over every schedule), through
the same functions that make the estimate. The accelerator count is the group's.
``tests/search/test_prune.py`` checks ``floor <= peak`` on random strategies (Hypothesis),
and that the bound is attained within 1 % on some groups, so a bound made tighter than
it is fails the test.

**The search.** :func:`pruned_search` bounds every group (one evaluation per group). A
group whose memory bound exceeds the accelerator's memory holds no feasible point (each
member is out of memory or breaks a structural rule first) and is never evaluated. The
others are evaluated whole, in order of increasing time bound (in the objective, which is
increasing in the step time for a fixed accelerator count), then memory bound, keeping the
``top`` best points seen and the Pareto front of the points evaluated. A group is skipped
when both hold:

* ``top`` feasible points are known and its bound exceeds the ``top``-th best value: it
  cannot hold a point of the top list;
* a point ``p`` of the front is strictly faster than its time bound, needs no more memory
  than its memory bound and no more accelerators, (all with a relative margin of
  :data:`_MARGIN` against rounding): then ``p`` precedes every member ``x`` in
  :func:`~deepflow.search.exhaustive.pareto_front`'s order (``p.t < x.t``) with
  ``p.mem <= x.mem`` and ``p.acc <= x.acc``, so ``p`` dominates ``x`` exactly as
  ``pareto_front`` and ``_pareto_2d`` define dominance and ties.

Dominance in that order is transitive, so a point dominated by a skipped point is
dominated by an evaluated one: the front of the evaluated points is the exhaustive
search's front, point for point. Ranking keys are the points' positions in the full
enumeration, so ties are broken exactly as in
:func:`~deepflow.search.exhaustive.exhaustive_search` and the top list is identical.
``tests/search/test_prune.py`` compares both with the exhaustive search on several spaces.

What the pruned search does not give: the infeasibility counts cover the evaluated points
only (a skipped group's members are never checked one by one), and it says so
(``SearchResult.extra``, and the CLI's table).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from deepflow.estimate.evaluate import evaluate
from deepflow.parallel.feasibility import Context, structural_violations
from deepflow.search.exhaustive import (
    DEFAULT_CHUNK_SIZE,
    REASONS,
    Candidate,
    ChunkSummary,
    ChunkTask,
    SearchResult,
    SpaceInfo,
    checked_search_arguments,
    combine,
    pareto_front,
    run_chunk,
)
from deepflow.search.objective import Objective, objective_values
from deepflow.search.space import COLUMNS, Chunk, RowAxes, SearchSpace

GROUP_KNOBS = ("ep", "expert_tp", "micro_batch_size", "sequence_parallel", "fp8_recipe")
"""Knobs a group shares besides its dense mesh ``(pp, vpp, tp, cp, dp)``."""
BOUND_PARTS = ("compute", "tp_comm", "cp_comm", "ep_comm", "pp_comm")
"""Breakdown parts of the critical stage that depend on a group's knobs only."""
# a bound is compared with the threshold with this relative margin, so that rounding in
# a different order of summation can never prune a point that ties the threshold
_MARGIN = 1e-9


def step_time_bound(result_breakdown: dict[str, np.ndarray]) -> np.ndarray:
    """The lower bound on the step time of every member of a representative's group, from
    the representative's evaluated breakdown (see the module docstring). Not finite
    (a structurally invalid representative) gives 0: no pruning."""
    bound = sum(result_breakdown[k] for k in BOUND_PARTS)
    bound = np.asarray(bound, dtype=np.float64)
    return np.where(np.isfinite(bound), bound, 0.0)


def _inner(axes: RowAxes) -> tuple[np.ndarray, np.ndarray]:
    """The members of a group of a mesh with ``axes``, as columns ``(zero, recompute,
    recompute_modules, recompute_layers, pipeline_schedule)``, and their offsets within
    the block (to which the group's FP8 recipe index is added)."""
    z, p, s = np.meshgrid(
        np.arange(len(axes.zeros)),
        np.arange(len(axes.policies)),
        np.arange(len(axes.schedules)),
        indexing="ij",
    )
    z, p, s = z.ravel(), p.ravel(), s.ravel()
    cols = np.column_stack([axes.zeros[z], axes.policies[p], axes.schedules[s]])
    offsets = ((z * len(axes.policies) + p) * len(axes.schedules) + s) * len(axes.fp8_recipes)
    return cols.astype(np.int64), offsets.astype(np.int64)


@dataclass
class Groups:
    """The groups of one space, in enumeration order: for each, its mesh (``row``, index
    into ``space.rows``), its block within the mesh (``block``, after the ``etp-sp``
    filter) and FP8 recipe (``recipe``, index into the mesh's recipes), its ``size``,
    its representative (``rep``, a :data:`~deepflow.search.space.COLUMNS` table row: the
    group's first member) and the position of its first member (``start``)."""

    row: np.ndarray
    block: np.ndarray
    recipe: np.ndarray
    size: np.ndarray
    rep: np.ndarray
    start: np.ndarray
    row_offsets: np.ndarray  # position of each mesh's first point; the last is the size
    zeros: tuple[int, ...] = ()  # the ZeRO stages of the groups' members (all meshes)

    def __len__(self) -> int:
        return len(self.row)


def space_groups(space: SearchSpace) -> Groups:
    """The groups of ``space`` without enumerating its points (a group is a block of a
    mesh with one FP8 recipe, see :class:`~deepflow.search.space.RowAxes`)."""
    rows, blocks, recipes, sizes, reps, starts = [], [], [], [], [], []
    offsets = [0]
    zeros: set[int] = set()
    for r, mesh in enumerate(space.rows):
        axes = space.row_axes(*mesh)
        zeros.update(int(z) for z in axes.zeros)
        inner = axes.inner_size
        if not inner:
            offsets.append(offsets[-1])
            continue
        kept = axes.kept_blocks()
        nf = len(axes.fp8_recipes)
        k, f = np.meshgrid(np.arange(len(kept)), np.arange(nf), indexing="ij")
        k, f = k.ravel(), f.ravel()
        first = np.array([axes.zeros[0], *axes.policies[0], axes.schedules[0]], dtype=np.int64)
        rep = np.empty((len(k), len(COLUMNS)), dtype=np.int64)
        rep[:, 0:5] = mesh
        rep[:, 5:9] = kept[k]
        rep[:, 9:14] = first
        rep[:, 14] = axes.fp8_recipes[f]
        rows.append(np.full(len(k), r, dtype=np.int64))
        blocks.append(k)
        recipes.append(f)
        sizes.append(np.full(len(k), inner // nf, dtype=np.int64))
        reps.append(rep)
        starts.append(offsets[-1] + k * inner + f)
        offsets.append(offsets[-1] + len(kept) * inner)
    cat = (lambda xs: np.concatenate(xs)) if rows else (lambda xs: np.zeros(0, dtype=np.int64))
    return Groups(
        row=cat(rows),
        block=cat(blocks),
        recipe=cat(recipes),
        size=cat(sizes),
        rep=np.concatenate(reps) if reps else np.zeros((0, len(COLUMNS)), dtype=np.int64),
        start=cat(starts),
        row_offsets=np.array(offsets, dtype=np.int64),
        zeros=tuple(sorted(zeros)),
    )


def group_bounds(
    space: SearchSpace, groups: Groups, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """The step-time lower bound (seconds, :func:`step_time_bound`) and the peak-memory
    lower bound (bytes, the estimator's ``memory_floor`` over the groups' ZeRO stages) of
    each of ``groups``: one evaluation of its representative. A bound that is not finite
    gives 0 (no pruning)."""
    bound = np.zeros(len(groups))
    floor = np.zeros(len(groups))
    for start in range(0, len(groups), chunk_size):
        part = groups.rep[start : start + chunk_size]
        result = evaluate(
            space.model,
            space.system,
            space.global_batch_size,
            space.batch(SearchSpace.table_columns(part)),
            memory_floor_zeros=groups.zeros,
        )
        bound[start : start + len(part)] = step_time_bound(result.breakdown)
        assert result.memory_floor is not None
        low = result.memory_floor
        floor[start : start + len(part)] = np.where(np.isfinite(low), low, 0.0)
    return bound, floor


class _Members:
    """The member tables of groups of one space (per-mesh inner grids cached)."""

    def __init__(self, space: SearchSpace, groups: Groups) -> None:
        self.space = space
        self.groups = groups
        self._inner: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(table, positions)`` of group ``i``'s members, in enumeration order."""
        g = self.groups
        r = int(g.row[i])
        got = self._inner.get(r)
        if got is None:
            got = self._inner[r] = _inner(self.space.row_axes(*self.space.rows[r]))
        cols, offsets = got
        table = np.empty((len(cols), len(COLUMNS)), dtype=np.int64)
        table[:] = g.rep[i]
        table[:, 9:14] = cols
        return table, g.start[i] + offsets


class _Front:
    """The Pareto front of the points evaluated so far, for the dominance test of
    lower-bound points (:func:`pareto_front`'s order and ties)."""

    def __init__(self) -> None:
        self.points: list[Candidate] = []
        self._levels: list[tuple[int, np.ndarray, np.ndarray]] = []

    def add(self, candidates: Sequence[Candidate]) -> None:
        if not candidates:
            return
        self.points = pareto_front([*self.points, *candidates])
        t = np.array([c.step_time_s for c in self.points])
        mem = np.array([c.peak_memory_bytes for c in self.points])
        acc = np.array([c.num_accelerators for c in self.points])
        self._levels = []
        for a in np.unique(acc):
            on = acc <= a  # the points a group of ``a`` accelerators can be dominated by
            order = np.argsort(t[on], kind="stable")
            self._levels.append((int(a), t[on][order], np.minimum.accumulate(mem[on][order])))

    def dominates(self, t: np.ndarray, mem: np.ndarray, acc: np.ndarray) -> np.ndarray:
        """Per lower-bound point ``(t, mem, acc)``: a point of the front is strictly faster
        and uses no more memory and accelerators, with the relative margin, so it precedes
        and dominates every point the bound bounds (see the module docstring)."""
        out = np.zeros(len(t), dtype=bool)
        for a, times, least in self._levels:
            on = acc >= a
            if not on.any():
                continue
            i = np.searchsorted(times, t[on] * (1.0 - _MARGIN), side="left")
            best = np.where(i > 0, least[np.maximum(i - 1, 0)], np.inf)
            out[on] |= best <= mem[on] * (1.0 - _MARGIN)
        return out


def pruned_search(
    spaces: SearchSpace | Sequence[SearchSpace],
    *,
    objective: Objective | str = Objective.TIME,
    top: int = 10,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_chunk: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """The top strategies and the Pareto front of ``spaces``, identical to those of
    :func:`~deepflow.search.exhaustive.exhaustive_search`, evaluating only the groups
    whose lower bounds do not exclude them (see the module docstring).

    ``result.evaluated`` counts the points of the groups evaluated (those a structural
    rule rejects are counted under it without running the cost model), and so do the
    infeasible counts; ``result.extra`` holds ``considered`` (the points of the spaces),
    ``groups`` (groups bounded, one evaluation each), ``groups_evaluated``,
    ``groups_out_of_memory`` (skipped: their memory bound exceeds the accelerator's
    memory), ``groups_dominated`` (skipped: outside the top list and dominated on the
    front), ``evaluated_in_full`` and ``bound_s`` / ``evaluate_s`` (the wall time of each
    phase). ``on_chunk(done, total)`` is called after every evaluated batch with the
    groups decided so far (evaluated or skipped) out of all groups.
    """
    start = time.perf_counter()
    objective, space_list = checked_search_arguments(spaces, objective, top, chunk_size)

    # phase 1: every group's bounds (time in the objective's units, memory in bytes)
    all_groups = [space_groups(space) for space in space_list]
    values, times, floors = [], [], []
    for space, groups in zip(space_list, all_groups, strict=True):
        bound, floor = group_bounds(space, groups, chunk_size)
        values.append(objective_values(objective, bound, space.system))
        times.append(bound)
        floors.append(floor)
    value = np.concatenate(values)
    t_bound = np.concatenate(times)
    m_bound = np.concatenate(floors)
    which = np.concatenate([np.full(len(g), s, dtype=np.int64) for s, g in enumerate(all_groups)])
    local = np.concatenate([np.arange(len(g), dtype=np.int64) for g in all_groups])
    accs = np.array([sp.system.num_accelerators for sp in space_list], dtype=np.int64)[which]
    capacity = np.array([sp.system.accelerator.memory_capacity for sp in space_list])[which]
    sizes = np.concatenate([g.size for g in all_groups]) if all_groups else np.zeros(0, int)
    # every member is out of memory (or breaks a structural rule): never evaluated
    out_of_memory = m_bound > capacity * (1.0 + _MARGIN)
    # best first: by the objective's bound (the top list), then the memory bound (the front)
    order = np.lexsort((local, which, m_bound, value))
    order = order[~out_of_memory[order]]
    bound_s = time.perf_counter() - start

    # phase 2: whole groups, best bound first, each checked against what is known when
    # its batch is formed
    members = [_Members(sp, g) for sp, g in zip(space_list, all_groups, strict=True)]
    contexts = [Context(sp.model, sp.system, sp.global_batch_size) for sp in space_list]
    summaries: list[ChunkSummary] = []
    best: list[tuple[float, float, int, tuple[int, int]]] = []
    front = _Front()
    threshold = np.inf
    done_groups = full = dominated = 0
    total = len(value)
    scan = max(256, chunk_size // 8)  # groups checked at a time
    pending = np.zeros(0, dtype=np.int64)
    pos = batch_index = 0

    def wanted(idx: np.ndarray) -> np.ndarray:
        above = value[idx] > threshold * (1.0 + _MARGIN)
        if not above.any():
            return np.ones(len(idx), dtype=bool)
        return ~(above & front.dominates(t_bound[idx], m_bound[idx], accs[idx]))

    while True:
        keep = wanted(pending)
        dominated += int((~keep).sum())
        pending = pending[keep]
        while pos < len(order) and int(sizes[pending].sum()) < chunk_size:
            block = order[pos : pos + scan]
            pos += len(block)
            keep = wanted(block)
            dominated += int((~keep).sum())
            pending = np.concatenate([pending, block[keep]])
        if not len(pending):
            break
        # a batch: the first pending groups of one space, up to chunk_size points
        same = which[pending] == which[pending[0]]
        run = pending[same]
        cut = int(np.searchsorted(np.cumsum(sizes[run]), chunk_size, side="left")) + 1
        batch = run[:cut]
        taken = np.flatnonzero(same)[: len(batch)]
        pending = np.delete(pending, taken)
        s0 = int(which[batch[0]])
        parts = [members[s0].of(int(i)) for i in local[batch]]
        table = np.concatenate([tab for tab, _ in parts])
        keys = np.concatenate([k for _, k in parts])
        space = space_list[s0]
        # structurally invalid points are counted under their rule, not costed
        violation = structural_violations(
            contexts[s0], space.batch(SearchSpace.table_columns(table))
        )
        ok = violation < 0
        codes = np.bincount(violation[~ok], minlength=len(REASONS))
        counts = {REASONS[j]: int(c) for j, c in enumerate(codes) if c}
        chunk = Chunk(s0, batch_index, 0, SearchSpace.table_columns(table[ok]), keys=keys[ok])
        summary = run_chunk(ChunkTask(space, chunk, objective, top))
        for reason, c in summary.counts.items():
            counts[reason] = counts.get(reason, 0) + c
        summaries.append(replace(summary, evaluated=len(table), counts=counts))
        batch_index += 1
        done_groups += len(batch)
        full += int(ok.sum())
        best = sorted([*best, *(c.rank_key(objective) for c in summary.top)])[:top]
        if len(best) == top:
            threshold = best[-1][0]
        front.add(summary.pareto)
        if on_chunk is not None:
            on_chunk(done_groups + dominated + int(out_of_memory.sum()), total)
    if on_chunk is not None:
        on_chunk(total, total)
    evaluate_s = time.perf_counter() - start - bound_s

    infos = [
        SpaceInfo(sp.system.num_accelerators, int(g.row_offsets[-1]), 0)
        for sp, g in zip(space_list, all_groups, strict=True)
    ]
    result = combine(summaries, objective, top, infos)
    return replace(
        result,
        chunks_evaluated=batch_index,
        wall_s=time.perf_counter() - start,
        price_per_accelerator_hour=space_list[0].system.price_per_accelerator_hour,
        extra={
            "pruned": True,
            "considered": sum(info.points for info in infos),
            "groups": total,
            "groups_evaluated": done_groups,
            "groups_out_of_memory": int(out_of_memory.sum()),
            "groups_dominated": dominated,
            "evaluated_in_full": full,
            "bound_s": bound_s,
            "evaluate_s": evaluate_s,
        },
    )


__all__ = [
    "BOUND_PARTS",
    "GROUP_KNOBS",
    "Groups",
    "group_bounds",
    "pruned_search",
    "space_groups",
    "step_time_bound",
]
