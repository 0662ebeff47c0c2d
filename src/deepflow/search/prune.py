"""Exact pruning for the exhaustive search: the same top strategies, fewer evaluations.

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

**The search.** :func:`pruned_search` bounds every group (one evaluation per group), then
evaluates whole groups in order of increasing bound, keeping the ``top`` best points seen;
once ``top`` feasible points are known, a group whose bound (in the objective, which is
increasing in the step time for a fixed accelerator count) exceeds the ``top``-th best value
cannot hold a point of the top list, and neither can any later group: the search stops.
Ranking keys are the points' positions in the full enumeration, so ties are broken exactly
as in :func:`~deepflow.search.exhaustive.exhaustive_search` and the top list is identical.

What the pruned search does not give: the Pareto front and the infeasibility counts cover
the evaluated points only (a pruned group may hold slow points with little memory), so they
are reported as such (``SearchResult.extra``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from deepflow.errors import ConfigError
from deepflow.estimate.evaluate import evaluate
from deepflow.search.exhaustive import (
    DEFAULT_CHUNK_SIZE,
    ChunkSummary,
    ChunkTask,
    SearchResult,
    SpaceInfo,
    combine,
    run_chunk,
)
from deepflow.search.objective import Objective, check_objective, objective_values
from deepflow.search.space import COLUMNS, Chunk, SearchSpace

GROUP_KNOBS = ("ep", "expert_tp", "micro_batch_size", "sequence_parallel", "fp8_recipe")
"""Knobs a group shares besides its dense mesh ``(pp, vpp, tp, cp, dp)``."""
BOUND_PARTS = ("compute", "tp_comm", "cp_comm", "ep_comm", "pp_comm")
"""Breakdown parts of the critical stage that depend on a group's knobs only."""
_GROUP_INDEX = [COLUMNS.index(k) for k in GROUP_KNOBS]
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


@dataclass
class _Row:
    """One dense mesh of one space: its point table, and its points sorted by group."""

    table: np.ndarray
    order: np.ndarray  # point indices, grouped
    starts: np.ndarray  # group g is order[starts[g]:starts[g + 1]]


def _row_groups(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, order, starts)`` of the groups of a row table: the first point of each
    group (in enumeration order), the points sorted by group and each group's start."""
    if not len(table):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(1, dtype=np.int64)
    _, first, inverse = np.unique(
        table[:, _GROUP_INDEX], axis=0, return_index=True, return_inverse=True
    )
    inverse = inverse.reshape(-1)
    # number the groups by their first point, so that group order is enumeration order
    rank = np.empty(len(first), dtype=np.int64)
    by_first = np.argsort(first, kind="stable")
    rank[by_first] = np.arange(len(first))
    group = rank[inverse]
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(len(first) + 1))
    return first[by_first], order, starts


def group_bounds(space: SearchSpace, chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, np.ndarray]:
    """Every group of ``space``: arrays ``row`` (index into ``space.rows``), ``group``
    (index within the row, in enumeration order), ``size`` and ``bound`` (seconds)."""
    rows, groups, sizes, reps = [], [], [], []
    for r, mesh in enumerate(space.rows):
        table = space.row_table(*mesh)
        first, _, starts = _row_groups(table)
        rows.append(np.full(len(first), r, dtype=np.int64))
        groups.append(np.arange(len(first), dtype=np.int64))
        sizes.append(np.diff(starts))
        reps.append(table[first])
    if not reps:
        empty = np.zeros(0, dtype=np.int64)
        return {"row": empty, "group": empty, "size": empty, "bound": np.zeros(0)}
    rep_table = np.concatenate(reps)
    bound = np.zeros(len(rep_table))
    for start in range(0, len(rep_table), chunk_size):
        part = rep_table[start : start + chunk_size]
        result = evaluate(
            space.model,
            space.system,
            space.global_batch_size,
            space.batch(SearchSpace.table_columns(part)),
        )
        bound[start : start + len(part)] = step_time_bound(result.breakdown)
    return {
        "row": np.concatenate(rows),
        "group": np.concatenate(groups),
        "size": np.concatenate(sizes),
        "bound": bound,
    }


