"""Activation memory per layer against Korthikanti et al. 2022 (arXiv 2205.05198), Table 2.

Per layer, 16-bit activations, GPT-style block with 4h MLP and unfused attention:
no parallelism 34 sbh + 5 a s^2 b; tensor parallel sbh (10 + 24/t + 5 a s/(h t));
+ sequence parallel sbh/t (34 + 5 a s/h); selective recompute + SP 34 sbh/t;
full recompute 2 sbh (2 sbh/t with SP).
"""

import pytest
from tests.core.helpers import batch_of, scenario

from deepflow.estimate.context import Env
from deepflow.estimate.layer_cost import layer_cost
from deepflow.workload import layer_template

S, B, H, A = 2048, 1, 12288, 96
SBH = S * B * H


@pytest.mark.parametrize(
    ("tp", "sp", "recompute", "expected"),
    [
        (1, False, "none", SBH * (34 + 5 * A * S / H)),
        (8, False, "none", SBH * (10 + 24 / 8 + 5 * A * S / (H * 8))),
        (8, True, "none", SBH / 8 * (34 + 5 * A * S / H)),
        (8, True, "selective", 34 * SBH / 8),
        (8, False, "full", 2 * SBH),
        (8, True, "full", 2 * SBH / 8),
    ],
)
def test_table_2(tp, sp, recompute, expected):
    sc = scenario(
        tp=tp,
        dp=8 // tp,
        sequence_parallel=sp,
        recompute=recompute,
        flash_attention=False,
        precision="fp16",
        micro_batch_size=B,
    )
    env = Env.build(sc.model, sc.system, batch_of(sc), sc.training.global_batch_size)
    cost = layer_cost(env, layer_template(sc.model, moe=False))
    assert cost.saved_activations[0] == pytest.approx(expected, rel=1e-12)


def test_flash_attention_drops_the_score_term():
    sc = scenario(tp=8, dp=1, sequence_parallel=True, flash_attention=True, precision="bf16")
    env = Env.build(sc.model, sc.system, batch_of(sc), 8)
    cost = layer_cost(env, layer_template(sc.model, moe=False))
    # 34 sbh/t plus the fp32 log-sum-exp per head and token
    lse = S * B * (A / 8) * 4
    assert cost.saved_activations[0] == pytest.approx(34 * SBH / 8 + lse, rel=1e-12)
