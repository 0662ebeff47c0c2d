"""Exhaustive search: ranking, counts, Pareto fronts and objectives against a direct
evaluation of the whole space; results files and resuming."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from tests.search.helpers import TINY_MODEL, tight, tiny

import deepflow.search.exhaustive as exhaustive_module
from deepflow.errors import ConfigError
from deepflow.estimate import evaluate, predict
from deepflow.estimate.evaluate import OOM_RULE
from deepflow.search import REASONS, Objective, SearchSpace, exhaustive_search
from deepflow.specs import scenario_from_dict


def _direct(space: SearchSpace):
    return evaluate(space.model, space.system, space.global_batch_size, space.batch(space.columns))


def _identity(result):
    return (
        [(c.key, c.step_time_s, c.peak_memory_bytes) for c in result.top],
        [(c.key, c.step_time_s, c.peak_memory_bytes) for c in result.pareto],
        result.infeasible,
        result.evaluated,
    )


def test_top_k_is_the_k_fastest_of_a_direct_evaluation():
    space = SearchSpace.from_scenario(tight())
    result = exhaustive_search(space, top=7, chunk_size=1000)
    direct = _direct(space)
    order = np.lexsort((np.arange(len(space)), direct.step_time))
    assert [c.key[1] for c in result.top] == order[:7].tolist()
    assert [c.step_time_s for c in result.top] == direct.step_time[order[:7]].tolist()
    assert all(a.step_time_s <= b.step_time_s for a, b in itertools.pairwise(result.top))


def test_infeasible_points_are_counted_by_rule_name():
    space = SearchSpace.from_scenario(tight())
    result = exhaustive_search(space, chunk_size=1000)
    direct = _direct(space)
    assert result.evaluated == len(space)
    assert result.feasible == int(direct.feasible.sum())
    assert result.infeasible["out-of-memory"] == int((direct.violation == OOM_RULE).sum())
    assert set(result.infeasible) <= set(REASONS)
    assert result.feasible + sum(result.infeasible.values()) == result.evaluated


def test_results_do_not_depend_on_the_chunk_size():
    space = SearchSpace.from_scenario(tight())
    a = exhaustive_search(space, chunk_size=997)
    b = exhaustive_search(space, chunk_size=len(space))
    assert _identity(a) == _identity(b)


def test_pareto_front_is_exactly_the_non_dominated_set():
    space = SearchSpace.from_scenario(tight())
    result = exhaustive_search(space, chunk_size=1000)
    direct = _direct(space)
    ok = np.flatnonzero(direct.feasible)
    t, m = direct.step_time[ok], direct.peak_memory[ok]
    front = result.pareto
    assert front, "a feasible space has a front"
    for c in front:  # nothing feasible dominates a front member
        dominated = (t <= c.step_time_s) & (m <= c.peak_memory_bytes)
        dominated &= (t < c.step_time_s) | (m < c.peak_memory_bytes)
        assert not dominated.any()
    ft = np.array([c.step_time_s for c in front])
    fm = np.array([c.peak_memory_bytes for c in front])
    for ti, mi in zip(t, m, strict=True):  # every feasible point is covered by the front
        assert np.any((ft <= ti) & (fm <= mi))


def test_sweep_over_accelerator_counts_has_a_three_way_front():
    spaces = [SearchSpace.from_scenario(tiny(), num_accelerators=n) for n in (8, 16, 32)]
    result = exhaustive_search(spaces, chunk_size=4000)
    assert [s.num_accelerators for s in result.spaces] == [8, 16, 32]
    counts = {c.num_accelerators for c in result.pareto}
    assert 8 in counts and len(counts) > 1  # the fewest accelerators is never dominated
    for a in result.pareto:
        for b in result.pareto:
            if a is not b:
                assert not (
                    a.step_time_s <= b.step_time_s
                    and a.peak_memory_bytes <= b.peak_memory_bytes
                    and a.num_accelerators <= b.num_accelerators
                )


def test_cost_and_energy_objectives():
    spaces = [SearchSpace.from_scenario(tiny(price=2.0), num_accelerators=n) for n in (8, 32)]
    by_cost = exhaustive_search(spaces, objective="cost", top=3, chunk_size=4000)
    by_time = exhaustive_search(spaces, objective="time", top=3, chunk_size=4000)
    best = by_cost.top[0]
    assert best.cost_per_step == pytest.approx(
        best.num_accelerators * best.step_time_s * 2.0 / 3600
    )
    assert best.energy_per_step_j == pytest.approx(400.0 * best.num_accelerators * best.step_time_s)
    costs = [c.cost_per_step for c in by_cost.top]
    assert costs == sorted(costs)
    assert by_cost.top[0].num_accelerators == 8  # fewer GPUs, better utilized: cheaper
    assert by_time.top[0].num_accelerators == 32  # more GPUs: faster
    energy = exhaustive_search(spaces, objective=Objective.ENERGY, top=1, chunk_size=4000)
    assert energy.top[0].key == by_cost.top[0].key  # both are proportional to N t


def test_cost_without_a_price_is_refused_and_reported_as_no_price():
    space = SearchSpace.from_scenario(tiny())
    with pytest.raises(ConfigError, match="no price"):
        exhaustive_search(space, objective="cost")
    result = exhaustive_search(space, top=1)
    assert not result.has_price and result.top[0].cost_per_step is None
    assert result.to_json()["price_per_accelerator_hour"] is None


def test_top_strategies_feed_back_into_predict():
    scenario = tiny()
    result = exhaustive_search(SearchSpace.from_scenario(scenario), top=3)
    for c in result.top:
        again = scenario_from_dict(
            {
                "model": TINY_MODEL,
                "system": {"preset": "dgx-a100-80gb", "num_accelerators": c.num_accelerators},
                "strategy": json.loads(json.dumps(c.strategy)),
                "training": {"global_batch_size": 32},
            }
        )
        assert predict(again).step_time_s == c.step_time_s


class _Stop(Exception):
    pass


def _stop_after(k: int):
    def on_chunk(done: int, total: int) -> None:
        if done >= k and done < total:
            raise _Stop

    return on_chunk


def test_interrupted_search_resumes_without_redoing_finished_chunks(tmp_path, monkeypatch):
    space = SearchSpace.from_scenario(tight())
    out = tmp_path / "results.jsonl"
    fresh = exhaustive_search(space, top=5, chunk_size=1000)
    total = space.num_chunks(1000)
    with pytest.raises(_Stop):
        exhaustive_search(space, top=5, chunk_size=1000, out=out, on_chunk=_stop_after(6))
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + 6  # the header and six chunks

    calls = []
    real = exhaustive_module.evaluate
    monkeypatch.setattr(exhaustive_module, "evaluate", lambda *a: calls.append(1) or real(*a))
    resumed = exhaustive_search(space, top=5, chunk_size=1000, out=out)
    assert resumed.chunks_resumed == 6 and resumed.chunks_evaluated == total - 6
    assert len(calls) == total - 6
    assert _identity(resumed) == _identity(fresh)
    again = exhaustive_search(space, top=5, chunk_size=1000, out=out)
    assert again.chunks_evaluated == 0 and _identity(again) == _identity(fresh)


def test_a_line_cut_short_by_a_kill_is_dropped(tmp_path):
    space = SearchSpace.from_scenario(tight())
    out = tmp_path / "results.jsonl"
    with pytest.raises(_Stop):
        exhaustive_search(space, chunk_size=1000, out=out, on_chunk=_stop_after(3))
    with out.open("a") as f:
        f.write('{"kind": "chunk", "space": 0, "chu')
    result = exhaustive_search(space, chunk_size=1000, out=out)
    assert result.chunks_resumed == 3
    assert _identity(result) == _identity(exhaustive_search(space, chunk_size=1000))
    assert all(json.loads(line) for line in out.read_text().splitlines())


def test_a_results_file_of_another_search_is_refused(tmp_path):
    out = tmp_path / "results.jsonl"
    exhaustive_search(SearchSpace.from_scenario(tiny()), out=out)
    with pytest.raises(ConfigError, match="belongs to another search"):
        exhaustive_search(SearchSpace.from_scenario(tiny(), ["tp=1"]), out=out)
