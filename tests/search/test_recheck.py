"""The top strategies of a search, re-checked by the event-driven simulator."""

from deepflow.search import exhaustive_search
from deepflow.search.recheck import candidate_scenario, recheck
from deepflow.search.space import SearchSpace
from deepflow.specs import scenario_from_dict

BASE = scenario_from_dict(
    {
        "model": "megatron-gpt-3.6b",
        "system": {"preset": "dgx-a100-80gb", "num_accelerators": 64},
        "strategy": {"tp": 2},
        "training": {"global_batch_size": 256},
    }
)


def test_recheck_simulates_each_top_strategy_close_to_the_closed_form():
    space = SearchSpace.from_scenario(BASE, ["tp=2,4,8"], num_accelerators=64)
    result = exhaustive_search([space], objective="time", top=3)
    checked = recheck(BASE, list(result.top))
    assert len(checked) == 3
    for r in checked:
        assert r.simulated_step_time_s > 0
        # the simulator and the closed form share cost models (docs/simulator.md)
        assert abs(r.difference) < 0.15


def test_candidate_scenario_carries_the_strategy():
    space = SearchSpace.from_scenario(BASE, ["tp=8"], num_accelerators=64)
    best = exhaustive_search([space], objective="time", top=1).top[0]
    sc = candidate_scenario(BASE, best)
    assert sc.strategy.tp == 8 and sc.system.num_accelerators == 64
