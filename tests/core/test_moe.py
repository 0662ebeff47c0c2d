"""Mixture-of-experts layers: parallel folding, routing load, all-to-all bytes (issue 14)."""

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepflow.cli import main
from deepflow.errors import ConfigError
from deepflow.estimate import predict
from deepflow.estimate.context import Env
from deepflow.estimate.layer_cost import layer_cost
from deepflow.network.collectives import Algorithm, Collective, collective_time
from deepflow.parallel import StrategyBatch
from deepflow.parallel.experts import alltoall_bytes, expert_data_parallel, expert_groups
from deepflow.parallel.routing import expert_load
from deepflow.specs import scenario_from_dict
from deepflow.workload.transformer import layer_template

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def moe_scenario(strategy, imbalance=1.0, gpus=64, system="dgx-h100", **moe):
    return scenario_from_dict(
        {
            "model": {"preset": "mixtral-8x7b", "moe": {"imbalance": imbalance, **moe}},
            "system": {"preset": system, "num_accelerators": gpus},
            "strategy": {"sequence_parallel": True, "zero": 1, **strategy},
            "training": {"global_batch_size": 256},
        }
    )


def env_of(scenario):
    batch = StrategyBatch.from_specs([scenario.strategy])
    return Env.build(scenario.model, scenario.system, batch, scenario.training.global_batch_size)


folded = st.sampled_from(
    [
        {"tp": 4, "pp": 2, "ep": 8, "expert_tp": 1},
        {"tp": 2, "pp": 4, "ep": 8, "expert_tp": 1},
        {"tp": 4, "pp": 1, "ep": 4, "expert_tp": 2},
        {"tp": 2, "pp": 2, "cp": 2, "ep": 8, "expert_tp": 1},
        {"tp": 8, "pp": 1, "ep": 2},
        {"tp": 1, "pp": 4, "ep": 8},
    ]
)


@SETTINGS
@given(strategy=folded, low=st.floats(1.0, 3.0), step=st.floats(0.0, 2.0))
def test_moe_step_time_never_decreases_as_imbalance_grows(strategy, low, step):
    # H200 (141 GB): the busiest rank's larger buffers still fit
    a = predict(moe_scenario(strategy, low, system="dgx-h200"))
    b = predict(moe_scenario(strategy, low + step, system="dgx-h200"))
    assert a.feasible and b.feasible
    assert b.step_time_s >= a.step_time_s * (1 - 1e-12)
    if step > 0.05:
        assert b.step_time_s > a.step_time_s


@SETTINGS
@given(
    strategy=folded,
    low=st.floats(1.0, 2.0),
    step=st.floats(0.0, 1.0),
    routing=st.sampled_from(["forced", "aux_loss"]),
)
def test_moe_step_time_never_decreases_as_imbalance_grows_with_dropping(
    strategy, low, step, routing
):
    """With a capacity factor and token dropping the busiest rank's experts keep at most
    the capacity, their uneven rows padded to tiles below it (hardware/grouped_tiles.py)."""
    a = predict(
        moe_scenario(strategy, low, system="dgx-h200", capacity_factor=1.25, routing=routing)
    )
    b = predict(
        moe_scenario(strategy, low + step, system="dgx-h200", capacity_factor=1.25, routing=routing)
    )
    assert a.feasible and b.feasible
    assert b.step_time_s >= a.step_time_s * (1 - 1e-12)


def test_all_to_all_bytes_per_rank_hand_worked():
    """Mixtral 8x7B (hidden 4096, top-2) at micro-batch 2, sequence 4096, tp 4 with
    sequence parallelism, bf16: each rank routes 2 * 4096 / 4 = 2048 tokens, two copies of
    4096 two-byte values each: 2048 * 2 * 4096 * 2 = 33,554,432 bytes."""
    assert alltoall_bytes(2048, 2, 4096, 2) == 33_554_432
    scenario = moe_scenario({"tp": 4, "pp": 2, "ep": 8, "expert_tp": 1, "micro_batch_size": 2})
    env = env_of(scenario)
    cost = layer_cost(env, layer_template(scenario.model, True, "megatron-core"))
    a2a = collective_time(
        Collective.ALL_TO_ALL, 33_554_432.0, env.ep_group, env.hierarchy, Algorithm.RING
    )
    # dispatch and combine, forward and backward
    assert cost.ep_comm_forward[0] == pytest.approx(2 * a2a[0], rel=1e-12)
    assert cost.ep_comm_backward[0] == pytest.approx(2 * a2a[0], rel=1e-12)
    # the busiest rank of an imbalanced routing moves the load factor times more
    env2 = env_of(moe_scenario({"tp": 4, "pp": 2, "ep": 8, "expert_tp": 1,
                                "micro_batch_size": 2}, imbalance=1.5))  # fmt: skip
    cost2 = layer_cost(env2, layer_template(env2.model, True, "megatron-core"))
    a2a2 = collective_time(
        Collective.ALL_TO_ALL, 1.5 * 33_554_432.0, env2.ep_group, env2.hierarchy, Algorithm.RING
    )
    assert cost2.ep_comm_forward[0] == pytest.approx(2 * a2a2[0], rel=1e-12)


