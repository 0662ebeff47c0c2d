"""Framework implementation profiles (strategy.framework): the saved-tensor inventory of one
layer per profile, worked by hand from the code each profile cites; switch defaults and
overrides; what a framework cannot run; unknown names; mixed batches."""

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.helpers import batch_of, scenario

from deepflow.cli import main
from deepflow.errors import ConfigError
from deepflow.estimate import predict
from deepflow.estimate.context import Env
from deepflow.estimate.evaluate import evaluate
from deepflow.estimate.layer_cost import layer_cost
from deepflow.specs.framework import FRAMEWORKS, framework_names, framework_profile
from deepflow.workload.transformer import layer_template

H, F, A = 4096, 11008, 32  # llama2-7b: hidden, MLP width, heads (= key/value heads)
LSE = 4 * A  # flash attention's fp32 log-sum-exp per head and token

# Bytes per token that one Llama layer keeps for backward (bf16, tp 1, flash attention),
# term by term: attention norm, QKV input, Q K V, attention-output input, residual, MLP
# norm, MLP input, activation, MLP-down input, residual.
INVENTORY = {
    # Megatron-Core: TE norm keeps its input (2h); bias-dropout-add keeps a 1-byte mask (h);
    # bias-SwiGLU keeps gate and up (4f); the fused RoPE keeps only cos and sin
    "megatron-core": 2 * H + 2 * H + 6 * H + 2 * H + H + 2 * H + 2 * H + 4 * F + 2 * F + H,
    # ibm-fms eager: the norm keeps x.float() (4h) and x (2h); x + residual keeps nothing;
    # silu keeps its input, mul both factors (6f); RoPE's mul keeps only the frequencies
    "fsdp": 6 * H + 2 * H + 6 * H + 2 * H + 0 + 6 * H + 2 * H + 6 * F + 2 * F + 0,
    # Inductor: a fused norm keeps its input, fused silu*mul keeps gate and up
    "fsdp-compiled": 2 * H + 2 * H + 6 * H + 2 * H + 0 + 2 * H + 2 * H + 4 * F + 2 * F + 0,
    # HF under autocast over fp32 parameters: the fp32 norm keeps x and the normalized x
    # (8h) and q_proj, k_proj, v_proj each keep their own bf16 cast (2 more copies, 4h);
    # the MLP norm feeds gate_proj and up_proj (1 more copy, 2h)
    "hf-trainer": 12 * H + 2 * H + 6 * H + 2 * H + 0 + 10 * H + 2 * H + 6 * F + 2 * F + 0,
}
INVENTORY["fsdp2"] = INVENTORY["deepspeed"] = INVENTORY["fsdp"]
INVENTORY["torchtitan"] = INVENTORY["maxtext"] = INVENTORY["fsdp-compiled"]


def _layer_bytes_per_token(framework: str, **strategy) -> float:
    s = scenario("llama2-7b", gpus=8, gbs=8, dp=8, framework=framework, **strategy)
    env = Env.build(s.model, s.system, batch_of(s), 8)
    cost = layer_cost(env, layer_template(s.model, False, framework))
    return float(cost.full_activations[0] / env.tokens[0])


@pytest.mark.parametrize("framework", sorted(INVENTORY))
def test_saved_tensor_inventory_of_one_llama_layer(framework):
    got = _layer_bytes_per_token(framework, flash_attention=True)
    assert got == pytest.approx(INVENTORY[framework] + LSE, rel=1e-12)


def _hf_gpt2_scenario():
    from deepflow.validation.hf_step import measured_rows
    from deepflow.validation.hf_step import scenario as hf_scenario

    row = next(r for r in measured_rows() if r["name"] == "gpt2-l24-h1536-b8-s1024")
    return hf_scenario(row, "h200-sxm-141gb")


