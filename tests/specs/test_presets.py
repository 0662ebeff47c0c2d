"""The preset catalogues: every name of spec/scenario.md exists, validates and cites sources."""

from __future__ import annotations

import itertools

import pytest

from deepflow.specs import (
    AcceleratorSpec,
    ModelSpec,
    Precision,
    SystemSpec,
    accelerator_from,
    model_from,
    preset_names,
    scenario_from_dict,
    system_from,
)

# spec/scenario.md, "Preset names that must exist".
REQUIRED_ACCELERATORS = [
    "v100-sxm2-32gb",
    "a100-sxm4-40gb",
    "a100-sxm4-80gb",
    "h100-sxm5-80gb",
    "h800-sxm5-80gb",
    "h200-sxm-141gb",
    "b200",
    "gb200",
    "mi300x",
    "tpu-v4",
    "tpu-v5e",
    "tpu-v5p",
]
REQUIRED_SYSTEMS = [
    "dgx-v100",
    "dgx-a100-40gb",
    "dgx-a100-80gb",
    "dgx-h100",
    "dgx-h200",
    "dgx-b200",
    "gb200-nvl72",
    "tpu-v4-pod",
    "tpu-v5e-pod",
    "tpu-v5p-pod",
    "dgx-2",  # used by the Megatron-LM 2020 validation rows
]
MEGATRON_2021 = [
    "megatron-gpt-1.7b",
    "megatron-gpt-3.6b",
    "megatron-gpt-7.5b",
    "megatron-gpt-18.4b",
    "megatron-gpt-39.1b",
    "megatron-gpt-76.1b",
    "megatron-gpt-145.6b",
    "megatron-gpt-310.1b",
    "megatron-gpt-529.6b",
    "megatron-gpt-1t",
]
REQUIRED_MODELS = [
    "gpt3-175b",
    "llama2-7b",
    "llama2-70b",
    "llama3-8b",
    "llama3-70b",
    "llama3.1-405b",
    "mixtral-8x7b",
    "mixtral-8x22b",
    "deepseek-v3",
    *MEGATRON_2021,
]

ACCELERATORS = preset_names("accelerators")
SYSTEMS = preset_names("systems")
MODELS = preset_names("models")


@pytest.mark.parametrize(
    ("kind", "required"),
    [
        ("accelerators", REQUIRED_ACCELERATORS),
        ("systems", REQUIRED_SYSTEMS),
        ("models", REQUIRED_MODELS),
    ],
)
def test_required_presets_exist(kind: str, required: list[str]) -> None:
    missing = sorted(set(required) - set(preset_names(kind)))
    assert not missing, f"missing {kind} presets: {missing}"


# --- accelerators ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ACCELERATORS)
def test_accelerator_preset_validates_and_cites(name: str) -> None:
    acc = accelerator_from(name)
    assert isinstance(acc, AcceleratorSpec)
    assert acc.name == name
    assert acc.sources and all(s.strip() for s in acc.sources)
    assert acc.efficiency.source.strip()
    assert acc.efficiency.source != "generic defaults"
    assert acc.memory_capacity > 0
    assert acc.memory_bandwidth > 0
    assert acc.scale_up_bandwidth > 0
    assert acc.peak(Precision.BF16) > 0 or acc.peak(Precision.FP16) > 0


@pytest.mark.parametrize("name", ACCELERATORS)
def test_peak_rates_are_ordered(name: str) -> None:
    """Lower precisions are never slower on the matrix units (0 = unsupported)."""
    peak = accelerator_from(name).peak_flops
    half = max(peak.fp16, peak.bf16)
    assert peak.fp32 <= half
    if peak.tf32:
        assert peak.fp32 <= peak.tf32 <= half
    if peak.fp8:
        assert peak.fp8 >= half


