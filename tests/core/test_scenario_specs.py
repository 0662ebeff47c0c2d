"""Scenario loading: presets with overrides, defaults, and errors that name the key path."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.errors import ConfigError
from deepflow.specs import StrategySpec, load_scenario, model_from, scenario_from_dict
from deepflow.specs.presets import preset_names

BASE = {
    "model": "gpt3-175b",
    "system": {"preset": "dgx-a100-80gb", "num_accelerators": 1024},
    "strategy": {"tp": 8, "pp": 8},
    "training": {"global_batch_size": 1536, "tokens": "300e9"},
}


def with_(section, **changes):
    data = json.loads(json.dumps(BASE))
    data[section] = {**data[section], **changes} if isinstance(data[section], dict) else changes
    return data


def test_auto_dp_fills_the_cluster():
    scenario = scenario_from_dict(BASE)
    assert scenario.strategy.dp == 1024 // 64
    assert scenario.training.tokens == 300e9


def test_preset_override_merges_nested_fields():
    data = with_("system", intra_node={"bandwidth": "100 GB/s"})
    system = scenario_from_dict(data).system
    assert system.intra_node.bandwidth == 100e9
    assert system.intra_node.latency == 2e-6  # kept from the preset


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        (with_("strategy", tpp=8), "strategy.tpp", "did you mean 'tp'"),
        (with_("strategy", recompute="partial"), "strategy.recompute", "selective"),
        (with_("strategy", zero=4), "strategy.zero", "less than or equal to 3"),
        (
            with_("system", intra_node={"bandwidth": "3 GQ/s"}),
            "system.intra_node.bandwidth",
            "unknown unit",
        ),
        ({**BASE, "model": "gpt3-175bb"}, "model", "did you mean 'gpt3-175b'"),
        ({**BASE, "training": {}}, "training.global_batch_size", "missing"),
        ({**BASE, "modle": {}}, "modle", "did you mean 'model'"),
        ({**BASE, "model": {"preset": "gpt3-175b", "num_kv_heads": 7}}, "model", "divide"),
    ],
)
def test_errors_name_the_key_path(data, path, message):
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(data)
    assert info.value.path == path
    assert message in str(info.value)


def test_load_scenario_attributes_errors_to_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "model: gpt3-175b\nsystem: dgx-a100-80gb\nstrategy: {tpp: 3}\n"
        "training: {global_batch_size: 8}\n"
    )
    with pytest.raises(ConfigError, match=r"bad\.yaml: strategy\.tpp: unknown key"):
        load_scenario(path)


def test_every_model_preset_builds():
    for name in preset_names("models"):
        model = model_from(name)
        assert model.sources, name


strategy_dicts = st.fixed_dictionaries(
    {
        "dp": st.integers(1, 64),
        "tp": st.sampled_from([1, 2, 4, 8]),
        "pp": st.integers(1, 16),
        "vpp": st.integers(1, 4),
        "cp": st.sampled_from([1, 2]),
        "sequence_parallel": st.booleans(),
        "zero": st.integers(0, 3),
        "recompute": st.sampled_from(["none", "selective", "full"]),
        "micro_batch_size": st.integers(1, 8),
        "precision": st.sampled_from(["fp32", "tf32", "fp16", "bf16", "fp8"]),
        "pipeline_schedule": st.sampled_from(["gpipe", "1f1b", "interleaved", "zero-bubble"]),
    }
)


@settings(max_examples=50)
@given(strategy_dicts)
def test_strategy_round_trips_through_dicts(data):
    spec = StrategySpec.model_validate(data)
    assert StrategySpec.model_validate(spec.model_dump()) == spec