@SETTINGS
@given(
    tp=st.sampled_from([1, 2, 4, 8]),
    cp=st.sampled_from([1, 2]),
    dp=st.sampled_from([1, 2, 4, 8, 16]),
    data=st.data(),
)
def test_expert_grid_folds_onto_the_dense_ranks(tp, cp, dp, data):
    """EP x ETP x EDP = TP x CP x DP per stage; EP groups that fit a node stay in it."""
    ranks = tp * cp * dp
    etp = data.draw(st.sampled_from([d for d in (1, 2, 4, 8) if ranks % d == 0]))
    ep = data.draw(st.sampled_from([d for d in (1, 2, 4, 8, 16) if ranks % (d * etp) == 0]))
    edp = expert_data_parallel(tp, cp, dp, ep, etp)
    assert ep * etp * edp == ranks
    groups = expert_groups(tp, cp, dp, 2, ep, etp, ranks, 8)
    assert groups.ep.size == ep and groups.etp.size == etp and groups.edp.size == edp
    if ep * etp <= 8:
        assert groups.ep.domains == 1  # inside one 8-GPU node
    assert groups.ep.size == groups.ep.members_per_domain * groups.ep.domains


def test_folding_keeps_ep_inside_the_node_where_tp_would_spread_it():
    """tp 4 ep 8: without folding EP takes ranks 4 apart (4 nodes); with ETP 1 it takes 8
    consecutive ranks (Megatron-Core expert RankGenerator, order tp-ep-dp-pp)."""
    spread = env_of(moe_scenario({"tp": 4, "pp": 2, "ep": 8}))
    folded_env = env_of(moe_scenario({"tp": 4, "pp": 2, "ep": 8, "expert_tp": 1}))
    assert spread.ep_group.domains[0] == 4
    assert folded_env.ep_group.domains[0] == 1
    # expert data parallel: tp*cp*dp / (ep*etp) = 4*1*8 / 8 = 4 and 32/32 = 1
    assert folded_env.dp_groups.expert_grad.size[0] == 4
    assert spread.dp_groups.expert_grad.size[0] == 1
    assert (
        predict(folded_env_scenario()).step_time_s
        < predict(moe_scenario({"tp": 4, "pp": 2, "ep": 8})).step_time_s
    )


def folded_env_scenario():
    return moe_scenario({"tp": 4, "pp": 2, "ep": 8, "expert_tp": 1})


def test_expert_parameters_shard_over_ep_and_expert_tp():
    a = layer_cost(*_env_layer({"tp": 4, "pp": 2, "ep": 8, "expert_tp": 1}))
    b = layer_cost(*_env_layer({"tp": 4, "pp": 2, "ep": 2}))  # expert_tp = tp = 4
    # 8 experts x 3 x 4096 x 14336 over ep*etp = 8 on both
    assert a.expert_params[0] == pytest.approx(8 * 3 * 4096 * 14336 / 8)
    assert b.expert_params[0] == pytest.approx(a.expert_params[0])


def _env_layer(strategy):
    env = env_of(moe_scenario(strategy))
    return env, layer_template(env.model, True, "megatron-core")


def test_capacity_factor_and_padding_set_the_expert_load():
    s = moe_scenario({"tp": 1, "pp": 4, "ep": 8}, imbalance=1.6).model.moe
    assert expert_load(s, 8) == 1.6
    capped = moe_scenario({"tp": 1, "pp": 4, "ep": 8}, imbalance=1.6, capacity_factor=1.25)
    assert expert_load(capped.model.moe, 8) == 1.25
    padded = moe_scenario(
        {"tp": 1, "pp": 4, "ep": 8}, imbalance=1.0, capacity_factor=1.25, pad_to_capacity=True
    )
    assert expert_load(padded.model.moe, 8) == 1.25
    t = [predict(x).step_time_s for x in (capped, padded)]
    assert t[0] == pytest.approx(t[1])