@pytest.mark.parametrize(
    ("name", "precision", "expected"),
    [
        ("a100-sxm4-80gb", Precision.BF16, 312e12),
        ("a100-sxm4-40gb", Precision.TF32, 156e12),
        ("a100-sxm4-80gb", Precision.FP32, 19.5e12),
        ("h100-sxm5-80gb", Precision.BF16, 989e12),
        ("h100-sxm5-80gb", Precision.FP8, 1979e12),
        ("h200-sxm-141gb", Precision.BF16, 989e12),
        ("b200", Precision.BF16, 2250e12),
        ("b200", Precision.FP8, 4500e12),
        ("gb200", Precision.BF16, 2500e12),
        ("mi300x", Precision.BF16, 1307.4e12),
        ("mi300x", Precision.FP8, 2614.9e12),
        ("tpu-v4", Precision.BF16, 275e12),
        ("tpu-v5e", Precision.BF16, 197e12),
        ("tpu-v5p", Precision.BF16, 459e12),
        ("v100-sxm2-32gb", Precision.FP16, 125e12),
        ("v100-sxm2-32gb", Precision.FP32, 15.7e12),
    ],
)
def test_published_peak_flops(name: str, precision: Precision, expected: float) -> None:
    assert accelerator_from(name).peak(precision) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    ("name", "precision"),
    [
        ("v100-sxm2-32gb", Precision.BF16),
        ("v100-sxm2-32gb", Precision.TF32),
        ("v100-sxm2-32gb", Precision.FP8),
        ("a100-sxm4-80gb", Precision.FP8),
        ("tpu-v4", Precision.FP8),
        ("tpu-v5p", Precision.FP8),
    ],
)
def test_unsupported_precisions_are_zero(name: str, precision: Precision) -> None:
    assert accelerator_from(name).peak(precision) == 0


@pytest.mark.parametrize(
    ("name", "memory", "bandwidth"),
    [
        ("a100-sxm4-40gb", 40 * 2**30, 1555e9),
        ("a100-sxm4-80gb", 80 * 2**30, 2039e9),
        ("h100-sxm5-80gb", 80 * 2**30, 3350e9),
        ("h200-sxm-141gb", 141e9, 4800e9),
        ("mi300x", 192e9, 5300e9),
        ("tpu-v5p", 95e9, 2765e9),
    ],
)
def test_published_memory(name: str, memory: float, bandwidth: float) -> None:
    acc = accelerator_from(name)
    assert acc.memory_capacity == pytest.approx(memory)
    assert acc.memory_bandwidth == pytest.approx(bandwidth)


@pytest.mark.parametrize(
    ("name", "per_direction"),
    [
        ("v100-sxm2-32gb", 150e9),  # NVLink 2: 300 GB/s total
        ("a100-sxm4-80gb", 300e9),  # NVLink 3: 600 GB/s total
        ("h100-sxm5-80gb", 450e9),  # NVLink 4: 900 GB/s total
        ("h800-sxm5-80gb", 200e9),  # NVLink 4, 8 links: 400 GB/s total
        ("h200-sxm-141gb", 450e9),
        ("b200", 900e9),  # NVLink 5: 1.8 TB/s total
        ("gb200", 900e9),
        ("mi300x", 448e9),  # Infinity Fabric: 896 GB/s total
    ],
)
def test_scale_up_bandwidth_is_per_direction(name: str, per_direction: float) -> None:
    assert accelerator_from(name).scale_up_bandwidth == pytest.approx(per_direction)


# --- systems -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SYSTEMS)
def test_system_preset_validates_and_cites(name: str) -> None:
    system = system_from(name)
    assert isinstance(system, SystemSpec)
    assert system.sources and all(s.strip() for s in system.sources)
    assert system.accelerator.name in ACCELERATORS
    assert system.num_accelerators == system.accelerators_per_node
    assert system.scale_up_size >= system.accelerators_per_node
    for link in (system.intra_node, system.inter_node):
        assert link.bandwidth > 0
        assert link.latency > 0
        assert link.efficiency_source.strip()
    assert system.intra_node.bandwidth > system.inter_node.bandwidth


@pytest.mark.parametrize("name", SYSTEMS)
def test_system_presets_leave_size_to_the_scenario(name: str) -> None:
    from deepflow.specs.presets import preset_data

    assert "num_accelerators" not in preset_data("systems", name)


@pytest.mark.parametrize(
    ("name", "per_node", "scale_up", "intra", "inter"),
    [
        ("dgx-a100-80gb", 8, 8, 300e9, 25e9),
        ("dgx-a100-40gb", 8, 8, 300e9, 25e9),
        ("dgx-h100", 8, 8, 450e9, 50e9),
        ("dgx-b200", 8, 8, 900e9, 50e9),
        ("dgx-2", 16, 16, 150e9, 6.25e9),
        ("gb200-nvl72", 4, 72, 900e9, 50e9),
        ("tpu-v4-pod", 4, 4096, 300e9, 6.25e9),
        ("tpu-v5e-pod", 4, 256, 200e9, 6.25e9),
        ("tpu-v5p-pod", 4, 8960, 600e9, 6.25e9),
    ],
)
def test_system_topology(
    name: str, per_node: int, scale_up: int, intra: float, inter: float
) -> None:
    system = system_from(name)
    assert system.accelerators_per_node == per_node
    assert system.scale_up_size == scale_up
    assert system.intra_node.bandwidth == pytest.approx(intra)
    assert system.inter_node.bandwidth == pytest.approx(inter)