def pruned_search(
    spaces: SearchSpace | Sequence[SearchSpace],
    *,
    objective: Objective | str = Objective.TIME,
    top: int = 10,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_chunk: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """The top strategies of ``spaces`` by ``objective``, identical to those of
    :func:`~deepflow.search.exhaustive.exhaustive_search`, evaluating only the groups whose
    lower bound does not exclude them (see the module docstring).

    ``result.evaluated`` counts the points evaluated in full; ``result.extra`` holds
    ``considered`` (the points of the spaces), ``groups`` (groups bounded, one evaluation
    each), ``groups_evaluated`` and ``bound_s`` / ``evaluate_s`` (the time of each phase).
    The Pareto front and infeasibility counts are those of the evaluated points.
    ``on_chunk(done, total)`` is called after every evaluated batch (``total`` is the
    number of groups, the most that can be evaluated).
    """
    start = time.perf_counter()
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

    # phase 1: a bound per group, in the objective's units, and the row offsets
    bounds = []
    offsets: list[np.ndarray] = []
    considered = 0
    for s, space in enumerate(space_list):
        g = group_bounds(space, chunk_size)
        g["space"] = np.full(len(g["row"]), s, dtype=np.int64)
        g["value"] = objective_values(objective, g["bound"], space.system)
        bounds.append(g)
        row_sizes = np.bincount(g["row"], weights=g["size"], minlength=len(space.rows))
        offsets.append(np.concatenate(([0], np.cumsum(row_sizes.astype(np.int64)))))
        considered += int(g["size"].sum())
    allg = {k: np.concatenate([g[k] for g in bounds]) for k in bounds[0]}
    order = np.lexsort((allg["group"], allg["row"], allg["space"], allg["value"]))
    bound_s = time.perf_counter() - start

    # phase 2: whole groups in order of increasing bound
    cache: dict[tuple[int, int], _Row] = {}

    def row(s: int, r: int) -> _Row:
        got = cache.get((s, r))
        if got is None:
            table = space_list[s].row_table(*space_list[s].rows[r])
            _, pts, starts = _row_groups(table)
            got = cache[(s, r)] = _Row(table, pts, starts)
        return got

    summaries: list[ChunkSummary] = []
    best: list[tuple[float, float, int, tuple[int, int]]] = []
    threshold = np.inf
    evaluated_groups = 0
    total = len(order)
    pos = 0
    batch_index = 0
    while pos < total:
        s0 = int(allg["space"][order[pos]])
        pending: list[int] = []
        points = 0
        # a batch holds groups of one space, up to chunk_size points
        while pos < total and (not pending or points < chunk_size):
            i = order[pos]
            if allg["value"][i] > threshold * (1.0 + _MARGIN):
                pos = total  # every later group is bounded above the threshold as well
                break
            if int(allg["space"][i]) != s0:
                break
            pending.append(int(i))
            points += int(allg["size"][i])
            pos += 1
        if not pending:
            break
        tables, keys = [], []
        for i in pending:
            r, grp = int(allg["row"][i]), int(allg["group"][i])
            rw = row(s0, r)
            idx = rw.order[rw.starts[grp] : rw.starts[grp + 1]]
            tables.append(rw.table[idx])
            keys.append(offsets[s0][r] + idx)
        columns = SearchSpace.table_columns(np.concatenate(tables))
        chunk = Chunk(s0, batch_index, 0, columns, keys=np.concatenate(keys))
        summary = run_chunk(ChunkTask(space_list[s0], chunk, objective, top))
        summaries.append(summary)
        batch_index += 1
        evaluated_groups += len(pending)
        best = sorted([*best, *(c.rank_key(objective) for c in summary.top)])[:top]
        if len(best) == top:
            threshold = best[-1][0]
        if on_chunk is not None:
            on_chunk(evaluated_groups, total)
        # rows whose groups are all done are not needed again; keep the cache small
        if len(cache) > 64:
            cache.clear()
    evaluate_s = time.perf_counter() - start - bound_s

    infos = [
        SpaceInfo(sp.system.num_accelerators, int(offsets[s][-1]), 0)
        for s, sp in enumerate(space_list)
    ]
    result = combine(summaries, objective, top, infos)
    result.extra.update(
        pruned=True,
        considered=considered,
        groups=total,
        groups_evaluated=evaluated_groups,
        bound_s=bound_s,
        evaluate_s=evaluate_s,
    )
    result = SearchResult(
        **{
            **{f: getattr(result, f) for f in result.__dataclass_fields__},
            "chunks_evaluated": batch_index,
            "wall_s": time.perf_counter() - start,
            "price_per_accelerator_hour": space_list[0].system.price_per_accelerator_hour,
        }
    )
    return result


__all__ = ["BOUND_PARTS", "GROUP_KNOBS", "group_bounds", "pruned_search", "step_time_bound"]
