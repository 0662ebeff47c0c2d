"""``deepflow presets``: every built-in preset listed with its numbers and sources."""

import json

import pytest
from click.testing import CliRunner

from deepflow.cli import main
from deepflow.specs import accelerator_from, model_from, preset_names, system_from


def _json_rows(*args):
    result = CliRunner().invoke(main, ["presets", *args, "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


@pytest.mark.parametrize("kind", ["accelerators", "systems", "models"])
def test_json_lists_every_preset_with_sources(kind):
    rows = _json_rows(kind)
    assert [r["name"] for r in rows] == preset_names(kind)
    assert all(r["kind"] == kind and r["sources"] for r in rows)


def test_json_numbers_are_the_validated_specs():
    acc = {r["name"]: r for r in _json_rows("accelerators")}
    h100 = accelerator_from("h100-sxm5-80gb")
    assert acc["h100-sxm5-80gb"]["peak_bf16_flops"] == h100.peak_flops.bf16
    assert acc["h100-sxm5-80gb"]["memory_bytes"] == h100.memory_capacity
    systems = {r["name"]: r for r in _json_rows("systems")}
    assert (
        systems["dgx-h100"]["inter_node_bandwidth"] == system_from("dgx-h100").inter_node.bandwidth
    )
    models = {r["name"]: r for r in _json_rows("models")}
    assert models["mixtral-8x7b"]["num_experts"] == model_from("mixtral-8x7b").moe.num_experts
    # GPT-3 175B: Brown et al. 2020, Table 2.1
    assert models["gpt3-175b"]["parameters"] == pytest.approx(175e9, rel=0.01)


def test_no_kind_lists_all_three():
    kinds = {r["kind"] for r in _json_rows()}
    assert kinds == {"accelerators", "systems", "models"}


def test_text_table_fits_80_columns_without_cutting():
    result = CliRunner().invoke(main, ["presets"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())
    for kind in ("accelerators", "systems", "models"):
        for name in preset_names(kind):
            assert name in result.output
    assert "989.4" in result.output  # H100 dense bf16 TFLOP/s


def test_unknown_kind_exits_2():
    result = CliRunner().invoke(main, ["presets", "gpus"])
    assert result.exit_code == 2
