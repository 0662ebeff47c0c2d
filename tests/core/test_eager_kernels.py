"""Eager bias and norm kernels (``fused_epilogues: false``), worked by hand.

Without fused epilogues the QKV projection adds its bias in a read-write pass over its
output, every bias gradient is a reduction reading the output gradient, and each norm's
weight gradient reads the output gradient and the input once more (Megatron-LM 2020-2021,
Megatron-DeepSpeed, apex FusedLayerNorm)."""

import numpy as np
import pytest
from tests.core.helpers import batch_of, scenario

from deepflow.estimate import predict
from deepflow.estimate.context import Env
from deepflow.estimate.layer_cost import layer_cost
from deepflow.hardware.roofline import memory_time
from deepflow.workload.transformer import layer_template


def _costs(model: str, tp: int, sp: bool):
    out = {}
    for fused in (True, False):
        s = scenario(model, gpus=8, gbs=8, tp=tp, dp=8 // tp, micro_batch_size=2,
                     sequence_parallel=sp, fused_epilogues=fused)  # fmt: skip
        env = Env.build(s.model, s.system, batch_of(s), 8)
        out[fused] = (env, layer_cost(env, layer_template(s.model, False)))
    return out


@pytest.mark.parametrize(("tp", "sp"), [(1, False), (2, False), (4, True)])
def test_gpt_layer_extra_passes(tp: int, sp: bool) -> None:
    costs = _costs("gpt3-175b", tp, sp)
    env, fused = costs[True]
    _, eager = costs[False]
    m, acc = env.model, env.system.accelerator
    tokens, e = float(env.tokens[0]), float(env.elem[0])
    h, f = m.hidden_size, m.ffn_hidden_size
    qkv = 3 * h  # GPT-3: multi-head attention
    seq = tp if sp else 1  # sequence-sharded outside the tensor-parallel region
    add = memory_time(tokens * qkv / tp * 2 * e, acc)
    grads = (
        memory_time(tokens * qkv / tp * e, acc)  # QKV bias
        + memory_time(tokens * f / tp * e, acc)  # MLP up bias (bias-GeLU)
        + 2 * memory_time(tokens * h / seq * e, acc)  # output and MLP down biases
    )
    norms = 2 * memory_time(tokens * h / seq * 2 * e, acc)
    np.testing.assert_allclose(eager.forward_compute[0] - fused.forward_compute[0], add, rtol=1e-9)
    np.testing.assert_allclose(
        eager.backward_compute[0] - fused.backward_compute[0], grads + norms, rtol=1e-9
    )


def test_bias_free_model_pays_only_for_its_norms() -> None:
    costs = _costs("llama3-8b", 2, False)
    env, fused = costs[True]
    _, eager = costs[False]
    tokens, e = float(env.tokens[0]), float(env.elem[0])
    norms = 2 * memory_time(tokens * env.model.hidden_size * 2 * e, env.system.accelerator)
    assert eager.forward_compute[0] == fused.forward_compute[0]
    np.testing.assert_allclose(
        eager.backward_compute[0] - fused.backward_compute[0], norms, rtol=1e-9
    )


MEGATRON = {"gpus": 64, "gbs": 64, "tp": 8, "pp": 8, "dp": 1}
DEEPSEEK = {"gpus": 1024, "gbs": 1024, "tp": 8, "pp": 1, "dp": 128, "ep": 64, "zero": 3}


@pytest.mark.parametrize(
    ("model", "layout"),
    [
        ("gpt3-175b", MEGATRON),
        ("llama3-70b", MEGATRON),
        ("mixtral-8x7b", MEGATRON),
        ("deepseek-v3", DEEPSEEK),  # MLA: its q and kv norms too
    ],
)
def test_eager_kernels_never_faster(model: str, layout: dict[str, int]) -> None:
    def step(fused: bool) -> float:
        s = scenario(model, micro_batch_size=1, recompute="full", fused_epilogues=fused, **layout)
        p = predict(s)
        assert p.feasible, p.reason
        return p.step_time_s

    assert step(False) > step(True)
