"""Operator graphs: published parameter counts and hand-checked FLOPs."""

import pytest

from deepflow.workload.cnn import alexnet, inception_v3, resnet101
from deepflow.workload.opgraph import DimKind
from deepflow.workload.rnn import lstm_lm, nmt, rnnlm, rnntc


def test_alexnet_parameters_and_flops() -> None:
    g = alexnet(1)
    # torchvision alexnet (Krizhevsky 2014): 61,100,840 parameters
    assert g.parameter_count == 61_100_840
    conv1 = g.op("conv1")
    # 3 -> 64 channels, 11x11, stride 4, pad 2 on 224x224: 55x55 outputs,
    # 2 * 55 * 55 * 64 * (3 * 11 * 11) FLOPs
    assert conv1.shape == (1, 55, 55, 64)
    assert conv1.flops_fwd == 2 * 55 * 55 * 64 * 3 * 121
    fc6 = g.op("fc6")
    assert fc6.params == 9216 * 4096 + 4096
    assert fc6.flops_fwd == 2 * 9216 * 4096
    # 0.714 GMAC forward in all (torchvision's reference count)
    assert g.flops_fwd == pytest.approx(2 * 0.7146e9, rel=2e-3)


def test_resnet101_parameters_and_flops() -> None:
    g = resnet101(2)
    assert g.parameter_count == 44_549_160  # He et al. 2016; torchvision
    # 7.8 GMAC per image (He et al. 2016, Table 1: 7.6e9 FLOPs counted as multiply-adds)
    assert g.flops_fwd / 2 == pytest.approx(2 * 7.83e9, rel=1e-2)
    assert g.op("conv1").flops_fwd == 2 * 2 * 112 * 112 * 64 * 3 * 49
    assert g.op("fc").dims[-1].kind is DimKind.PARAMETER


def test_inception_v3_parameters() -> None:
    g = inception_v3(1)
    assert g.parameter_count == 23_834_568  # torchvision inception_v3 without aux logits
    assert g.op("Mixed_7c.concat").shape == (1, 8, 8, 2048)


@pytest.mark.parametrize("build", [rnnlm, rnntc, nmt, lstm_lm])
def test_rnn_graphs_are_topological_and_share_weights(build) -> None:
    g = build(batch=64) if build is not lstm_lm else build(batch=64, hidden=256, vocab=1024)
    for i, op in enumerate(g.ops):
        assert all(e.src < i for e in op.inputs)
    lstm_ops = [op for op in g.ops if op.kind.value == "lstm"]
    assert len({op.weight_key for op in lstm_ops}) < len(lstm_ops)


def test_rnnlm_parameters() -> None:
    g = rnnlm(batch=64)
    h, v = 1500, 10000
    lstm = 2 * (4 * h * (h + h) + 8 * h)
    assert g.parameter_count == v * h + lstm + h * v + v
