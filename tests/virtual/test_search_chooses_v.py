"""The search chooses the number of virtual nodes that fits the model in memory.

With a fixed global batch B, a micro-batch of b sequences is a virtual node: V = B / b
(VirtualFlow, Or et al. 2022). One virtual node per replica (V = dp) does not fit here; the
search finds a V that does, and the chosen strategy runs through ``predict`` unchanged.
"""

from deepflow.estimate import predict
from deepflow.search import exhaustive_search
from deepflow.search.space import SearchSpace
from deepflow.specs import scenario_from_dict

B = 512
DATA = {
    "model": "megatron-gpt-3.6b",
    "system": {"preset": "dgx-a100-40gb", "num_accelerators": 8},
    "strategy": {"tp": 1, "pp": 1, "recompute": "none", "flash_attention": True},
    "training": {"global_batch_size": B},
}


def test_one_virtual_node_per_replica_does_not_fit():
    one_per_replica = {**DATA, "strategy": {**DATA["strategy"], "virtual_nodes": 8}}
    p = predict(scenario_from_dict(one_per_replica))
    assert not p.feasible and "out of memory" in p.reason


def test_search_picks_more_virtual_nodes_to_fit():
    base = scenario_from_dict(DATA)
    space = SearchSpace.from_scenario(base, ["tp=1", "pp=1", "recompute=none", "zero=1"])
    best = exhaustive_search([space], objective="time", top=1).top[0]
    virtual_nodes = B // best.strategy["micro_batch_size"]
    assert virtual_nodes > 8
    chosen = {**DATA, "strategy": {**DATA["strategy"], "zero": 1, "virtual_nodes": virtual_nodes}}
    p = predict(scenario_from_dict(chosen))
    assert p.feasible
    assert p.step_time_s == best.step_time_s