def test_permuted_buffers_are_saved_activations():
    """The unpermutation keeps the expert outputs (top_k copies of each token) for the
    probabilities' gradient, and the permutation its int32 row map."""
    env, layer = _env_layer({"tp": 1, "pp": 4, "ep": 8, "micro_batch_size": 1})
    names = [op.name for op in layer.ops]
    for name in ("router_topk", "permute", "dispatch_sort", "combine_sort", "unpermute"):
        assert name in names
    unpermute = layer.ops[names.index("unpermute")]
    from deepflow.estimate.layer_cost import elementwise_cost

    saved = elementwise_cost(env, unpermute, layer)["saved"][0]
    assert saved == pytest.approx(4096 * 2 * 4096 * 2)  # tokens x top_k x hidden x bf16


@pytest.mark.parametrize(
    ("strategy", "rule"),
    [
        ({"tp": 4, "pp": 2, "ep": 32, "expert_tp": 2, "dp": 8}, "must divide tp*cp*dp"),
        ({"tp": 4, "pp": 2, "ep": 8, "expert_tp": 8, "dp": 8}, "must divide tp*cp*dp"),
    ],
)
def test_an_expert_grid_that_does_not_fold_is_a_config_error(strategy, rule):
    with pytest.raises(ConfigError) as info:
        moe_scenario(strategy)
    assert info.value.path == "strategy.expert_tp"
    assert rule in info.value.message and str(strategy["ep"]) in info.value.message


def test_expert_tp_on_a_dense_model_exits_2(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "model: llama2-7b\nsystem: {preset: dgx-h100, num_accelerators: 8}\n"
        "strategy: {tp: 4, expert_tp: 2, sequence_parallel: true}\n"
        "training: {global_batch_size: 16}\n"
    )
    result = CliRunner().invoke(main, ["predict", str(path)])
    assert result.exit_code == 2
    assert "strategy.expert_tp" in result.output and "mixture-of-experts" in result.output


def test_folded_expert_tp_without_sequence_parallelism_is_infeasible():
    p = predict(moe_scenario({"tp": 4, "pp": 2, "ep": 8, "expert_tp": 1,
                              "sequence_parallel": False}))  # fmt: skip
    assert not p.feasible and "sequence parallelism" in p.reason


def test_strategy_text_names_a_folded_expert_tp():
    s = moe_scenario({"tp": 4, "pp": 2, "ep": 8, "expert_tp": 1}).strategy
    assert "ep8 etp1" in str(s)
    assert "etp" not in str(moe_scenario({"tp": 4, "pp": 2, "ep": 2}).strategy)


def test_batch_round_trip_keeps_expert_tp():
    specs = [
        moe_scenario({"tp": 4, "pp": 2, "ep": 8, "expert_tp": 1}).strategy,
        moe_scenario({"tp": 4, "pp": 2, "ep": 2}).strategy,
    ]
    batch = StrategyBatch.from_specs(specs)
    assert batch.etp.tolist() == [1, 4]
    assert batch.spec(0) == specs[0] and batch.spec(1).expert_tp is None
    arrays = StrategyBatch.from_arrays(tp=np.array([4, 4]), expert_tp=np.array([1, 0]))
    assert arrays.etp.tolist() == [1, 4]


@pytest.mark.parametrize(
    ("name", "billions"),
    [
        ("gpt-oss-120b", 116.8),  # model card, arXiv 2508.10925: 116.8 B total
        ("qwen3-30b-a3b", 30.5),  # Qwen3 report, Table 2: 30.5 B total
        ("qwen3-235b-a22b", 235.0),  # 235 B
    ],
)
def test_moe_presets_reproduce_published_sizes(name, billions):
    from deepflow.specs import model_from
    from deepflow.workload.transformer import parameter_count

    assert parameter_count(model_from(name)).total / 1e9 == pytest.approx(billions, rel=0.005)


