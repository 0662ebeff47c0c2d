"""The command line: JSON Lines output, the default scenario, exit code 2 on bad input."""

import json

from click.testing import CliRunner

from deepflow.cli import main

GOOD = """model: gpt3-175b
system: {preset: dgx-a100-80gb, num_accelerators: 1024}
strategy: {tp: 8, pp: 8, recompute: full}
training: {global_batch_size: 1536, tokens: 300e9}
"""


def test_default_scenario_prints_a_report():
    result = CliRunner().invoke(main, ["predict"])
    assert result.exit_code == 0, result.output
    assert "step time" in result.output and "where the step time goes" in result.output


def test_json_lines_one_object_per_scenario_in_order(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text(GOOD)
    b = tmp_path / "b.yaml"
    b.write_text(GOOD.replace("tp: 8, pp: 8", "tp: 8, pp: 1"))
    result = CliRunner().invoke(main, ["predict", str(a), str(b), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["scenario"] for line in lines] == ["a", "b"]
    assert lines[0]["feasible"] is True and lines[0]["time_to_train_s"] > 0
    assert lines[1]["feasible"] is False and "out of memory" in lines[1]["reason"]


def test_malformed_file_exits_2_naming_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("tp: 8,", "tpp: 8,"))
    result = CliRunner().invoke(main, ["predict", str(bad), "--json"])
    assert result.exit_code == 2
    assert "bad.yaml: strategy.tpp: unknown key; did you mean 'tp'?" in result.output
    assert "Traceback" not in result.output


def test_missing_file_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2


def test_validate_rejects_unknown_dataset():
    result = CliRunner().invoke(main, ["validate", "--dataset", "nope"])
    assert result.exit_code == 2


def test_validate_prints_rows_and_summary():
    result = CliRunner().invoke(main, ["validate", "--dataset", "megatron-2021"])
    assert result.exit_code == 0, result.output
    assert "GPT-1008B" in result.output and "mean abs error" in result.output


def test_bad_recompute_keys_exit_2_with_one_line(tmp_path):
    cases = {
        "recompute: selective, recompute_modules: [attn]": "strategy.recompute_modules.0",
        "recompute: full, recompute_modules: [mlp]": "strategy.recompute_modules",
        "recompute: selective, recompute_layers: 2": "strategy.recompute_layers",
        "recompute: full, recompute_layers: -3": "strategy.recompute_layers",
    }
    for text, key in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text(GOOD.replace("recompute: full", text))
        result = CliRunner().invoke(main, ["predict", str(bad), "--json"])
        assert result.exit_code == 2, text
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert f"bad.yaml: {key}: " in result.output and "Traceback" not in result.output
