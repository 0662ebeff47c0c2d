"""Hand-checked parameter and FLOP counts (Narayanan et al. 2021, sec. 5.1 and eq. 3)."""

import pytest

from deepflow.specs import model_from
from deepflow.workload import model_flops_per_step, parameter_count


def test_gpt3_175b_parameter_count():
    # P = 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h)) = 174.6 B, plus the final LayerNorm (2h)
    # that the closed form leaves out
    layers, h, V, s = 96, 12288, 51200, 2048
    closed_form = 12 * layers * h**2 * (1 + 13 / (12 * h) + (V + s) / (12 * layers * h))
    count = parameter_count(model_from("gpt3-175b")).total
    assert count == pytest.approx(closed_form + 2 * h, rel=1e-12)
    assert count / 1e9 == pytest.approx(174.6, abs=0.05)


@pytest.mark.parametrize("name", ["gpt3-175b", "megatron-gpt-1t"])
def test_model_flops_match_narayanan_eq3(name):
    # eq. 3 counts 96 B s l h^2 (1 + s/(6h) + V/(16 l h)) with the recomputed forward;
    # model FLOPs (no recomputation) are 3/4 of the transformer part plus the 6 B s h V head
    model = model_from(name)
    B, s, layers, h, V = 1536, model.seq_len, model.num_layers, model.hidden_size, model.vocab_size
    expected = 72 * B * s * layers * h**2 * (1 + s / (6 * h) + V / (12 * layers * h))
    assert model_flops_per_step(model, B) == pytest.approx(expected, rel=1e-12)


def test_llama3_70b_parameter_count_is_published_size():
    count = parameter_count(model_from("llama3-70b")).total
    assert count / 1e9 == pytest.approx(70.6, rel=0.01)


def test_mixtral_total_parameters():
    count = parameter_count(model_from("mixtral-8x7b")).total
    assert count / 1e9 == pytest.approx(46.7, rel=0.01)


def test_deepseek_v3_total_parameters():
    # 671 B main model (technical report, sec. 4.2) plus the 11.6 B multi-token-prediction
    # module (its layer, norms and projection; the released checkpoint's 685 B also count
    # the module's copies of the embedding and head)
    counts = parameter_count(model_from("deepseek-v3"))
    assert (counts.total - counts.mtp) / 1e9 == pytest.approx(671, rel=0.005)
    assert counts.mtp / 1e9 == pytest.approx(11.6, rel=0.01)
