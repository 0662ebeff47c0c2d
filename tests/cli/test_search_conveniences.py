"""``deepflow search``: --save-best writes a scenario predict reads back to the same
result; time to train in the table when training.tokens is set; identical results once."""

import json

import pytest
import yaml
from click.testing import CliRunner

from deepflow.cli import main
from deepflow.estimate import predict
from deepflow.search import Candidate, equivalent_groups
from deepflow.specs import load_scenario
from deepflow.units import format_time

SMALL = """model: megatron-gpt-1.7b
system: {preset: dgx-a100-80gb, num_accelerators: 8}
strategy: {tp: 1}
training: {global_batch_size: 64, tokens: 1e9}
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def _search(*args, columns="200"):
    return CliRunner().invoke(main, ["search", *map(str, args)], env={"COLUMNS": columns})


def test_save_best_is_a_complete_scenario_with_the_same_prediction(small, tmp_path):
    best = tmp_path / "best.yaml"
    result = _search(small, "--top", "3", "--fix", "zero=1,2", "--save-best", best, "--json")
    assert result.exit_code == 0, result.output
    top = json.loads(result.output)["top"][0]
    data = yaml.safe_load(best.read_text())
    assert set(data) == {"model", "system", "strategy", "training"}
    assert data["strategy"]["micro_batch_size"] == top["strategy"]["micro_batch_size"]
    # a file that stands alone: no preset names to resolve, the same numbers back
    assert "preset" not in data["system"] and isinstance(data["model"], dict)
    prediction = predict(load_scenario(best))
    assert prediction.feasible
    assert prediction.step_time_s == top["step_time_s"]
    assert prediction.peak_memory_bytes == top["peak_memory_bytes"]


def test_save_best_checks_the_destination_before_searching(small, tmp_path):
    result = _search(small, "--save-best", tmp_path / "missing" / "best.yaml")
    assert result.exit_code == 2 and "--save-best" in result.output
    result = _search(small, "--save-best", tmp_path / "best.txt")
    assert result.exit_code == 2 and "suffix" in result.output


def test_time_to_train_column_only_with_tokens(small, tmp_path):
    best = tmp_path / "best.yaml"
    result = _search(small, "--top", "2", "--save-best", best)
    assert result.exit_code == 0, result.output
    assert "time to train" in result.output
    # the same number predict gives the best strategy (one definition: time_to_train_s)
    expected = predict(load_scenario(best)).time_to_train_s
    assert expected is not None and format_time(expected) in result.output
    no_tokens = tmp_path / "no_tokens.yaml"
    no_tokens.write_text(SMALL.replace(", tokens: 1e9", ""))
    result = _search(no_tokens, "--top", "2")
    assert result.exit_code == 0 and "time to train" not in result.output


def test_identical_results_are_shown_once_with_the_others_named(small):
    result = _search(small, "--top", "6")
    assert result.exit_code == 0, result.output
    # with one pipeline stage the schedule does not act: gpipe and 1f1b tie exactly
    assert "1-4" in result.output and "= pipeline_schedule 1f1b" in result.output
    rows = [line for line in result.output.splitlines() if "dp8 tp1 pp1 zero1 mbs8" in line]
    assert len(rows) == 1


def _candidate(step, memory, key):
    return Candidate(8, {"dp": key}, step, memory, 0.5, None, None, (0, key))


def test_equivalent_groups_keep_order_and_split_on_any_metric():
    a, b, c, d = (
        _candidate(1.0, 5.0, 0),
        _candidate(1.0, 6.0, 1),
        _candidate(1.0, 5.0, 2),
        _candidate(2.0, 5.0, 3),
    )
    groups = equivalent_groups([a, b, c, d])
    assert groups == [[a, c], [b], [d]]
    assert [x for g in groups for x in g] != [] and sum(map(len, groups)) == 4