def test_nvlink_systems_match_their_accelerator() -> None:
    """On NVLink systems the scale-up link is the accelerator's NVLink rate."""
    for name in SYSTEMS:
        system = system_from(name)
        if system.accelerator.vendor == "NVIDIA":
            assert system.intra_node.bandwidth == system.accelerator.scale_up_bandwidth, name


def test_system_override_keeps_preset_fields() -> None:
    system = system_from({"preset": "dgx-h100", "num_accelerators": 1024})
    assert system.num_accelerators == 1024
    assert system.num_nodes == 128
    assert system.accelerator.name == "h100-sxm5-80gb"


# --- models ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_model_preset_validates_and_cites(name: str) -> None:
    model = model_from(name)
    assert isinstance(model, ModelSpec)
    assert model.sources and all(s.strip() for s in model.sources)
    assert model.num_attention_heads % model.num_kv_heads == 0


def _dense_params(model: ModelSpec) -> float:
    """Parameters of a dense GPT (Narayanan et al. 2021, sec. 5.1, tied embeddings)."""
    layer = 12 * model.hidden_size**2 + 13 * model.hidden_size
    return model.num_layers * layer + (model.vocab_size + model.seq_len) * model.hidden_size


@pytest.mark.parametrize(
    ("name", "billions"),
    [
        ("megatron-gpt-1.7b", 1.7),
        ("megatron-gpt-3.6b", 3.6),
        ("megatron-gpt-7.5b", 7.5),
        ("megatron-gpt-18.4b", 18.4),
        ("megatron-gpt-39.1b", 39.1),
        ("megatron-gpt-76.1b", 76.1),
        ("megatron-gpt-145.6b", 145.6),
        ("megatron-gpt-310.1b", 310.1),
        ("megatron-gpt-529.6b", 529.6),
        ("megatron-gpt-1t", 1008.0),
    ],
)
def test_megatron_shapes_reproduce_table_1_sizes(name: str, billions: float) -> None:
    model = model_from(name)
    assert model.ffn_hidden_size == 4 * model.hidden_size
    assert model.learned_position_embeddings
    assert model.tie_embeddings
    assert _dense_params(model) / 1e9 == pytest.approx(billions, rel=0.03)


def _llama_params(model: ModelSpec) -> float:
    """Parameters of a Llama-style model: GQA attention, SwiGLU MLP, untied embeddings."""
    h, d = model.hidden_size, model.head_dim
    attention = 2 * h * model.num_attention_heads * d + 2 * h * model.num_kv_heads * d
    mlp = 3 * h * model.ffn_hidden_size
    return model.num_layers * (attention + mlp + 2 * h) + 2 * model.vocab_size * h + h


@pytest.mark.parametrize(
    ("name", "billions"),
    [
        ("llama2-7b", 6.74),
        ("llama2-70b", 68.98),
        ("llama3-8b", 8.03),
        ("llama3-70b", 70.55),
        ("llama3.1-405b", 405.85),
    ],
)
def test_llama_shapes_reproduce_released_sizes(name: str, billions: float) -> None:
    model = model_from(name)
    assert model.ffn_type.value == "swiglu"
    assert not model.learned_position_embeddings
    assert not model.tie_embeddings
    assert _llama_params(model) / 1e9 == pytest.approx(billions, rel=0.01)


def test_moe_presets() -> None:
    mixtral = model_from("mixtral-8x7b")
    assert mixtral.moe is not None
    assert (mixtral.moe.num_experts, mixtral.moe.top_k) == (8, 2)
    assert mixtral.num_moe_layers == mixtral.num_layers
    deepseek = model_from("deepseek-v3")
    assert deepseek.moe is not None and deepseek.mla is not None
    assert (deepseek.moe.num_experts, deepseek.moe.top_k) == (256, 8)
    assert deepseek.moe.num_shared_experts == 1
    assert deepseek.num_moe_layers == 58
    assert deepseek.mla.kv_lora_rank == 512


# --- scenarios -------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "system"), list(itertools.product(MODELS, SYSTEMS)))
def test_every_model_on_every_system_builds_a_scenario(model: str, system: str) -> None:
    scenario = scenario_from_dict(
        {"model": model, "system": system, "training": {"global_batch_size": 8}}
    )
    assert scenario.model.name == model
    assert scenario.system.name == system
    assert scenario.dp == scenario.system.num_accelerators