def test_hf_trainer_saved_tensors_of_one_gpt2_layer():
    """transformers modeling_gpt2.py under CUDA autocast over fp32 parameters, per token:
    ln_1 and ln_2 keep their fp32 inputs (the residual stream, 2 x 4h); c_attn, c_fc keep
    their bf16 input casts (2 x 2h) and c_proj the bf16 attention output (2h, the tensor the
    attention kernel keeps as its output); the attention kernel keeps the c_attn output (q,
    k, v: 6h) and contiguous copies of k and v (4h) and its fp32 log-sum-exp (4 a); the
    two residual dropouts keep bool masks (2 x h); gelu_new keeps pow's fp32 input, tanh's
    fp32 output, (1 + tanh) in fp32 (3 x 4f) and 0.5 x in bf16 (2f); the MLP's c_proj its
    bf16 input cast (2f). Matches bench/saved_tensors.py on an H200
    (validation/data/hf_step_h200/saved_tensors.txt)."""
    s = _hf_gpt2_scenario()
    h, f, a = s.model.hidden_size, s.model.ffn_hidden_size, s.model.num_attention_heads
    env = Env.build(s.model, s.system, batch_of(s), s.training.global_batch_size)
    cost = layer_cost(env, layer_template(s.model, False, "hf-trainer"))
    expected = 8 * h + 2 * 2 * h + 2 * h + 6 * h + 4 * h + 4 * a + 2 * h + 12 * f + 2 * f + 2 * f
    assert cost.full_activations[0] / env.tokens[0] == pytest.approx(expected, rel=1e-12)


def test_hf_trainer_loss_keeps_logits_and_its_gradients_at_the_backward_peak():
    """fp32 log_softmax output kept (4 bytes per logit); at the start of backward the
    nll_loss and log_softmax gradients (2 x 4) live with it. Megatron's fused vocab-parallel
    cross-entropy writes its gradient over the saved softmax: nothing transient."""
    from deepflow.estimate.edges import framework_head_cost

    s = _hf_gpt2_scenario()
    env = Env.build(s.model, s.system, batch_of(s), s.training.global_batch_size)
    logits = env.tokens[0] * s.model.vocab_size
    hf = framework_head_cost(env, "hf-trainer")
    assert hf.transient_activations[0] == pytest.approx(8 * logits)
    assert framework_head_cost(env, "megatron-core").transient_activations[0] == 0.0


def test_gradients_made_in_backward_take_the_larger_phase():
    """hf-trainer (zero_grad(set_to_none=True)): the peak is optimizer state + buffers +
    the larger of (16-bit weight copies + activations) and the fp32 gradients, not their
    sum; a short sequence peaks at the optimizer step, a long one at the start of backward."""
    for seq, phase in ((16, "step"), (4096, "backward")):
        s = scenario("llama2-7b", system="dgx-h100", gpus=1, gbs=1, framework="hf-trainer")
        s = s.model_copy(update={"model": s.model.model_copy(update={"seq_len": seq})})
        p = predict(s)
        m = p.memory_bytes
        live = m["weights"] + m["activations"] if phase == "backward" else m["gradients"]
        assert p.peak_memory_bytes == pytest.approx(
            m["optimizer_state"] + m["buffers"] + live, rel=1e-12
        )
        assert (m["gradients"] == 0.0) == (phase == "backward")


def test_tied_embeddings_are_held_once_on_a_stage_with_both_ends():
    """With pp = 1 the LM head uses the embedding table: the stage holds the parameters
    the model has (GPT-2: tied embeddings), 12 bytes of optimizer state each, not the
    table twice (Megatron-Core share_embeddings_and_output_weights)."""
    from deepflow.workload.transformer import parameter_count

    s = _hf_gpt2_scenario()
    counts = parameter_count(s.model)
    assert s.model.tie_embeddings and counts.lm_head == 0
    p = predict(s)
    assert p.memory_bytes["optimizer_state"] == pytest.approx(12.0 * counts.total, rel=1e-12)


