"""The training loop's per-micro-batch host work and the host issue time of the embedding,
LM head and loss, worked by hand from Megatron-DeepSpeed's code (the megatron-deepspeed
profile's ``microbatch`` and ``loss`` sections)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepflow.estimate import predict
from deepflow.estimate.context import Env
from deepflow.estimate.edges import (
    embedding_cost,
    head_cost,
    loss_allreduce_time,
    microbatch_loop_time,
)
from deepflow.estimate.layer_cost import layer_costs
from deepflow.network.collectives import Collective, collective_time
from deepflow.parallel import StrategyBatch
from deepflow.specs import scenario_from_dict
from deepflow.specs.framework import framework_profile

SMALL_GPT = {
    "name": "gpt-350m-like",
    "num_layers": 4,
    "hidden_size": 1024,
    "num_attention_heads": 16,
    "ffn_hidden_size": 4096,
    "ffn_type": "gelu",
    "vocab_size": 50257,
    "seq_len": 1024,
    "learned_position_embeddings": True,
    "tie_embeddings": True,
}


def _scenario(framework: str, tp: int = 1, pp: int = 1, dp: int = 8, gbs: int = 16):
    return scenario_from_dict(
        {
            "model": SMALL_GPT,
            "system": {"preset": "dgx-a100-80gb", "num_accelerators": tp * pp * dp},
            "strategy": {
                "framework": framework,
                "tp": tp,
                "pp": pp,
                "dp": dp,
                "micro_batch_size": 1,
                "precision": "fp16",
                "recompute": "full",
            },
            "training": {"global_batch_size": gbs},
        }
    )


def _env(framework: str, **kw) -> Env:
    s = _scenario(framework, **kw)
    batch = StrategyBatch.from_specs([s.strategy])
    return Env.build(s.model, s.system, batch, s.training.global_batch_size)


HOST = 20e-6  # the A100 preset's efficiency.host_overhead


def test_host_overhead_of_the_preset() -> None:
    env = _env("megatron-deepspeed")
    assert env.system.accelerator.efficiency.host_overhead == pytest.approx(HOST)


def test_megatron_deepspeed_loop_counts() -> None:
    """5 syncs (two timers of forward_step and backward_step, start and stop each, and the
    .cpu() of broadcast_data) and 16 kernels on an empty queue (6 of get_batch, 5 of the
    masks, 5 of DeepSpeed's loss scaling and its backward): 21 x 20 us = 420 us."""
    loop = framework_profile("megatron-deepspeed").microbatch
    assert loop is not None
    assert (loop.device_syncs, loop.host_kernels, loop.loss_allreduce) == (5, 16, True)
    np.testing.assert_allclose(microbatch_loop_time(_env("megatron-deepspeed")), [420e-6])


def test_loop_only_without_pipelining_and_only_where_the_profile_has_one() -> None:
    """The loop is that of the schedule without pipelining (DeepSpeed's pipeline engine,
    pp > 1, has no per-micro-batch timers); the megatron-core profile describes none."""
    np.testing.assert_array_equal(microbatch_loop_time(_env("megatron-deepspeed", pp=2)), [0.0])
    np.testing.assert_array_equal(microbatch_loop_time(_env("megatron-core")), [0.0])
    np.testing.assert_array_equal(loss_allreduce_time(_env("megatron-core")), [0.0])


def test_loss_allreduce_is_one_fp32_over_data_parallelism() -> None:
    """average_losses_across_data_parallel_group: 4 bytes all-reduced over dp = 8 (a ring:
    2 (n - 1) steps of the scale-up latency plus 2 (n - 1)/n x 4 bytes at the link rate);
    nothing at dp = 1."""
    env = _env("megatron-deepspeed", dp=8)
    up = env.hierarchy.scale_up
    n = 8
    by_hand = 2 * (n - 1) * (up.latency + 4.0 / n / up.effective_bandwidth)
    got = loss_allreduce_time(env)
    np.testing.assert_allclose(got, [by_hand], rtol=1e-9)
    np.testing.assert_allclose(
        got, collective_time(Collective.ALL_REDUCE, 4.0, env.dp_groups.grad, env.hierarchy)
    )
    np.testing.assert_array_equal(loss_allreduce_time(_env("megatron-deepspeed", dp=1)), [0.0])
    np.testing.assert_allclose(head_cost(env).dp_comm_forward, by_hand, rtol=1e-9)


def test_head_host_excess_by_kernel_count() -> None:
    """At tp 8 the head of a 1,024-wide GPT is host-bound. Forward: the final norm (1),
    the LM head GEMM (1), the loss (6 over the logits, 12 per-token bookkeeping kernels of
    _VocabParallelCrossEntropy, 6 of loss_func: 24), its three tp all-reduces and the
    loss all-reduce over dp: 30 kernels. Backward: the norm (1), two GEMMs and the
    accumulation (3), the loss (7), the input gradient's tp all-reduce (1): 12."""
    env = _env("megatron-deepspeed", tp=8, dp=1, gbs=8)
    env_dp = _env("megatron-deepspeed", tp=4, dp=2, gbs=8)
    for e, fwd_kernels, bwd_kernels in ((env, 29, 12), (env_dp, 30, 12)):
        head = head_cost(e)
        device_fwd = head.forward_compute + head.tp_comm_forward + head.dp_comm_forward
        device_bwd = head.backward_compute + head.tp_comm_backward
        assert fwd_kernels * HOST > device_fwd[0]  # host-bound, so the excess is positive
        np.testing.assert_allclose(head.host_excess_forward, fwd_kernels * HOST - device_fwd)
        np.testing.assert_allclose(
            head.host_excess_backward, np.maximum(0.0, bwd_kernels * HOST - device_bwd)
        )


def test_embedding_host_excess_includes_the_loop() -> None:
    """After the loop's syncs the queue is empty and the embedding's forward runs at the
    host's pace. At tp 1: word and position lookups, their sum, dropout (4 kernels, 80 us
    of host) against its device time, plus the loop's 420 us; at tp 8 the vocab-parallel
    masking adds 8 kernels (12 in all)."""
    for tp, kernels in ((1, 4), (8, 12)):
        env = _env("megatron-deepspeed", tp=tp, dp=8 // tp, gbs=8)
        emb = embedding_cost(env)
        device = emb.forward_compute + emb.tp_comm_forward
        np.testing.assert_allclose(
            emb.host_excess_forward, np.maximum(0.0, kernels * HOST - device) + 420e-6
        )
    # without a synchronizing loop (megatron-core, or DeepSpeed's pipeline engine) the host
    # is ahead when the lookup is issued
    for env in (_env("megatron-core", tp=8, dp=1, gbs=8), _env("megatron-deepspeed", pp=2)):
        np.testing.assert_array_equal(embedding_cost(env).host_excess_forward, [0.0])


def test_step_time_grows_by_the_loop_per_micro_batch() -> None:
    """The step's host share of a pp 1 run holds the loop once per micro-batch (16
    micro-batches at micro-batch 1, dp 1)."""
    s = _scenario("megatron-deepspeed", tp=8, dp=1, gbs=16)
    p = predict(s)
    env = _env("megatron-deepspeed", tp=8, dp=1, gbs=16)
    head, emb = head_cost(env), embedding_cost(env)
    assert p.breakdown_s["host_overhead"] >= 16 * (420e-6 + head.host_excess[0])
    assert p.breakdown_s["host_overhead"] >= 16 * emb.host_excess[0]


def _small(hidden: int, layers: int, tp: int, dp: int, mb: int, gbs: int):
    model = {**SMALL_GPT, "hidden_size": hidden, "ffn_hidden_size": 4 * hidden}
    model["num_layers"] = layers
    return scenario_from_dict(
        {
            "model": model,
            "system": {"preset": "dgx-a100-80gb", "num_accelerators": tp * dp},
            "strategy": {
                "framework": "megatron-deepspeed",
                "tp": tp,
                "dp": dp,
                "micro_batch_size": mb,
                "precision": "fp16",
                "recompute": "full",
            },
            "training": {"global_batch_size": gbs},
        }
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([512, 1024, 2048]),
    st.integers(1, 8),
    st.sampled_from([(1, 1), (1, 4), (2, 2), (4, 1), (8, 1), (2, 4)]),
    st.sampled_from([1, 2, 4]),
    st.integers(1, 4),
)
def test_loop_and_edge_host_time_compose_per_micro_batch(hidden, layers, layout, mb, micro):
    """At pp 1 the step's host share is, per micro-batch, the layers' host excess, the
    embedding's (which holds the loop) and the head's; each edge excess lies between zero
    and its host issue time; one more micro-batch costs at least the loop and the loss
    all-reduce more."""
    tp, dp = layout
    s = _small(hidden, layers, tp, dp, mb, mb * dp * micro)
    env = Env.build(
        s.model, s.system, StrategyBatch.from_specs([s.strategy]), s.training.global_batch_size
    )
    dense, _ = layer_costs(env)
    emb, head = embedding_cost(env), head_cost(env)
    loop = microbatch_loop_time(env)[0]
    assert loop == pytest.approx(21 * HOST)
    assert loop <= emb.host_excess_forward[0] <= loop + 12 * HOST + 1e-12
    assert 0.0 <= head.host_excess_forward[0] <= 30 * HOST
    assert 0.0 <= head.host_excess_backward[0] <= 12 * HOST
    p = predict(s)
    per_mb = layers * dense.host_excess[0] + emb.host_excess[0] + head.host_excess[0]
    assert p.breakdown_s["host_overhead"] == pytest.approx(micro * per_mb, rel=1e-9)
    more = predict(_small(hidden, layers, tp, dp, mb, mb * dp * (micro + 1)))
    floor = loop + loss_allreduce_time(env)[0]
    assert more.step_time_s - p.step_time_s >= floor * (1 - 1e-9)
