"""The pruned search: the same top strategies and Pareto front as the exhaustive search,
and valid step-time and peak-memory bounds."""

from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.search.helpers import search_scenario, tight, tiny

from deepflow.errors import ConfigError
from deepflow.estimate.evaluate import BREAKDOWN_KEYS, evaluate
from deepflow.search import SearchSpace, exhaustive_search, pruned_search
from deepflow.search.prune import _Members, space_groups, step_time_bound
from deepflow.search.space import COLUMNS
from deepflow.specs import Scenario, load_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# a small fine-grained MoE model (16 experts, top 2, a shared expert, a dense first layer)
SMALL_MOE: dict[str, Any] = {
    "name": "small-moe",
    "num_layers": 8,
    "hidden_size": 2048,
    "num_attention_heads": 16,
    "num_kv_heads": 4,
    "ffn_hidden_size": 4096,
    "ffn_type": "swiglu",
    "vocab_size": 32000,
    "seq_len": 2048,
    "moe": {
        "num_experts": 16,
        "top_k": 2,
        "expert_ffn_hidden_size": 1024,
        "num_shared_experts": 1,
        "first_dense_layers": 1,
    },
}


def small_moe(gpus: int = 16, gbs: int = 64, price: float = 0.0, **strategy: Any) -> Scenario:
    return search_scenario(SMALL_MOE, "dgx-h100", "small-moe", gpus, gbs, price, **strategy)


def deepseek_v3() -> Scenario:
    return load_scenario(EXAMPLES / "deepseek-v3-2048-h800.yaml")


def _rows(candidates: Any) -> list[tuple[Any, ...]]:
    return [
        (c.num_accelerators, c.key, c.strategy, c.step_time_s, c.peak_memory_bytes, c.mfu)
        for c in candidates
    ]


def _top(result: Any) -> list[tuple[Any, ...]]:
    return _rows(result.top)


def _same(pruned: Any, full: Any) -> None:
    """The pruned result's top list and Pareto front are the exhaustive search's."""
    assert _top(pruned) == _top(full)
    assert _rows(pruned.pareto) == _rows(full.pareto)
    assert pruned.extra["considered"] == sum(s.points for s in full.spaces)


@pytest.mark.parametrize("top", [1, 5, 40])
def test_pruned_top_k_is_the_exhaustive_top_k_on_a_small_moe_model(top):
    space = SearchSpace.from_scenario(small_moe())
    full = exhaustive_search(space, top=top)
    pruned = pruned_search(space, top=top)
    _same(pruned, full)
    # it prunes: fewer points evaluated than the space holds, every one accounted for
    assert pruned.extra["considered"] == len(space) == full.evaluated
    assert pruned.evaluated < len(space)
    assert pruned.extra["groups_evaluated"] < pruned.extra["groups"]
    # groups are skipped for the front too: outside the top list and dominated
    assert pruned.extra["groups_dominated"] > 0


def test_groups_out_of_memory_by_their_bound_are_never_evaluated():
    space = SearchSpace.from_scenario(tight())
    full = exhaustive_search(space, top=5)
    pruned = pruned_search(space, top=5)
    _same(pruned, full)
    assert pruned.extra["groups_out_of_memory"] > 0
    # the counts cover the evaluated points only, and add up
    assert pruned.feasible + sum(pruned.infeasible.values()) == pruned.evaluated
    assert pruned.infeasible["out-of-memory"] < full.infeasible["out-of-memory"]


def test_pruned_top_k_across_accelerator_counts_by_cost():
    spaces = [SearchSpace.from_scenario(small_moe(price=2.0), num_accelerators=n) for n in (8, 16)]
    full = exhaustive_search(spaces, objective="cost", top=6)
    pruned = pruned_search(spaces, objective="cost", top=6)
    _same(pruned, full)
    # the front has the third axis: points of both accelerator counts
    assert {c.num_accelerators for c in full.pareto} == {8, 16}
    assert {c.num_accelerators for c in full.top} <= {8, 16}


def test_pruned_top_k_with_ties_and_restrictions_on_a_dense_model():
    # tp 1 makes many strategies tie (schedules of one stage, sequence parallelism)
    space = SearchSpace.from_scenario(tiny(gpus=8, gbs=32), ["tp=1,2", "recompute=none,full"])
    full = exhaustive_search(space, top=12)
    pruned = pruned_search(space, top=12)
    _same(pruned, full)