@pytest.mark.parametrize("framework", ["megatron-core", "megatron-lm", "megatron-deepspeed"])
def test_megatron_profiles_reproduce_korthikanti_table_2(framework):
    """GPT layer without flash attention, no parallelism: 34 s b h + 5 a s^2 b bytes
    (Korthikanti et al. 2022, arXiv 2205.05198, Table 2), within 3 %."""
    s = scenario(gpus=8, gbs=8, dp=8, framework=framework, flash_attention=False)
    env = Env.build(s.model, s.system, batch_of(s), 8)
    cost = layer_cost(env, layer_template(s.model, False, framework))
    m = s.model
    sbh = m.seq_len * m.hidden_size
    expected = sbh * (34 + 5 * m.num_attention_heads * m.seq_len / m.hidden_size)
    assert cost.full_activations[0] == pytest.approx(expected, rel=0.03)


def test_every_profile_loads_and_cites_sources():
    assert "megatron-core" in FRAMEWORKS and len(FRAMEWORKS) >= 9
    for name in framework_names():
        profile = framework_profile(name)
        assert profile.name == name and profile.sources
        for impl in (profile.norm, profile.residual, profile.swiglu, profile.rope, profile.loss):
            assert impl is None or impl.source


def test_profile_sets_switch_defaults_and_scenario_overrides_them():
    s = scenario("llama2-7b", gpus=8, dp=8, zero=3, framework="fsdp")
    assert s.strategy.fused_epilogues is False and s.strategy.fp32_main_grads is False
    s = scenario("llama2-7b", gpus=8, dp=8, zero=3, framework="fsdp", fp32_main_grads=True)
    assert s.strategy.fp32_main_grads is True
    assert scenario().strategy.framework == "megatron-core"


def test_unknown_framework_is_a_config_error_with_did_you_mean():
    with pytest.raises(ConfigError, match=r"strategy\.framework.*did you mean 'fsdp'\?.*known:"):
        scenario(framework="fsdp3")


def test_unknown_framework_exits_2_on_the_command_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "model: llama2-7b\nsystem: {preset: dgx-h100, num_accelerators: 8}\n"
        "strategy: {framework: torchtitn}\ntraining: {global_batch_size: 8}\n"
    )
    result = CliRunner().invoke(main, ["predict", str(path), "--json"])
    assert result.exit_code == 2
    assert "did you mean 'torchtitan'?" in result.output and "megatron-core" in result.output


@pytest.mark.parametrize(
    ("framework", "strategy", "key"),
    [
        ("fsdp", {"tp": 2, "dp": 4, "zero": 3}, "tp=2"),
        ("hf-trainer", {"dp": 8, "zero": 3}, "zero=3"),
        ("megatron-lm", {"cp": 2, "dp": 4}, "cp=2"),
        ("megatron-deepspeed", {"pp": 2, "dp": 4, "zero": 3}, "zero=3 with pp=2"),
    ],
)
def test_what_a_framework_cannot_run_is_infeasible_with_the_reason(framework, strategy, key):
    p = predict(scenario("llama2-7b", gpus=8, gbs=8, framework=framework, **strategy))
    assert not p.feasible
    assert f"framework {framework} cannot run" in p.reason and key in p.reason


def test_mixed_framework_batch_equals_each_alone():
    specs = [
        scenario("llama2-7b", gpus=8, gbs=16, dp=8, zero=3, framework=f)
        for f in ("fsdp", "fsdp-compiled", "megatron-core")
    ]
    model, system = specs[0].model, specs[0].system
    together = evaluate(model, system, 16, batch_of(*specs)).step_time
    alone = [evaluate(model, system, 16, batch_of(s)).step_time[0] for s in specs]
    np.testing.assert_array_equal(together, alone)


