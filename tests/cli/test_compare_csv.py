"""``deepflow compare`` side by side, and ``--csv`` on predict, compare, search, validate."""

import csv
import io
import json
import math

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from deepflow.cli import main
from deepflow.report.tabular import csv_text, flatten

A = """model: gpt3-175b
system: {preset: dgx-a100-80gb, num_accelerators: 1024}
strategy: {tp: 8, pp: 8, recompute: selective, sequence_parallel: true}
training: {global_batch_size: 1536, tokens: 300e9}
"""


@pytest.fixture
def files(tmp_path):
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    a.write_text(A)
    b.write_text(A.replace("tp: 8, pp: 8", "tp: 4, pp: 16"))
    c.write_text(A.replace("tp: 8, pp: 8", "tp: 1, pp: 1"))  # infeasible
    return a, b, c


def _run(*args, columns="120"):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": columns})


def _csv(text):
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _predict_json(*paths):
    result = _run("predict", *paths, "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_compare_table_shows_each_scenario_side_by_side(files):
    result = _run("compare", *files)
    assert result.exit_code == 0, result.output
    for text in ("a", "b", "c", "step time", "MFU", "where the step time goes", "memory"):
        assert text in result.output
    # the reason row for the infeasible one (dp 1024 does not divide the global batch)
    assert _predict_json(files[2])[0]["reason"] in result.output.replace("\n", " ") or (
        "does not divide" in result.output
    )


def test_compare_json_holds_the_predict_objects(files):
    result = _run("compare", *files, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["scenarios"] == ["a", "b", "c"]
    assert data["predictions"] == _predict_json(*files)


def test_compare_csv_values_are_the_predictions_exactly(files):
    result = _run("compare", *files, "--csv")
    assert result.exit_code == 0, result.output
    rows = {r["metric"]: r for r in _csv(result.output)}
    expected = _predict_json(*files)
    for name, obj in zip("abc", expected, strict=True):
        assert rows["feasible"][name] == ("true" if obj["feasible"] else "false")
        if obj["feasible"]:
            assert float(rows["step_time_s"][name]) == obj["step_time_s"]
            parts = [float(r[name]) for k, r in rows.items() if k.startswith("breakdown_s.")]
            assert math.fsum(parts) == pytest.approx(obj["step_time_s"], rel=1e-9)
        else:
            assert rows["step_time_s"][name] == ""
    assert float(rows["peak_memory_bytes"]["c"]) == expected[2]["peak_memory_bytes"]


def test_predict_csv_one_row_per_scenario(files):
    result = _run("predict", *files, "--csv")
    assert result.exit_code == 0, result.output
    rows = _csv(result.output)
    expected = _predict_json(*files)
    assert [r["scenario"] for r in rows] == ["a", "b", "c"]
    for row, obj in zip(rows, expected, strict=True):
        flat = flatten(obj)
        assert set(flat) <= set(row)
        if obj["feasible"]:
            assert float(row["breakdown_s.compute"]) == obj["breakdown_s"]["compute"]
            assert float(row["time_to_train_s"]) == obj["time_to_train_s"]


def test_search_csv_rows_are_the_top_entries(files):
    a = files[0]
    json_out = _run("search", a, "--top", "3", "--fix", "tp=8", "--fix", "pp=8", "--json")
    csv_out = _run("search", a, "--top", "3", "--fix", "tp=8", "--fix", "pp=8", "--csv")
    assert json_out.exit_code == 0 and csv_out.exit_code == 0, csv_out.output
    top = json.loads(json_out.stdout)["top"]
    rows = _csv(csv_out.stdout)
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    for row, entry in zip(rows, top, strict=True):
        assert float(row["step_time_s"]) == entry["step_time_s"]
        assert int(row["strategy.micro_batch_size"]) == entry["strategy"]["micro_batch_size"]
        assert float(row["time_to_train_s"]) > 0


def test_validate_csv_rows_and_summary():
    rows = _csv(_run("validate", "-d", "megatron-2021", "--csv").output)
    assert len(rows) == 10 and {r["dataset"] for r in rows} == {"megatron-2021"}
    for r in rows:
        measured, predicted = float(r["measured"]), float(r["predicted"])
        assert float(r["error"]) == pytest.approx((predicted - measured) / measured)
    summary = _csv(_run("validate", "-d", "megatron-2021", "--summary", "--csv").output)
    data = json.loads(_run("validate", "-d", "megatron-2021", "--json").output)
    assert float(summary[0]["mape"]) == data["mape"]


@pytest.mark.parametrize("command", ["predict", "compare", "search", "validate"])
def test_json_and_csv_together_exit_2(files, command):
    args = [] if command == "validate" else [files[0]]
    result = _run(command, *args, "--json", "--csv")
    assert result.exit_code == 2 and "--csv" in result.output


def test_compare_bad_input_exits_2(files, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(A.replace("tp: 8,", "tpp: 8,"))
    result = _run("compare", files[0], bad)
    assert result.exit_code == 2 and "bad.yaml: strategy.tpp: unknown key" in result.output
    assert _run("compare").exit_code == 2


def test_duplicate_names_get_distinct_columns(files):
    result = _run("compare", files[0], files[0], "--csv")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "metric,a,a#2"


cells = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)


@given(
    st.lists(
        st.dictionaries(st.sampled_from("abcde"), cells, min_size=1, max_size=5),
        min_size=1,
        max_size=5,
    )
)
def test_csv_round_trips_every_value(rows):
    """Each cell reads back as the value written: floats to the last bit, None as empty."""
    parsed = _csv(csv_text(rows))
    assert len(parsed) == len(rows)
    for row, back in zip(rows, parsed, strict=True):
        for key, value in row.items():
            if value is None:
                assert back[key] == ""
            elif isinstance(value, bool):
                assert back[key] == ("true" if value else "false")
            elif isinstance(value, float):
                assert float(back[key]) == value
            else:
                assert back[key] == str(value)
