"""Routing load imbalance (deepflow.parallel.routing): the measured per-expert MaxVio of
Wang et al. 2024 mapped to the busiest expert-parallel rank (issue 14)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.errors import ConfigError
from deepflow.estimate import predict
from deepflow.estimate.context import Env
from deepflow.estimate.layer_cost import layer_cost
from deepflow.parallel import StrategyBatch
from deepflow.parallel.routing import (
    expected_normal_max,
    expert_load,
    expert_row_spread,
    expert_spread,
    rank_imbalance,
    routing_imbalance,
    uneven_rows,
)
from deepflow.specs import scenario_from_dict
from deepflow.specs.model import Routing
from deepflow.validation.datasets import megatron_moe_modelzoo_cases
from deepflow.workload.transformer import layer_template


def test_expected_normal_max_hand_values():
    # E[max of 2 N(0,1)] = 1/sqrt(pi); of 3: 3/(2 sqrt(pi)); tabulated (Harter 1961):
    # n = 8: 1.4236, n = 64: 2.3437
    assert expected_normal_max(1) == 0.0
    assert expected_normal_max(2) == pytest.approx(1 / math.sqrt(math.pi), abs=1e-9)
    assert expected_normal_max(3) == pytest.approx(1.5 / math.sqrt(math.pi), abs=1e-9)
    assert expected_normal_max(8) == pytest.approx(1.4236, abs=1e-4)
    assert expected_normal_max(64) == pytest.approx(2.3437, abs=1e-4)


def test_rank_imbalance_hand_worked_qwen3_ep8():
    # v = 0.52 over 64 experts -> c = 0.52 / 2.3437 = 0.2219; 128 experts over 8 ranks,
    # 16 each: 1 + 0.2219 * 1.4236 / 4 = 1.0790
    got = rank_imbalance(0.52, 64, 128, 8)
    assert float(got) == pytest.approx(1 + 0.52 / 2.3437 * 1.4236 / 4, abs=1e-4)
    assert float(got) == pytest.approx(1.0790, abs=1e-4)


def test_rank_imbalance_limits():
    # one rank holds every expert: balanced; one expert per rank of a 64-expert layer:
    # the measured 1 + MaxVio
    assert float(rank_imbalance(0.52, 64, 64, 1)) == 1.0
    assert float(rank_imbalance(0.52, 64, 64, 64)) == pytest.approx(1.52, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    v=st.floats(0.0, 2.0),
    dv=st.floats(0.0, 1.0),
    log_e=st.integers(3, 9),
    log_ep=st.integers(0, 9),
)
def test_rank_imbalance_grows_with_maxvio_and_ep(v, dv, log_e, log_ep):
    experts = 2**log_e
    ep = 2 ** min(log_ep, log_e)
    a = float(rank_imbalance(v, 64, experts, ep))
    assert a >= 1.0
    # never above the per-expert imbalance of the layer's own expert count
    assert a <= 1 + v * expected_normal_max(experts) / expected_normal_max(64) + 1e-12
    assert float(rank_imbalance(v + dv, 64, experts, ep)) >= a
    if ep < experts:  # more ranks, fewer experts each: the busiest rank is busier
        assert float(rank_imbalance(v, 64, experts, ep * 2)) >= a - 1e-12


def test_routing_defaults_and_stated_imbalance():
    ep = np.array([1, 8, 32])
    assert routing_imbalance(Routing.FORCED, 128, ep) == 1.0
    aux = routing_imbalance(Routing.AUX_LOSS, 128, ep)
    free = routing_imbalance(Routing.AUX_FREE, 128, ep)
    assert aux[0] == 1.0 and free[0] == 1.0
    assert np.all(np.diff(aux) > 0) and np.all(aux[1:] > free[1:]) and np.all(free[1:] > 1)
    model = {"preset": "qwen3-235b-a22b"}
    stated = scenario_from_dict(_scenario(model, {"routing": "aux_loss", "imbalance": 1.3}))
    assert expert_load(stated.model.moe, 8) == 1.3  # a stated imbalance wins


def _scenario(model, moe):
    return {
        "model": {**model, "moe": moe},
        "system": {"preset": "dgx-h100", "num_accelerators": 64},
        "strategy": {"tp": 1, "pp": 8, "ep": 8, "sequence_parallel": True, "zero": 1},
        "training": {"global_batch_size": 64},
    }


def test_learned_routing_is_slower_than_forced_balance():
    model = {"preset": "mixtral-8x7b"}
    t = [
        predict(scenario_from_dict(_scenario(model, {"routing": r}))).step_time_s
        for r in ("forced", "aux_free", "aux_loss")
    ]
    assert t[0] < t[1] < t[2]


def test_unknown_routing_is_a_config_error():
    with pytest.raises(ConfigError, match="routing"):
        scenario_from_dict(_scenario({"preset": "mixtral-8x7b"}, {"routing": "magic"}))


def test_modelzoo_rows_take_routing_from_the_router_column():
    for case in megatron_moe_modelzoo_cases():
        routing = case.scenario["model"]["moe"]["routing"]
        if "forced balance" in case.description:
            assert routing == "forced"
        else:
            assert routing == "aux_loss" and "dropless" in case.description


def test_expert_row_spread_hand_worked_qwen3():
    # 128 experts, top-8: a micro-batch's count is binomial, variance rows (1 - 8/128);
    # 512 rows: sqrt(480) = 21.909 under forced balance
    model = {"preset": "qwen3-235b-a22b"}
    forced = scenario_from_dict(_scenario(model, {"routing": "forced"})).model.moe
    assert expert_spread(Routing.FORCED) == 0.0
    assert float(expert_row_spread(forced, 512.0)) == pytest.approx(math.sqrt(480.0), abs=1e-9)
    # aux_loss: the popularity spread c = 0.52 / z(64) = 0.2219 of the mean on top:
    # sqrt((0.2219 * 512)^2 + 480) = 115.7
    aux = scenario_from_dict(_scenario(model, {"routing": "aux_loss"})).model.moe
    c = 0.52 / expected_normal_max(64)
    assert expert_spread(Routing.AUX_LOSS) == pytest.approx(c, abs=1e-12)
    assert float(expert_row_spread(aux, 512.0)) == pytest.approx(
        math.sqrt((c * 512) ** 2 + 480.0), abs=1e-9
    )
    assert float(expert_row_spread(aux, 512.0)) == pytest.approx(115.7, abs=0.1)
    # padded to capacity, every expert carries the capacity: no spread
    padded = scenario_from_dict(
        _scenario(model, {"routing": "aux_loss", "capacity_factor": 1.0, "pad_to_capacity": True})
    ).model.moe
    assert float(expert_row_spread(padded, 512.0)) == 0.0


def test_uneven_rows_of_capacity_and_padding():
    model = {"preset": "qwen3-235b-a22b"}

    def moe(**kw):
        return scenario_from_dict(_scenario(model, {"routing": "forced", **kw})).model.moe

    free = uneven_rows(moe(imbalance=1.5), 8, 512.0)
    assert (free.mean, free.cap) == (768.0, None)
    assert float(free.spread) == pytest.approx(math.sqrt(480.0))
    # dropping: the uncapped mean, cut at the capacity
    dropped = uneven_rows(moe(imbalance=1.5, capacity_factor=1.25), 8, 512.0)
    assert (dropped.mean, dropped.cap) == (768.0, 640.0)
    # padded: every expert holds the capacity, no spread
    padded = uneven_rows(moe(imbalance=1.5, capacity_factor=1.25, pad_to_capacity=True), 8, 512.0)
    assert (padded.mean, padded.cap, float(padded.spread)) == (640.0, None, 0.0)


def _qwen3_layer_time(seq: int, imbalance: float | None, routing: str) -> float:
    moe = (
        {"routing": routing} if imbalance is None else {"routing": routing, "imbalance": imbalance}
    )
    scenario = scenario_from_dict(
        {
            "model": {"preset": "qwen3-235b-a22b", "seq_len": seq, "moe": moe},
            "system": {"preset": "dgx-h100", "num_accelerators": 256},
            "strategy": {"tp": 4, "pp": 8, "ep": 8, "sequence_parallel": True, "zero": 1},
            "training": {"global_batch_size": 64},
        }
    )
    batch = StrategyBatch.from_specs([scenario.strategy])
    env = Env.build(scenario.model, scenario.system, batch, 64)
    cost = layer_cost(env, layer_template(scenario.model, True, "megatron-core"))
    return float(cost.forward_compute[0] + cost.backward_compute[0])


@settings(max_examples=25, deadline=None)
@given(
    seq=st.integers(8, 128).map(lambda s: 64 * s),
    dseq=st.integers(0, 32).map(lambda s: 64 * s),
    load=st.floats(1.0, 1.5),
    dload=st.floats(0.0, 0.5),
    routing=st.sampled_from(["forced", "aux_loss", "aux_free"]),
)
def test_moe_layer_time_monotone_in_imbalance_and_tokens(seq, dseq, load, dload, routing):
    """Qwen3-235B's MoE layer at EP 8 (16 local experts, uneven rows padded to tiles):
    never faster with a busier rank or a longer sequence."""
    base = _qwen3_layer_time(seq, load, routing)
    assert _qwen3_layer_time(seq, load + dload, routing) >= base * (1 - 1e-12)
    assert _qwen3_layer_time(seq + dseq, load, routing) >= base * (1 - 1e-12)