@settings(max_examples=15, deadline=None)
@given(
    mbs=st.sampled_from([1, 2, 4]),
    precision=st.sampled_from(["bf16", "fp16", "fp32"]),
    recompute=st.sampled_from(["none", "full"]),
)
def test_compiled_kernels_never_slower_nor_larger_than_eager(mbs, precision, recompute):
    """Inductor's fused kernels move no more bytes, launch no more kernels and keep no more
    tensors than the eager chains they replace: fsdp-compiled is never slower and never
    needs more memory than fsdp on the same strategy."""

    def run(framework):
        s = scenario(
            "llama2-7b", gpus=8, gbs=32, dp=8, zero=3, framework=framework,
            micro_batch_size=mbs, precision=precision, recompute=recompute,
        )  # fmt: skip
        r = evaluate(s.model, s.system, 32, batch_of(s))
        return r.step_time[0], r.peak_memory[0]

    eager, compiled = run("fsdp"), run("fsdp-compiled")
    assert compiled[0] <= eager[0] and compiled[1] <= eager[1]


def test_search_within_a_framework_and_unknown_name_exits_2(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "model: llama2-7b\nsystem: {preset: dgx-h100, num_accelerators: 8}\n"
        "strategy: {zero: 3}\ntraining: {global_batch_size: 16}\n"
    )
    bad = CliRunner().invoke(main, ["search", str(path), "--framework", "fsdpx"])
    assert bad.exit_code == 2 and "did you mean 'fsdp'?" in bad.output
    good = CliRunner().invoke(main, ["search", str(path), "--framework", "fsdp", "--json"])
    assert good.exit_code == 0, good.output
    import json

    top = json.loads(good.output)["top"]
    assert top and all(c["strategy"]["tp"] == 1 and c["strategy"]["pp"] == 1 for c in top)
    assert all(c["strategy"]["framework"] == "fsdp" for c in top)


def test_fsdp_profiles_run_flash_attention_2_at_its_published_curve():
    """fms-fsdp's PyTorch ran SDPA's FlashAttention-2 backend; the Hopper attention curve is
    the cuDNN kernel of the H200 calibration. The FA2 curve is the fit to the chip's own
    Azure FlashAttention-2 record alone: 327.9 TFLOP/s forward on H100 (non-causal, head
    dim 128, batch 2, seq 8192), about a third of the 989 TFLOP/s peak."""
    from deepflow.hardware.kernels import attention_time, kernel_params
    from deepflow.specs import accelerator_from

    for name in ("fsdp", "fsdp-compiled"):
        assert framework_profile(name).attention_kernel == "flash-attention-2"
        assert "sdp_utils.cpp" in framework_profile(name).attention_kernel_source
    assert framework_profile("megatron-core").attention_kernel == "default"
    h100 = accelerator_from("h100-sxm5-80gb")
    fa2 = kernel_params(h100).flash_attention_2["bf16"]
    peak = 989e12
    fwd, _, flops = attention_time(2, 16, 8192, 8192, 128, 128, False, h100, peak, None,
                                   "flash-attention-2")  # fmt: skip
    assert float(flops / (fwd - fa2.latency_s)) / 1e12 == pytest.approx(327.9, rel=0.03)
    default, _, _ = attention_time(2, 16, 8192, 8192, 128, 128, False, h100, peak)
    assert float(fwd) > 1.5 * float(default)  # cuDNN on Hopper: well above FA2
    # a chip without FlashAttention-2 records keeps its attention curve
    b200 = accelerator_from("b200")
    a = attention_time(2, 16, 8192, 8192, 128, 128, True, b200, 2250e12)
    b = attention_time(2, 16, 8192, 8192, 128, 128, True, b200, 2250e12, None, "flash-attention-2")
    assert np.allclose(a, b)