def test_a_space_with_fewer_feasible_points_than_top_returns_them_all():
    space = SearchSpace.from_scenario(small_moe(gpus=8), ["tp=8", "pp=1", "zero=3"])
    full = exhaustive_search(space, top=10_000)
    pruned = pruned_search(space, top=10_000)
    _same(pruned, full)
    assert pruned.evaluated == len(space)  # nothing can be pruned before top are known


@pytest.mark.parametrize(
    ("scenario", "fixes", "policies"),
    [
        (small_moe(), [], False),
        (tiny(gpus=16, gbs=32), [], False),
        (small_moe(precision="fp8"), ["tp=1,2", "zero=1,3"], True),
        (tiny(gpus=8, gbs=32), ["pipeline_schedule=gpipe,zero-bubble", "tp=2"], True),
    ],
)
def test_groups_partition_the_space_in_enumeration_order(scenario, fixes, policies):
    space = SearchSpace.from_scenario(scenario, fixes, recompute_policies=policies)
    groups = space_groups(space)
    members = _Members(space, groups)
    parts = [members.of(i) for i in range(len(groups))]
    table = np.concatenate([t for t, _ in parts])
    keys = np.concatenate([k for _, k in parts])
    order = np.argsort(keys)
    assert np.array_equal(keys[order], np.arange(len(space)))
    enumerated = np.stack([space.columns[c].astype(np.int64) for c in COLUMNS], axis=1)
    assert np.array_equal(table[order], enumerated)
    assert int(groups.size.sum()) == len(space) == int(groups.row_offsets[-1])
    # the representative is the group's first member
    assert np.array_equal(groups.rep, np.stack([t[0] for t, _ in parts]))


@cache
def _spaces() -> list[tuple[SearchSpace, Any]]:
    out = []
    for scenario, policies in (
        (small_moe(), False),
        (small_moe(gpus=32, gbs=128, precision="fp8"), True),
        (tiny(), True),
        (deepseek_v3(), False),
    ):
        space = SearchSpace.from_scenario(scenario, recompute_policies=policies)
        out.append((space, space_groups(space)))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, 3), group=st.integers(0, 10**9), member=st.integers(0, 10**9))
def test_the_bound_never_exceeds_the_evaluated_step_time(which, group, member):
    space, groups = _spaces()[which]
    g = group % len(groups)
    table, _ = _Members(space, groups).of(g)
    rows = np.stack([groups.rep[g], table[member % len(table)]])
    result = evaluate(
        space.model,
        space.system,
        space.global_batch_size,
        space.batch(SearchSpace.table_columns(rows)),
    )
    bound = step_time_bound(result.breakdown)[0]
    # the breakdown sums to the step before infeasible points are masked to inf
    step = sum(result.breakdown[k] for k in BREAKDOWN_KEYS)[1]
    assert bound > 0
    assert bound <= step * (1.0 + 1e-12)
    if result.feasible[1]:
        assert bound <= result.step_time[1] * (1.0 + 1e-12)


def _floor_and_peaks(space: SearchSpace, groups: Any, chosen: np.ndarray) -> tuple[Any, ...]:
    """The memory bound of each chosen group (from its representative) and the peak
    memory of every member of it, with the member's group index."""
    reps = evaluate(
        space.model,
        space.system,
        space.global_batch_size,
        space.batch(SearchSpace.table_columns(groups.rep[chosen])),
        memory_floor_zeros=groups.zeros,
    )
    members = _Members(space, groups)
    parts = [members.of(int(g))[0] for g in chosen]
    table = np.concatenate(parts)
    which = np.concatenate([np.full(len(t), j) for j, t in enumerate(parts)])
    result = evaluate(
        space.model,
        space.system,
        space.global_batch_size,
        space.batch(SearchSpace.table_columns(table)),
    )
    return reps.memory_floor, result.peak_memory, which


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, 3), group=st.integers(0, 10**9), member=st.integers(0, 10**9))
def test_the_memory_bound_never_exceeds_the_peak_memory(which, group, member):
    space, groups = _spaces()[which]
    g = group % len(groups)
    floor, peak, _ = _floor_and_peaks(space, groups, np.array([g]))
    table, _ = _Members(space, groups).of(g)
    m = member % len(table)
    assert 0 < floor[0] <= peak[m] * (1.0 + 1e-12)
    # the representative's own evaluation gives the same bound as any member's
    rows = np.stack([groups.rep[g], table[m]])
    again = evaluate(
        space.model,
        space.system,
        space.global_batch_size,
        space.batch(SearchSpace.table_columns(rows)),
        memory_floor_zeros=groups.zeros,
    ).memory_floor
    assert again is not None
    assert again[1] == pytest.approx(again[0], rel=1e-12)


