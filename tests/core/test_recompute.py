"""Recompute policies: Megatron-Core's recompute modules and the block method.

Per module, the bytes it drops and the forward FLOPs it reruns are worked out by hand
from the layer's operators. For GPT with an unfused attention core and sequence
parallelism this is Korthikanti et al. 2022 (arXiv 2205.05198), Table 2 and sec. 5, per
layer in 16-bit bytes: ``sbh/t (34 + 5 a s / h)`` saved, made of the norms' inputs
``4 sbh``, QKV input ``2``, Q and K ``4``, V ``2``, the output projection's input ``2``,
two dropout masks ``2``, MLP input ``2``, GeLU input ``8``, fc2 input ``8``, and the
``5 a s^2 b`` score, softmax and mask bytes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.helpers import batch_of, scenario

from deepflow.errors import ConfigError
from deepflow.estimate import predict
from deepflow.estimate.context import Env
from deepflow.estimate.layer_cost import layer_cost
from deepflow.specs import scenario_from_dict
from deepflow.workload import layer_template
from deepflow.workload.recompute import MODULES, checkpoint_plan, module_mask

S, B, H, A, T = 2048, 1, 12288, 96, 8
SBH = S * B * H


def gpt_cost(**strategy):
    sc = scenario(
        tp=T,
        dp=1,
        sequence_parallel=True,
        flash_attention=False,
        precision="fp16",
        micro_batch_size=B,
        **strategy,
    )
    env = Env.build(sc.model, sc.system, batch_of(sc), sc.training.global_batch_size)
    return layer_cost(env, layer_template(sc.model, moe=False))


@pytest.mark.parametrize(
    ("modules", "saved_sbh", "flops"),
    [
        # Table 2, "selective recomputation + sequence parallel": 34 sbh/t; reruns
        # QK^T and the weighted sum of V: 4 b s^2 h / t FLOPs
        (["core_attn"], 34, 4 * S * S * B * H / T),
        # the two norms' outputs are the QKV and fc1 inputs (2 sbh each); norms do no
        # matrix math
        (["layernorm"], 34 + 5 * A * S / H - 4, 0.0),
        # keeps fc1's input; drops GeLU's input and fc2's input (8 sbh each); reruns
        # fc1 and fc2: 2 x 2 sbh 4h / t
        (["mlp"], 34 + 5 * A * S / H - 16, 16 * S * B * H * H / T),
        (["core_attn", "mlp", "layernorm"], 34 - 16 - 4, 4 * S * S * B * H / T + 16 * SBH * H / T),
        ([], 34 + 5 * A * S / H, 0.0),
    ],
)
def test_gpt_modules_against_table_2(modules, saved_sbh, flops):
    cost = gpt_cost(recompute="selective", recompute_modules=modules)
    assert cost.saved_activations[0] == pytest.approx(saved_sbh * SBH / T, rel=1e-12)
    assert cost.recompute_flops[0] == pytest.approx(flops, rel=1e-12)


def test_selective_defaults_to_core_attn():
    assert gpt_cost(recompute="selective").saved_activations[0] == pytest.approx(34 * SBH / T)


def test_mlp_checkpoint_reruns_one_tensor_parallel_pair():
    none, mlp = (
        gpt_cost(recompute="none"),
        gpt_cost(recompute="selective", recompute_modules=["mlp"]),
    )
    # one of the layer's two reduce-scatter + all-gather pairs (Megatron-LM's linear_fc2)
    assert mlp.recompute_tp[0] == pytest.approx(none.tp_comm_forward[0] / 2, rel=1e-12)
    assert gpt_cost(recompute="selective").recompute_tp[0] == 0.0


# a small Llama-style MoE model: every number below can be checked by hand
MOE_MODEL = {
    "num_layers": 4,
    "hidden_size": 256,
    "num_attention_heads": 8,
    "num_kv_heads": 2,
    "ffn_hidden_size": 512,
    "ffn_type": "swiglu",
    "vocab_size": 1024,
    "seq_len": 128,
    "moe": {
        "num_experts": 4,
        "top_k": 2,
        "expert_ffn_hidden_size": 384,
        "num_shared_experts": 1,
    },
}
h, f, E, K, tokens = 256, 384, 4, 2, 128


def moe_cost(**strategy):
    sc = scenario(model=MOE_MODEL, gpus=1, gbs=1, tp=1, dp=1, **strategy)
    env = Env.build(sc.model, sc.system, batch_of(sc), 1)
    return layer_cost(env, layer_template(sc.model, moe=True))


@pytest.mark.parametrize(
    ("modules", "dropped", "flops"),
    [
        # the routed experts' activation output = their down-projection's input:
        # K tokens x f values x 2 bytes per token; SwiGLU does no matrix math
        (["moe_act"], K * tokens * f * 2, 0.0),
        # keeps the router's input; drops the routed experts' inputs (K h), activation
        # inputs (K 2f), down inputs (K f), the shared expert's activation input (2f)
        # and down input (f), and the routing's saved tensors: fp32 router scores (E),
        # the permutation's int32 row map (K) and the unpermutation's expert outputs
        # (K h); reruns router, experts and shared expert
        (
            ["moe"],
            tokens * 2 * (K * h + K * 2 * f + K * f + 2 * f + f + K * h) + tokens * 4 * (E + K),
            2 * tokens * (h * E + K * 3 * h * f + 3 * h * f),
        ),
        (["shared_experts"], tokens * 2 * (2 * f + f), 2 * tokens * 3 * h * f),
        # the two norms' outputs: the QKV input, and the router's input, which the shared
        # expert saves too (one tensor)
        (["layernorm"], tokens * 2 * (h + h), 0.0),
        # flash attention: drops the fp32 log-sum-exp of the 8 heads
        (["core_attn"], tokens * 8 * 4, 2 * tokens * 8 * 2 * 32 * tokens / 2),
        # a module inside another is rerun once, its bytes dropped once
        (
            ["moe", "moe_act", "shared_experts"],
            tokens * 2 * (K * h + K * 2 * f + K * f + 2 * f + f + K * h) + tokens * 4 * (E + K),
            2 * tokens * (h * E + K * 3 * h * f + 3 * h * f),
        ),
        # mlp is the dense MLP: nothing in an MoE layer
        (["mlp"], 0.0, 0.0),
    ],
)
def test_moe_layer_modules(modules, dropped, flops):
    none = moe_cost()
    cost = moe_cost(recompute="selective", recompute_modules=modules)
    assert none.saved_activations[0] - cost.saved_activations[0] == pytest.approx(dropped)
    assert cost.recompute_flops[0] == pytest.approx(flops)
    assert cost.recompute_live[0] == pytest.approx(dropped)


def test_moe_checkpoint_reruns_the_all_to_alls():
    sc = scenario(model="mixtral-8x7b", gpus=8, gbs=8, tp=1, ep=8, dp=8)
    moe = sc.strategy.replace(recompute="selective", recompute_modules=["moe"])
    env = Env.build(sc.model, sc.system, batch_of(sc).__class__.from_specs([moe]), 8)
    cost = layer_cost(env, layer_template(sc.model, moe=True))
    assert (
        cost.recompute_ep[0] == pytest.approx(cost.ep_comm_forward[0]) and cost.recompute_ep[0] > 0
    )


MLA_MODEL = {
    "num_layers": 2,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "ffn_hidden_size": 512,
    "ffn_type": "swiglu",
    "vocab_size": 1024,
    "seq_len": 64,
    "mla": {
        "q_lora_rank": 96,
        "kv_lora_rank": 64,
        "qk_nope_head_dim": 32,
        "qk_rope_head_dim": 16,
        "v_head_dim": 32,
    },
}


def test_mla_up_proj_drops_q_k_v_and_reruns_the_up_projections():
    sc = scenario(model=MLA_MODEL, gpus=1, gbs=1, tp=1, dp=1)
    up = sc.strategy.replace(recompute="selective", recompute_modules=["mla_up_proj"])
    env = Env.build(sc.model, sc.system, batch_of(sc).__class__.from_specs([sc.strategy, up]), 1)
    cost = layer_cost(env, layer_template(sc.model, moe=False))
    s, a, qk, v = 64, 4, 48, 32
    # Q (a qk), K (a qk) and V (a v) per token, 16-bit
    assert cost.saved_activations[0] - cost.saved_activations[1] == pytest.approx(
        s * (2 * a * qk + a * v) * 2
    )
    # q_up: 96 -> a qk; kv_up: 64 -> a (32 + 32)
    assert cost.recompute_flops[1] == pytest.approx(2 * s * (96 * a * qk + 64 * a * 64))


def test_mla_up_proj_needs_mla():
    with pytest.raises(ConfigError, match="mla_up_proj needs a multi-latent-attention"):
        scenario(recompute="selective", recompute_modules=["mla_up_proj"])


def test_plan_is_the_union_of_module_plans():
    layer = layer_template(scenario(model=MOE_MODEL, gpus=1, gbs=1).model, moe=True)
    both = checkpoint_plan(layer, tuple(MODULES))
    for module in MODULES:
        single = checkpoint_plan(layer, (module,))
        assert all(b or not s for s, b in zip(single.dropped, both.dropped, strict=True))
    assert module_mask(MODULES) == (1 << len(MODULES)) - 1


@pytest.mark.parametrize(
    ("strategy", "key", "words"),
    [
        (
            {"recompute": "selective", "recompute_modules": ["attn"]},
            "recompute_modules.0",
            "core_attn",
        ),
        ({"recompute": "none", "recompute_modules": ["mlp"]}, "recompute_modules", "selective"),
        ({"recompute": "full", "recompute_modules": ["mlp"]}, "recompute_modules", "'full'"),
        (
            {"recompute": "selective", "recompute_layers": 2},
            "recompute_layers",
            "needs recompute: full",
        ),
        ({"recompute_layers": 2}, "recompute_layers", "'none'"),
        ({"recompute": "full", "recompute_layers": -1}, "recompute_layers", "-1"),
    ],
)
def test_bad_recompute_keys_name_key_rule_and_value(strategy, key, words):
    with pytest.raises(ConfigError) as info:
        scenario(**strategy)
    assert info.value.path == f"strategy.{key}"
    assert words in str(info.value)


# recompute_layers interpolates between none and full -------------------------------------


def gpt_small(pp: int, vpp: int, **strategy):
    return scenario(
        model="megatron-gpt-1.7b",
        system="dgx-h200",  # room for every point without recomputation
        gpus=8,
        gbs=32,
        tp=2,
        pp=pp,
        vpp=vpp,
        dp=8 // (2 * pp),
        micro_batch_size=1,
        **strategy,
    )


@settings(max_examples=25, deadline=None)
@given(
    layout=st.sampled_from([(1, 1), (2, 1), (4, 1), (2, 2), (4, 3)]),
    schedule=st.sampled_from(["1f1b", "gpipe", "zero-bubble"]),
    flash=st.booleans(),
)
def test_recompute_layers_moves_monotonically_from_none_to_full(layout, schedule, flash):
    pp, vpp = layout
    if schedule == "zero-bubble" and vpp > 1:
        schedule = "1f1b"
    common = {"pipeline_schedule": schedule, "flash_attention": flash}
    per_chunk = 24 // (pp * vpp)
    runs = [predict(gpt_small(pp, vpp, recompute="none", **common))]
    runs += [
        predict(gpt_small(pp, vpp, recompute="full", recompute_layers=k, **common))
        for k in range(per_chunk + 1)
    ]
    full = predict(gpt_small(pp, vpp, recompute="full", **common))
    memory = [r.peak_memory_bytes for r in runs]
    steps = [r.step_time_s for r in runs]
    assert memory[1] == pytest.approx(memory[0], rel=1e-12)  # 0 layers = none
    assert steps[1] == pytest.approx(steps[0], rel=1e-12)
    assert memory[-1] == pytest.approx(full.peak_memory_bytes, rel=1e-12)  # all = full
    assert steps[-1] == pytest.approx(full.step_time_s, rel=1e-12)
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(memory))
    assert all(b >= a * (1 - 1e-12) for a, b in itertools.pairwise(steps))
    assert all(r.feasible for r in runs)
    assert memory[-1] < memory[0] and steps[-1] > steps[0]


# KV heads shared across tensor-parallel ranks ----------------------------------------------

GQA = {
    "num_layers": 4,
    "hidden_size": 6144,
    "num_attention_heads": 48,
    "num_kv_heads": 8,
    "ffn_hidden_size": 16384,
    "ffn_type": "swiglu",
    "vocab_size": 32000,
    "seq_len": 4096,
}


def gqa(tp: int):
    return scenario(model=GQA, gpus=tp, gbs=1, tp=tp, dp=1, sequence_parallel=True)


def test_tp_a_multiple_of_the_kv_heads_is_feasible():
    assert predict(gqa(16)).feasible
    refused = predict(gqa(12))
    assert not refused.feasible
    assert "neither divides nor is a multiple of num_kv_heads=8" in refused.reason


def test_each_rank_keeps_one_kv_head_and_a_shard_of_the_weights():
    sc = gqa(16)
    env = Env.build(sc.model, sc.system, batch_of(sc), 1)
    layer = layer_template(sc.model, moe=False)
    cost = layer_cost(env, layer)
    # the QKV weight stays split over tp (Megatron-Core): no replicated parameters besides
    # the two norms' weights
    norms = 2 * 6144
    assert (cost.params[0] - norms) * 16 == pytest.approx(layer.params - norms, rel=1e-12)
    # Q of 48/16 = 3 heads, K and V of one head, 128 dims, 16-bit, 4096 tokens
    base = gqa(8)
    base_cost = layer_cost(Env.build(base.model, base.system, batch_of(base), 1), layer)
    kv_per_rank = {16: 4096 * 128 * 2 * (3 + 2), 8: 4096 * 128 * 2 * (6 + 2)}
    # the difference of the saved bytes at tp 8 and 16 (everything else halves) is Q, K, V
    others8 = base_cost.saved_activations[0] - kv_per_rank[8] - 4096 * 48 * 4 / 8
    others16 = cost.saved_activations[0] - kv_per_rank[16] - 4096 * 48 * 4 / 16
    assert others16 == pytest.approx(others8 / 2, rel=1e-12)
    # the QKV output is all-gathered over tp: tensor-parallel traffic grows beyond the
    # two reduce-scatter + all-gather pairs
    assert cost.tp_comm_forward[0] > 0 and base_cost.tp_comm_forward[0] > 0


def test_kv_gather_only_when_tp_exceeds_the_kv_heads():
    from deepflow.estimate.layer_cost import kv_gather_time

    layer = layer_template(gqa(8).model, moe=False)
    for tp, gathered in ((8, False), (16, True)):
        sc = gqa(tp)
        ag, rs = kv_gather_time(Env.build(sc.model, sc.system, batch_of(sc), 1), layer.attention)
        assert bool(ag[0] > 0) is gathered and bool(rs[0] > 0) is gathered


# FP8: only the linear layers' GEMMs -------------------------------------------------------


def h100(precision: str):
    sc = scenario(
        model="llama3-8b", system="dgx-h100", gpus=8, gbs=8, tp=1, dp=8, precision=precision
    )
    return Env.build(sc.model, sc.system, batch_of(sc), 8), sc


def test_fp8_keeps_attention_router_and_lm_head_at_the_bf16_rate():
    from deepflow.estimate.edges import head_cost
    from deepflow.estimate.layer_cost import _attention, _gemm_costs

    (bf16, sc), (fp8, _) = h100("bf16"), h100("fp8")
    layer = layer_template(sc.model, moe=False)
    a16, a8 = _attention(bf16, layer.attention), _attention(fp8, layer.attention)
    assert a8["fwd"][0] == a16["fwd"][0] and a8["bwd"][0] == a16["bwd"][0]
    h16, h8 = head_cost(bf16), head_cost(fp8)
    assert h8.forward_compute[0] == h16.forward_compute[0]
    for op in layer.ops:
        if op.name in ("qkv", "mlp_up", "mlp_down"):
            (g16,), (g8,) = _gemm_costs(bf16, layer, [op]), _gemm_costs(fp8, layer, [op])
            assert g8["fwd"][0] < g16["fwd"][0] and g8["bwd"][0] < g16["bwd"][0]
    router = next(op for op in layer_template(MOE_SPEC, moe=True).ops if op.name == "router")
    assert not router.low_precision


MOE_SPEC = scenario_from_dict(
    {
        "model": MOE_MODEL,
        "system": {"preset": "dgx-h100", "num_accelerators": 1},
        "training": {"global_batch_size": 1},
    }
).model


def test_peak_high_equals_peak_except_under_fp8():
    env, _ = h100("bf16")
    assert np.array_equal(env.peak, env.peak_high)
    env8, sc = h100("fp8")
    acc = sc.system.accelerator
    assert env8.peak[0] == acc.peak_flops.fp8 and env8.peak_high[0] == acc.peak_flops.bf16
