"""Megatron's fused causal softmax in the unfused attention core, worked by hand.

``scaled_upper_triang_masked_softmax`` (Megatron ``fused_kernels/
scaled_upper_triang_masked_softmax.h``) reads only the ``i + 1`` scores row ``i`` attends
to and writes the whole row; its backward reads the gradient and the output on the same
triangle and writes the whole row. ``FusedScaleMaskSoftmax`` runs it for 16-bit scores
with ``16 < s <= 4096`` (``fused_softmax.py``, ``is_kernel_available``). The dropout after
it reads and writes every score and a 1-byte mask, both ways."""

import numpy as np
import pytest
from tests.core.helpers import batch_of

from deepflow.estimate.context import Env
from deepflow.estimate.layer_cost import FUSED_SOFTMAX_MAX_SEQ, _attention
from deepflow.hardware.roofline import gemm_time, memory_time
from deepflow.specs import scenario_from_dict
from deepflow.workload.transformer import layer_template


def _core(seq: int, precision: str = "fp16"):
    s = scenario_from_dict(
        {
            "model": {"preset": "gpt3-175b", "seq_len": seq},
            "system": {"preset": "dgx-a100-80gb", "num_accelerators": 8},
            "strategy": {
                "tp": 8,
                "micro_batch_size": 1,
                "flash_attention": False,
                "precision": precision,
            },
            "training": {"global_batch_size": 8},
        }
    )
    env = Env.build(s.model, s.system, batch_of(s), 8)
    return env, _attention(env, layer_template(s.model, False).attention)


def _softmax_dropout(env, seq: int, read: float):
    """Forward and backward time of the softmax and dropout passes, by hand."""
    m = env.model
    e = float(env.elem[0])
    values = m.num_attention_heads / 8 * seq * seq  # micro-batch 1, tp 8
    fwd = values * ((read + 1.0) * e + 2.0 * e + 1.0)
    bwd = values * ((2.0 * read + 1.0) * e + 2.0 * e + 1.0)
    acc = env.system.accelerator
    return memory_time(fwd, acc, 2), memory_time(bwd, acc, 2)


def _gemms(env, seq: int):
    m, acc = env.model, env.system.accelerator
    d, batch = m.head_dim, m.num_attention_heads / 8
    peak, e, code = env.peak_high, env.elem, env.precision_high
    fwd = gemm_time(seq, seq, d, acc, peak, e, batch, code) + gemm_time(
        seq, d, seq, acc, peak, e, batch, code
    )
    # dQ = dS K, dK = dS^T Q (s x d, K = s); dP = dO V^T (s x s, K = d); dV = P^T dO
    bwd = (
        2.0 * gemm_time(seq, d, seq, acc, peak, e, batch, code)
        + gemm_time(seq, seq, d, acc, peak, e, batch, code)
        + gemm_time(seq, d, seq, acc, peak, e, batch, code)
    )
    return fwd, bwd


@pytest.mark.parametrize(
    ("seq", "read"),
    [
        (1024, 1025 / 2048),  # the fused causal kernel: the lower triangle
        (2048, 2049 / 4096),
        (8192, 1.0),  # beyond the kernel's 4096: whole rows (PyTorch softmax)
    ],
)
def test_unfused_core_reads_the_causal_triangle(seq: int, read: float) -> None:
    env, core = _core(seq)
    soft_fwd, soft_bwd = _softmax_dropout(env, seq, read)
    g_fwd, g_bwd = _gemms(env, seq)
    np.testing.assert_allclose(core["fwd"], g_fwd + soft_fwd, rtol=1e-9)
    np.testing.assert_allclose(core["bwd"], g_bwd + soft_bwd, rtol=1e-9)


def test_fp32_scores_read_whole_rows() -> None:
    env, core = _core(1024, "fp32")
    soft_fwd, _ = _softmax_dropout(env, 1024, 1.0)
    g_fwd, _ = _gemms(env, 1024)
    np.testing.assert_allclose(core["fwd"], g_fwd + soft_fwd, rtol=1e-9)


def test_kernel_limit_is_megatrons() -> None:
    assert FUSED_SOFTMAX_MAX_SEQ == 4096.0