@pytest.mark.parametrize(
    ("scenario", "policies"),
    [(small_moe(), False), (tiny(), True), (tight(), False)],
)
def test_the_memory_bound_holds_on_every_group_and_is_nearly_attained(scenario, policies):
    space = SearchSpace.from_scenario(scenario, recompute_policies=policies)
    groups = space_groups(space)
    floor, peak, which = _floor_and_peaks(space, groups, np.arange(len(groups)))
    least = np.full(len(groups), np.inf)
    np.minimum.at(least, which, peak)
    ratio = least / floor
    assert ratio.min() >= 1.0 - 1e-12
    # some group's least peak is within 1 % of its bound: a bound made 1 % tighter than
    # this one (or tighter anywhere it is attained) fails the check above
    assert ratio.min() < 1.01


def test_a_bound_made_too_tight_is_caught():
    # the bound without recomputation's savings (every layer keeps all it saves) is too
    # tight for the groups whose least peak needs recomputation: the check must fail
    space = SearchSpace.from_scenario(small_moe())
    groups = space_groups(space)
    chosen = np.arange(len(groups))
    floor, peak, which = _floor_and_peaks(space, groups, chosen)
    least = np.full(len(groups), np.inf)
    np.minimum.at(least, which, peak)
    reps = evaluate(
        space.model,
        space.system,
        space.global_batch_size,
        space.batch(SearchSpace.table_columns(groups.rep)),
    )
    # the representative (ZeRO 0, no recomputation) bounds nothing: its peak is above
    # the least peak of many groups
    assert (reps.peak_memory > least * (1.0 + 1e-9)).sum() > len(groups) // 2
    assert (floor * 1.01 > least * (1.0 + 1e-9)).any()


def _restricted(data: Any) -> tuple[list[SearchSpace], str, int]:
    scenario = data.draw(st.sampled_from(["small_moe", "tiny", "tight", "fp8", "sweep"]))
    fixes = []
    for knob, values in (
        ("tp", ["1", "2", "4", "8"]),
        ("pp", ["1", "2", "4"]),
        ("zero", ["0", "1", "2", "3"]),
        ("recompute", ["none", "selective", "full"]),
        ("pipeline_schedule", ["gpipe", "1f1b", "interleaved", "zero-bubble"]),
    ):
        chosen = data.draw(st.lists(st.sampled_from(values), unique=True, max_size=3))
        if chosen:
            fixes.append(f"{knob}={','.join(chosen)}")
    objective = "time"
    if scenario == "sweep":
        objective = data.draw(st.sampled_from(["time", "cost"]))
        scenarios = [small_moe(gpus=n, price=2.0) for n in (8, 16)]
    else:
        scenarios = [
            {
                "small_moe": small_moe(),
                "tiny": tiny(),
                "tight": tight(),
                "fp8": small_moe(gpus=8, precision="fp8"),
            }[scenario]
        ]
    spaces = []
    for sc in scenarios:
        with contextlib.suppress(ConfigError):  # a restriction that empties the space
            spaces.append(SearchSpace.from_scenario(sc, fixes))
    return spaces, objective, data.draw(st.integers(1, 30))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_pruned_search_equals_exhaustive_search_on_restricted_spaces(data):
    spaces, objective, top = _restricted(data)
    if not spaces:
        return
    full = exhaustive_search(spaces, objective=objective, top=top)
    pruned = pruned_search(spaces, objective=objective, top=top)
    _same(pruned, full)
    assert pruned.evaluated <= full.evaluated
    x = pruned.extra
    assert x["groups_evaluated"] + x["groups_out_of_memory"] + x["groups_dominated"] == x["groups"]
