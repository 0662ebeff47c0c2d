"""Hugging Face config.json files as model specs (specs/hf.py), the scenario key
``model.hf_config`` and ``deepflow predict --hf-config``."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.cli import main
from deepflow.errors import ConfigError
from deepflow.specs import load_scenario, model_from
from deepflow.specs.hf import ARCHITECTURES, hf_model_fields
from deepflow.workload.transformer import parameter_count

HF = Path(__file__).parents[1] / "fixtures" / "hf"
SHAPE = (
    "num_layers",
    "hidden_size",
    "num_attention_heads",
    "num_kv_heads",
    "head_dim",
    "ffn_hidden_size",
    "ffn_type",
    "vocab_size",
    "tie_embeddings",
    "learned_position_embeddings",
    "moe",
    "mla",
)


def _hf(name: str):
    return model_from({"hf_config": str(HF / f"{name}.json")})


@pytest.mark.parametrize(
    "fixture, preset",
    [
        ("llama3-8b", "llama3-8b"),
        ("mixtral-8x7b", "mixtral-8x7b"),
        ("qwen3-30b-a3b", "qwen3-30b-a3b"),
        ("deepseek-v3", "deepseek-v3"),
    ],
)
def test_config_gives_the_presets_shape(fixture, preset):
    """The released config.json and the preset (from the paper) describe the same model."""
    hf, ref = _hf(fixture), model_from(preset)
    for field in SHAPE:
        assert getattr(hf, field) == getattr(ref, field), field
    assert parameter_count(hf).total == parameter_count(ref).total


@pytest.mark.parametrize(
    "fixture, params, rel",
    [
        ("gpt2", 124.44e6, 0.001),  # GPT-2 small: 124,439,808 with the tied output layer
        ("gpt-neox-20b", 20.55e9, 0.01),  # Black et al. 2022, Table 1: 20,554,567,680
        ("gemma-7b", 8.54e9, 0.01),  # Gemma report, Table 2: 8.54 B with embeddings
        ("mistral-7b-v0.1", 7.24e9, 0.01),  # Mistral 7B model card: 7.24 B
        ("qwen2-7b-instruct", 7.62e9, 0.01),  # Qwen2-7B: 7.6 B (qkv biases not counted)
    ],
)
def test_parameter_count_matches_the_published_size(fixture, params, rel):
    assert parameter_count(_hf(fixture)).total == pytest.approx(params, rel=rel)


def test_architecture_specifics():
    gpt2 = _hf("gpt2")
    assert gpt2.learned_position_embeddings and gpt2.tie_embeddings
    assert gpt2.ffn_hidden_size == 4 * 768 and gpt2.seq_len == 1024
    gemma = _hf("gemma-7b")
    assert gemma.head_dim == 256 and gemma.tie_embeddings  # GemmaConfig default: tied
    assert _hf("gpt-neox-20b").ffn_type.value == "gelu"
    qwen = _hf("qwen3-30b-a3b")
    assert qwen.num_moe_layers == 48 and qwen.name == "qwen3-30b-a3b"


def test_qwen3_moe_sparse_step_and_dense_layers():
    cfg = json.loads((HF / "qwen3-30b-a3b.json").read_text())
    # transformers Qwen3MoeDecoderLayer: MoE when (i + 1) % step == 0 and i not in mlp_only_layers
    for step, dense in [(2, []), (3, []), (1, [0, 1]), (2, [1])]:
        fields = hf_model_fields({**cfg, "decoder_sparse_step": step, "mlp_only_layers": dense})
        spec = model_from({**fields, "sources": []})
        expected = [(i + 1) % step == 0 and i not in dense for i in range(48)]
        assert [spec.is_moe_layer(i) for i in range(48)] == expected, (step, dense)
    with pytest.raises(ConfigError, match="mlp_only_layers"):
        hf_model_fields({**cfg, "mlp_only_layers": [5]})


def test_scenario_key_is_relative_to_the_scenario_file(tmp_path):
    shutil.copy(HF / "llama3-8b.json", tmp_path / "config.json")
    path = tmp_path / "job.yaml"
    path.write_text(
        "model: {hf_config: config.json, seq_len: 4096}\n"
        "system: {preset: dgx-h100, num_accelerators: 64}\n"
        "strategy: {tp: 8}\ntraining: {global_batch_size: 256}\n"
    )
    scenario = load_scenario(path)
    assert scenario.model.seq_len == 4096 and scenario.model.num_kv_heads == 8
    assert scenario.model.name == f"{tmp_path.name}*"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_type": "bert"}, "model_type: unsupported architecture 'bert'"),
        ({"num_hidden_layers": None}, "num_hidden_layers: missing required key"),
        ({"hidden_size": "4096"}, "hidden_size: must be an integer"),
        ({"num_hidden_layers": 10**9}, "num_hidden_layers: Input should be less than"),
        ({"num_key_value_heads": 7}, "num_kv_heads=7 must divide"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path, change, message):
    cfg = json.loads((HF / "llama3-8b.json").read_text())
    cfg.update(change)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    result = CliRunner().invoke(main, ["predict", "--hf-config", str(path), "--json"])
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_predict_hf_config_replaces_the_model(tmp_path):
    result = CliRunner().invoke(
        main, ["predict", "--hf-config", str(HF / "llama3-8b.json"), "--seq-len", "4096", "--json"]
    )
    assert result.exit_code == 0, result.output
    line = json.loads(result.output)
    preset = CliRunner().invoke(main, ["predict", "--json"])
    assert line["model_flops_per_step"] != json.loads(preset.output)["model_flops_per_step"]
    assert line["feasible"] in (True, False)


def test_seq_len_without_hf_config_exits_2():
    result = CliRunner().invoke(main, ["predict", "--seq-len", "4096"])
    assert result.exit_code == 2 and "--seq-len" in result.output


def test_preset_and_hf_config_together_is_an_error():
    with pytest.raises(ConfigError, match="either preset or hf_config"):
        model_from({"preset": "llama3-8b", "hf_config": str(HF / "llama3-8b.json")})


def test_every_supported_architecture_has_a_fixture():
    kinds = {json.loads(p.read_text())["model_type"] for p in HF.glob("*.json")}
    assert set(ARCHITECTURES) - kinds == {"qwen3"}  # qwen3 dense reads like qwen2


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["model_type", "hidden_size", "num_hidden_layers", "n_embd", "head_dim"]),
        st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.text(max_size=8)),
    )
)
def test_arbitrary_configs_give_a_spec_or_a_config_error(cfg):
    """No config, however malformed, gets past the reader with anything but a ConfigError."""
    try:
        fields = hf_model_fields(cfg)
        model_from({**fields, "sources": []})
    except ConfigError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(0, 320), st.integers(1, 9))
def test_moe_layer_count_closed_form_counts_the_layers(layers, first, freq):
    spec = model_from("mixtral-8x7b").model_copy(
        update={
            "num_layers": layers,
            "moe": model_from("mixtral-8x7b").moe.model_copy(
                update={"first_dense_layers": first, "layer_frequency": freq}
            ),
        }
    )
    assert spec.num_moe_layers == sum(spec.is_moe_layer(i) for i in range(layers))