def test_deepseek_v3_with_its_multi_token_prediction_module():
    """671 B main model (technical report, sec. 4.2) plus one MTP module; the released
    checkpoint's 685 B count the module's own copies of the embedding and the head too
    (2 x 129,280 x 7,168)."""
    from deepflow.specs import model_from
    from deepflow.workload.transformer import parameter_count

    model = model_from("deepseek-v3")
    assert model.mtp_layers == 1
    counts = parameter_count(model)
    assert (counts.total - counts.mtp) / 1e9 == pytest.approx(671.0, rel=0.005)
    assert (counts.total + 2 * 129_280 * 7_168) / 1e9 == pytest.approx(685.0, rel=0.005)
    # the module runs on the last stage: a deeper model of one more MoE layer and head
    with_mtp = predict(_deepseek(1))
    without = predict(_deepseek(0))
    assert with_mtp.feasible and without.feasible
    assert with_mtp.step_time_s > without.step_time_s
    assert with_mtp.model_flops_per_step > without.model_flops_per_step


def _deepseek(mtp):
    return scenario_from_dict(
        {
            "model": {"preset": "deepseek-v3", "mtp_layers": mtp},
            "system": {"preset": "dgx-h100", "num_accelerators": 1024},
            "strategy": {"tp": 2, "pp": 16, "ep": 32, "expert_tp": 1, "zero": 1,
                         "sequence_parallel": True, "recompute": "full"},
            "training": {"global_batch_size": 1024},
        }
    )  # fmt: skip


def test_deepep_dispatcher_costs_dispatch_and_combine_with_the_deepep_model():
    """strategy.moe_dispatcher: deepep replaces the NCCL all-to-all by DeepEP's kernels:
    Mixtral (8 experts, top-2) at EP 8 inside a DGX H100, 2048 tokens per rank, bf16: each
    rank receives from the 7 other ranks the tokens with one of its expert (hit
    probability 1 - 7/8 * 6/7 = 1/4), at the fitted V1 NVLink fraction of 450 GB/s."""
    from deepflow.network.deepep import deepep_link_efficiency, dispatch_time

    strategy = {"tp": 4, "pp": 2, "ep": 8, "expert_tp": 1, "micro_batch_size": 2}
    scenario = moe_scenario({**strategy, "moe_dispatcher": "deepep"})
    env = env_of(scenario)
    cost = layer_cost(env, layer_template(scenario.model, True, "megatron-core"))
    moved = 7 * 0.25 * 2048 * 4096 * 2
    t = moved / (deepep_link_efficiency("v1-normal-h800", "nvlink") * 450e9)
    assert dispatch_time(2048, 4096, 2, 8, 8, 8, 1, 2.0, 450e9, 50e9)[()] == pytest.approx(t)
    assert cost.ep_comm_forward[0] == pytest.approx(2 * t, rel=1e-9)
    assert cost.ep_comm_backward[0] == pytest.approx(2 * t, rel=1e-9)
    # one token per destination rank instead of one per expert copy: cheaper than NCCL
    nccl = layer_cost(env_of(moe_scenario(strategy)), layer_template(scenario.model, True))
    assert cost.ep_comm_forward[0] < nccl.ep_comm_forward[0]
    # the batch keeps the dispatcher, and predict runs with it
    batch = StrategyBatch.from_specs([scenario.strategy, moe_scenario(strategy).strategy])
    assert batch.deepep.tolist() == [True, False]
    assert batch.spec(0) == scenario.strategy
    assert predict(scenario).feasible
    assert "ep8 etp1 deepep" in str(scenario.strategy)
    assert "deepep" not in str(moe_scenario(strategy).strategy)


@SETTINGS
@given(
    tokens=st.floats(1.0, 1e5),
    ep_log=st.integers(0, 7),
    load=st.floats(1.0, 3.0),
    more=st.floats(0.0, 2.0),
)
def test_deepep_dispatch_time_grows_with_load_and_is_zero_without_peers(tokens, ep_log, load, more):
    from deepflow.network.deepep import dispatch_time

    ep = 2**ep_log
    per = min(ep, 8)
    args = (tokens, 7168, 8, 256, ep, per, ep // per, 2.0, 450e9, 50e9)
    a = dispatch_time(*args, load)
    b = dispatch_time(*args, load + more)
    assert b >= a * (1 - 1e-12)
    if ep == 1:
        assert a == 0.0
    else:
        assert a > 0.0


def test_unknown_moe_dispatcher_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        moe_scenario({"tp": 4, "pp": 2, "ep": 8, "moe_dispatcher": "hybridep"})
    assert "moe_dispatcher" in info.value.path
