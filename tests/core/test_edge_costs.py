"""The last stage's cross-entropy traffic, worked by hand from Megatron-LM's kernels."""

import numpy as np
import pytest
from tests.core.helpers import batch_of, scenario

from deepflow.estimate.context import Env
from deepflow.estimate.edges import embedding_cost, head_cost
from deepflow.hardware.roofline import gemm_time, memory_time


def _env(precision: str, tp: int = 1) -> Env:
    s = scenario(gpus=8, gbs=8, tp=tp, dp=8 // tp, micro_batch_size=1, precision=precision)
    return Env.build(s.model, s.system, batch_of(s), 8)


@pytest.mark.parametrize(("precision", "elem"), [("bf16", 2.0), ("fp32", 4.0)])
@pytest.mark.parametrize("tp", [1, 8])
def test_cross_entropy_bytes_per_logit(precision: str, elem: float, tp: int) -> None:
    """Forward: cast to fp32 (elem + 4), max (4), subtract (8), exp (8), sum (4),
    divide (8): 38 bytes per bf16 logit, 32 per fp32 logit. Backward: scale (8) and cast
    back (4 + elem): 14 per bf16 logit, 8 per fp32 logit. The casts are kernels of their
    own that fp32 logits do not launch (the megatron-core profile's loss). The head's
    weight gradient is then added into the fp32 gradient buffer: read 4 + elem, write 4
    bytes per weight of the (vocab / tp x h) table."""
    env = _env(precision, tp)
    acc = env.system.accelerator
    m = env.model
    rows = env.tokens[0]
    logits = rows * m.vocab_size / tp
    cast = elem + 4.0 if elem < 4 else 0.0
    norm = rows * m.hidden_size
    expect_fwd = (
        memory_time(norm * 2 * elem, acc)
        + gemm_time(rows, m.vocab_size / tp, m.hidden_size, acc, env.peak[0], elem, 1, precision)
        + memory_time(logits * (32.0 + cast), acc, 6 if cast else 5)
    )
    expect_bwd = (
        memory_time(norm * 3 * elem, acc)
        + gemm_time(rows, m.hidden_size, m.vocab_size / tp, acc, env.peak[0], elem, 1, precision)
        + gemm_time(m.hidden_size, m.vocab_size / tp, rows, acc, env.peak[0], elem, 1, precision)
        + memory_time(logits * (8.0 + cast), acc, 3 if cast else 2)
        + memory_time(m.vocab_size * m.hidden_size / tp * (8.0 + elem), acc, 1)
    )
    head = head_cost(env)
    np.testing.assert_allclose(head.forward_compute[0], expect_fwd, rtol=1e-12)
    np.testing.assert_allclose(head.backward_compute[0], expect_bwd, rtol=1e-12)


def test_final_norm_weight_gradient_pass_without_fused_epilogues() -> None:
    """The final norm's eager weight gradient re-reads the output gradient and the input."""

    def head(fused: bool):
        s = scenario(gpus=8, gbs=8, tp=2, dp=4, micro_batch_size=1, fused_epilogues=fused)
        env = Env.build(s.model, s.system, batch_of(s), 8)
        return env, head_cost(env)

    env, fused = head(True)
    _, eager = head(False)
    norm = env.tokens[0] * env.model.hidden_size
    extra = memory_time(norm * 2 * env.elem[0], env.system.accelerator)
    assert eager.forward_compute[0] == fused.forward_compute[0]
    np.testing.assert_allclose(
        eager.backward_compute[0] - fused.backward_compute[0], extra, rtol=1e-12
    )


@pytest.mark.parametrize("tp", [1, 8])
def test_embedding_gradient_is_a_dense_table(tp: int) -> None:
    """The lookup's backward zero-fills a dense (vocab / tp x h) gradient (elem bytes per
    entry, PyTorch embedding_dense_backward_cuda) besides the per-token work, and the
    table's gradient (learned positions included) is added into the fp32 buffer (read 4 +
    elem, write 4)."""
    env = _env("bf16", tp)
    acc, m = env.system.accelerator, env.model
    e = float(env.elem[0])
    values = env.tokens[0] * m.hidden_size
    table = m.vocab_size * m.hidden_size / tp + m.seq_len * m.hidden_size
    expect = memory_time(values * 3.0 * e + values * 8.0, acc, 2) + memory_time(
        table * (e + 8.0 + e), acc, 2
    )
    np.testing.assert_allclose(embedding_cost(env).backward_compute[0], expect, rtol=1e-12)
