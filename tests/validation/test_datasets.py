"""The shipped measurements load as cases whose scenarios are valid and match the sources.

Reference values are those printed in ``validation/data/*/README.md``: the implied S01 times
of Narayanan et al. 2021, Table 1, and the two vTrain rows whose upstream configs ship with
the data.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest

from deepflow.specs import preset_names, scenario_from_dict
from deepflow.validation.datasets import (
    DATASETS,
    Case,
    megatron_2020_cases,
    megatron_2021_cases,
    read_data_csv,
    vtrain_multi_cases,
    vtrain_single_cases,
)

CASES: dict[str, list[Case]] = {name: loader() for name, loader in DATASETS.items()}


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("megatron-2021", 10),
        ("megatron-2020", 12),
        ("vtrain-multi", 109),
        ("vtrain-single", 1440),
        ("simumax-b200", 24),
    ],
)
def test_row_counts(name: str, count: int) -> None:
    cases = CASES[name]
    assert len(cases) == count
    assert len({c.row_id for c in cases}) == count
    assert all(c.dataset == name for c in cases)
    assert all(c.measured_step_time_s > 0 for c in cases)


def test_loaders_return_fresh_lists() -> None:
    assert megatron_2021_cases() == CASES["megatron-2021"]
    assert megatron_2021_cases() is not megatron_2021_cases()


def test_csv_reader_strips_bom_and_crlf() -> None:
    row = read_data_csv("vtrain", "data", "ground_truth_multi.csv")[0]
    assert next(iter(row)) == "Parameters (billion)"
    assert row["iteration time (ms)"] == "3566.5"
    published = read_data_csv("published", "megatron_2020_2021.csv")
    assert len(published) == 22
    assert all(len(r) == 53 and None not in r for r in published)


# Implied iteration times of data/published/README.md (derived from the published TFLOP/s).
S01_IMPLIED_S = {
    "1": 3.53,
    "2": 3.70,
    "3": 3.70,
    "4": 9.40,
    "5": 14.45,
    "6": 16.06,
    "7": 24.82,
    "8": 37.61,
    "9": 54.08,
    "10": 102.63,
}


def test_megatron_2021_implied_times_match_readme() -> None:
    got = {c.row_id: c.measured_step_time_s for c in CASES["megatron-2021"]}
    assert got.keys() == S01_IMPLIED_S.keys()
    for row_id, expected in S01_IMPLIED_S.items():
        assert got[row_id] == pytest.approx(expected, rel=0.005), row_id


def test_megatron_2021_shapes() -> None:
    by_id = {c.row_id: c for c in CASES["megatron-2021"]}
    row6 = by_id["6"]
    assert row6.description == "GPT-76.1B 1024 GPUs tp8 pp4 vpp3 dp32 mb2 gb1792"
    strategy = row6.scenario["strategy"]
    assert strategy["pipeline_schedule"] == "interleaved"
    assert strategy["overlap_grad_reduce"] is False  # DDP impl local
    assert by_id["1"].scenario["strategy"]["overlap_grad_reduce"] is True  # DDP impl torch
    assert by_id["10"].scenario["strategy"]["pipeline_schedule"] == "1f1b"
    for case in by_id.values():
        assert case.scenario["strategy"]["recompute"] == "full"
        assert case.scenario["strategy"]["framework"] == "megatron-lm"
        assert case.to_scenario().strategy.flash_attention is False  # the profile's default
        assert case.scenario["model"]["seq_len"] == 2048


def test_megatron_2020_shapes() -> None:
    cases = CASES["megatron-2020"]
    presets = [c.scenario["system"]["preset"] for c in cases]
    assert presets.count("dgx-2") == 4
    assert presets.count("dgx-a100-40gb") == 8
    by_id = {c.row_id: c for c in cases}
    row44 = by_id["44"]
    assert row44.measured_step_time_s == 1.38
    assert row44.description == "GPT-2 style 8B (8.67B) 1024 GPUs tp8 pp1 dp128 mb16 gb2048"
    assert by_id["33"].scenario["strategy"]["micro_batch_size"] == 8  # DGX-2, batch 8
    for case in cases:
        assert case.scenario["model"]["seq_len"] == 1024
        assert case.scenario["strategy"]["recompute"] == "full"
        assert "recompute not stated" in case.notes


def test_vtrain_multi_reference_row() -> None:
    """config_val_175B_8_4_16_6.json: measured 60,519.2 ms (vtrain/README.md)."""
    matches = [
        c
        for c in CASES["vtrain-multi"]
        if c.scenario["model"]["num_layers"] == 96
        and (c.scenario["strategy"]["tp"], c.scenario["strategy"]["dp"]) == (8, 4)
        and (c.scenario["strategy"]["pp"], c.scenario["strategy"]["micro_batch_size"]) == (16, 6)
    ]
    assert len(matches) == 1
    case = matches[0]
    assert case.measured_step_time_s == pytest.approx(60.5192, rel=1e-12)
    assert case.description == "GPT-175B 512 GPUs tp8 pp16 dp4 mb6 gb1536"
    _assert_matches_vtrain_config(case, "multi/config_val_175B_8_4_16_6.json")
    assert "config_val_175B_8_4_16_6.json" in case.notes


def test_vtrain_single_reference_row() -> None:
    """Row 818 is config_val_single_0818.json: measured 227.291931 ms (vtrain/README.md)."""
    case = {c.row_id: c for c in CASES["vtrain-single"]}["0818"]
    assert case.measured_step_time_s == pytest.approx(0.227291931, rel=1e-12)
    assert case.description == "GPT-h1024-l12 2 GPUs tp1 pp2 dp1 mb4 gb16"
    _assert_matches_vtrain_config(case, "single/config_val_single_0818.json")


def _assert_matches_vtrain_config(case: Case, relative: str) -> None:
    """The case's scenario carries what vTrain's own input file says about the run."""
    node = resources.files("deepflow.validation") / "data" / "vtrain" / "config" / "validation"
    for part in relative.split("/"):
        node = node / part
    config = json.loads(node.read_text("utf-8"))
    model, system = case.scenario["model"], case.scenario["system"]
    strategy, training = case.scenario["strategy"], case.scenario["training"]
    assert system["num_accelerators"] == config["num_gpus"]
    assert strategy["tp"] == config["tensor_parallel_size"]
    assert strategy["dp"] == config["data_parallel_size"]
    assert strategy["pp"] == config["pipeline_parallel_size"]
    assert strategy["micro_batch_size"] == config["micro_batch_size"]
    assert training["global_batch_size"] == config["global_batch_size"]
    assert model["num_layers"] == config["num_layers"]
    assert model["hidden_size"] == config["hidden_size"]
    assert model["num_attention_heads"] == config["num_attention_heads"]
    assert model["seq_len"] == config["max_length"]
    assert (strategy["recompute"] == "full") is config["use_checkpoint"]
    assert case.to_scenario().strategy.overlap_grad_reduce is config["use_gradient_bucket"]
    assert strategy["pipeline_schedule"] == config["pipeline_scheduling"]
    # 800 Gb/s per node of 8 GPUs = 12.5 GB/s per GPU.
    assert config["inter_node_bandwidth"] / 8 / config["node_size"] == 12.5
    assert system["inter_node"] == {"bandwidth": "12.5 GB/s"}


def test_vtrain_single_is_one_node() -> None:
    cases = CASES["vtrain-single"]
    assert {c.scenario["system"]["num_accelerators"] for c in cases} == {2, 4, 8}
    assert all(c.scenario["model"]["seq_len"] == 1024 for c in cases)
    assert [c.row_id for c in cases] == [f"{i:04d}" for i in range(1440)]


def _groups() -> list[tuple[str, str]]:
    """(data set, system preset) pairs, so a preset not yet in the catalogue skips alone."""
    return sorted(
        {(name, c.scenario["system"]["preset"]) for name, cases in CASES.items() for c in cases}
    )


@pytest.mark.parametrize(("name", "preset"), _groups())
def test_every_case_validates_as_a_scenario(name: str, preset: str) -> None:
    if preset not in preset_names("systems"):
        pytest.skip(f"system preset {preset!r} is not yet in deepflow/specs/data/systems.yaml")
    cases = [c for c in CASES[name] if c.scenario["system"]["preset"] == preset]
    assert cases
    for case in cases:
        scenario = case.to_scenario()
        strategy = scenario.strategy
        mesh = scenario.dp * strategy.tp * strategy.pp * strategy.cp
        assert mesh == scenario.system.num_accelerators
        assert strategy.micro_batch_size * scenario.dp <= scenario.training.global_batch_size
        assert scenario.model.num_layers == case.scenario["model"]["num_layers"]


def test_megatron_2020_sections_validate_with_a_stand_in_system() -> None:
    """Model, strategy and training validate whatever the state of the system catalogue."""
    for case in CASES["megatron-2020"]:
        stand_in = dict(case.scenario)
        stand_in["system"] = {"preset": "dgx-a100-80gb", "num_accelerators": 1024}
        scenario = scenario_from_dict(stand_in)
        assert scenario.dp == case.scenario["strategy"]["dp"]


def test_vtrain_inter_node_override_applies() -> None:
    scenario = CASES["vtrain-multi"][0].to_scenario()
    assert scenario.system.inter_node.bandwidth == pytest.approx(12.5e9)
    assert scenario.system.accelerators_per_node == 8


@pytest.mark.parametrize("name", list(CASES))
def test_mesh_covers_every_gpu(name: str) -> None:
    for case in CASES[name]:
        s = case.scenario["strategy"]
        mesh = s["dp"] * s["tp"] * s["pp"] * s.get("cp", 1)
        assert mesh == case.scenario["system"]["num_accelerators"]
        mb, gb = s["micro_batch_size"], case.scenario["training"]["global_batch_size"]
        assert gb % (mb * s["dp"]) == 0, case.description


def test_loaders_do_not_share_state() -> None:
    a, b = vtrain_multi_cases()[0], vtrain_multi_cases()[0]
    a.scenario["strategy"]["tp"] = 99
    assert b.scenario["strategy"]["tp"] == 1
    assert megatron_2020_cases()[0].scenario["model"]["vocab_size"] == 51200
    assert vtrain_single_cases()[0].scenario["model"]["vocab_size"] == 50257


def test_v2_training_sets_load_with_provenance() -> None:
    fms, zoo = CASES["fms-fsdp"], CASES["megatron-moe-modelzoo"]
    assert len(fms) == 16 and len({c.row_id for c in fms}) == 16
    assert [c.row_id for c in zoo] == [
        "3", "4", "5", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18"
    ]  # fmt: skip
    by_id = {c.row_id: c.scenario for c in zoo}
    # MXFP8 rows: --fp8-recipe mxfp8 --fp8-param-gather; GB300 row on the gb300-nvl72 preset
    assert by_id["16"]["strategy"]["fp8_recipe"] == "mxfp8"
    assert by_id["16"]["strategy"]["fp8_param_gather"] is True
    assert by_id["18"]["system"]["preset"] == "gb300-nvl72"
    assert by_id["15"]["strategy"]["precision"] == "bf16"
    # "flex dispatcher, DeepEP backend" -> DeepEP's kernels; HybridEP and alltoall -> NCCL
    assert by_id["3"]["strategy"]["moe_dispatcher"] == "deepep"
    assert by_id["4"]["strategy"]["moe_dispatcher"] == "alltoall"
    assert by_id["15"]["strategy"]["moe_dispatcher"] == "alltoall"
    for name in ("fms_fsdp", "megatron_moe_modelzoo"):
        folder = resources.files("deepflow.validation") / "data" / "v2" / name
        assert (folder / "README.md").is_file()
        assert any(p.name.startswith("LICENSE") for p in folder.iterdir())
    for case in fms + zoo:
        assert case.notes and case.measured_step_time_s > 0
        case.to_scenario()


def test_fms_fsdp_step_times_from_tokens_per_gpu() -> None:
    by_id = {c.row_id: c for c in CASES["fms-fsdp"]}
    # 7B HSDP on 128 A100: 3,700 tokens/s/GPU, global batch 2 x 128 sequences of 4,096
    assert by_id["1"].measured_step_time_s == pytest.approx(256 * 4096 / (128 * 3700))
    strategy = by_id["1"].scenario["strategy"]
    assert strategy["zero"] == 3 and strategy["shard_degree"] == 8
    assert "shard_degree" not in by_id["3"].scenario["strategy"]  # FULL_SHARD


def test_megatron_core_flops_reproduce_a_row_with_both_metrics() -> None:
    # Row 3 prints both 17.6 s and 276 TFLOP/s per GPU on 256 GPUs
    from deepflow.validation.datasets import megatron_core_flops

    case = next(c for c in CASES["megatron-moe-modelzoo"] if c.row_id == "3")
    model = case.to_scenario().model
    implied = megatron_core_flops(model, 2048, 4096) / (276e12 * 256)
    assert implied == pytest.approx(17.6, rel=0.005)


def test_vtrain_node_latency_is_fitted_to_its_all_reduce_tables() -> None:
    """The vTrain rows' scale-up step latency is the fit to vTrain's A100 all-reduce
    tables (:func:`ring_step_latency`), which describes those tables better than the
    preset's generic 2 us; the fp16 runs keep 16-bit gradients."""
    import numpy as np

    from deepflow.network import Collective, Ring
    from deepflow.validation.nccl import GPU_COUNTS, load_table, ring_step_latency

    latency = ring_step_latency("a100", 300e9, 0.76)
    assert latency == pytest.approx(9.6e-6)

    def error(alpha: float) -> float:
        out = []
        for n in GPU_COUNTS:
            sizes, times = load_table("a100", n)
            t = Ring().closed_form(Collective.ALL_REDUCE, sizes, n, 300e9 * 0.76, alpha)
            out.append(np.abs(np.log(t / times)))
        return float(np.mean(np.concatenate(out)))

    assert error(latency) < error(2e-6)
    assert error(latency) <= min(error(latency - 1e-6), error(latency + 1e-6))
    for loader in (vtrain_single_cases, vtrain_multi_cases):
        case = loader()[0]
        sc = case.to_scenario()
        assert sc.system.intra_node.latency == pytest.approx(latency)
        assert sc.strategy.fp32_main_grads is False
        assert "9.6 us" in case.notes