def test_fsdp_attention_kernel_slows_only_attention_on_h100():
    s = scenario("llama2-7b", system="dgx-h100", gpus=8, gbs=8, dp=8, zero=3, framework="fsdp")
    env = Env.build(s.model, s.system, batch_of(s), 8)
    fa2 = layer_cost(env, layer_template(s.model, False, "fsdp"))
    template = layer_template(s.model, False, "fsdp")
    from dataclasses import replace

    cudnn = layer_cost(
        env, replace(template, attention=replace(template.attention, kernel="default"))
    )
    assert float(fa2.forward[0]) > float(cudnn.forward[0])
    assert float(fa2.full_activations[0]) == float(cudnn.full_activations[0])


def test_separate_projections_split_the_gemms_not_the_memory():
    """Hugging Face Llama (q_proj, k_proj, v_proj; gate_proj, up_proj) and ibm-fms (query,
    key, value; wg, w1) run separate linears: one GEMM per layer and pass, the same FLOPs,
    parameters and saved bytes as one fused GEMM; GPT-2's Conv1D c_attn stays one GEMM."""
    from deepflow.specs import model_from

    llama = model_from("llama2-7b")
    for name in ("hf-trainer", "fsdp", "fsdp-compiled"):
        ops = {op.name: op for op in layer_template(llama, False, name).ops}
        assert ops["qkv"].splits == (A * 128, A * 128, A * 128)
        assert ops["mlp_up"].splits == (F, F)
    assert all(not getattr(op, "splits", ()) for op in layer_template(llama, False).ops)
    gpt2 = _hf_gpt2_scenario().model
    assert all(
        not getattr(op, "splits", ()) for op in layer_template(gpt2, False, "hf-trainer").ops
    )

    s = scenario("llama2-7b", system="dgx-h100", gpus=8, gbs=8, dp=8, zero=3, framework="fsdp")
    env = Env.build(s.model, s.system, batch_of(s), 8)
    from dataclasses import replace

    def unsplit(op):
        return replace(op, splits=()) if hasattr(op, "splits") else op

    split = layer_template(s.model, False, "fsdp")
    fused = replace(
        split,
        attention_ops=tuple(unsplit(o) for o in split.attention_ops),
        mlp_ops=tuple(unsplit(o) for o in split.mlp_ops),
    )
    a, b = layer_cost(env, split), layer_cost(env, fused)
    assert float(a.forward_compute[0]) > float(b.forward_compute[0])
    assert float(a.full_activations[0]) == float(b.full_activations[0])
    assert float(a.params[0]) == float(b.params[0])


def test_autocast_casts_each_linear_weight_and_the_lm_head():
    """Under torch.autocast over fp32 parameters every linear layer's weight is cast per
    forward (read 4 + write 2 bytes per parameter, one kernel per weight tensor: q_proj,
    k_proj and v_proj are three) and the LM head's weight too; not in fp32 runs."""
    from deepflow.estimate.edges import framework_head_cost
    from deepflow.estimate.layer_cost import autocast_cast_time
    from deepflow.hardware.roofline import memory_time
    from deepflow.workload.transformer import parameter_count

    s = _hf_gpt2_scenario()
    env = Env.build(s.model, s.system, batch_of(s), 1)
    p = np.array([1.0e8])
    fwd, bwd, kernels = autocast_cast_time(env, True, p, 3.0)
    assert float(fwd[0]) == float(memory_time(p * 6.0, s.system.accelerator, 3.0)[0])
    assert float(bwd[0]) == float(fwd[0]) and float(kernels[0]) == 3.0
    assert float(autocast_cast_time(env, False, p, 3.0)[0][0]) == 0.0
    # the tied GPT-2 embedding is cast where the LM head uses it
    tied = parameter_count(s.model).embedding
    head = framework_head_cost(env, "hf-trainer")
    cast = autocast_cast_time(env, True, np.array([float(tied)]), 1.0)[0]
    plain = framework_head_cost(env, "fsdp")  # 16-bit parameters: no cast
    assert float(head.forward_compute[0]) > float(cast[0]) > 0.0
    assert float(plain.forward_compute[0]) < float(head.forward_compute[0])
