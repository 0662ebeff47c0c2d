"""``deepflow search``: JSON whose strategies feed back into ``deepflow predict``, exit code 2
on bad input naming the key, resuming from --out."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner
from tests.search.helpers import TINY_MODEL

from deepflow.cli import main

SCENARIO = {
    "model": TINY_MODEL,
    "system": {"preset": "dgx-a100-80gb", "num_accelerators": 16},
    "strategy": {"tp": 2},
    "training": {"global_batch_size": 32},
}


def _write(tmp_path, data=SCENARIO, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_json_top_strategies_feed_back_into_predict(tmp_path):
    path = _write(tmp_path)
    result = CliRunner().invoke(main, ["search", str(path), "--top", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["scenario"] == "tiny" and data["objective"] == "time"
    assert [t["rank"] for t in data["top"]] == [1, 2, 3]
    assert data["price_per_accelerator_hour"] is None
    assert data["feasible"] + sum(data["infeasible"].values()) == data["evaluated"]
    best = data["top"][0]
    again = _write(tmp_path, {**SCENARIO, "strategy": best["strategy"]}, "best.yaml")
    predicted = CliRunner().invoke(main, ["predict", str(again), "--json"])
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.stdout)["step_time_s"] == best["step_time_s"]


def test_table_output_says_no_price(tmp_path):
    result = CliRunner().invoke(main, ["search", str(_write(tmp_path)), "--fix", "tp=2"])
    assert result.exit_code == 0, result.output
    assert "best strategies by time" in result.stdout
    assert "no price" in result.stdout and "Pareto front" in result.stdout


def test_fix_and_sweep(tmp_path):
    args = [
        "search",
        str(_write(tmp_path)),
        "--fix",
        "tp=2",
        "--fix",
        "pp=1..2",
        "--gpus",
        "8,16",
        "--json",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [s["num_accelerators"] for s in data["spaces"]] == [8, 16]
    assert {t["strategy"]["tp"] for t in data["top"]} == {2}
    assert {t["strategy"]["pp"] for t in data["top"]} <= {1, 2}


def test_bad_input_exits_2_naming_the_key(tmp_path):
    path = str(_write(tmp_path))
    cases = [
        (["--fix", "tpp=8"], "unknown strategy knob 'tpp'"),
        (["--fix", "zero=7"], "--fix zero"),
        (["--objective", "cost"], "system.price_per_accelerator_hour: no price"),
        (["--gpus", "8,x"], "--gpus"),
        (["--top", "0"], "--top"),
    ]
    for extra, fragment in cases:
        result = CliRunner().invoke(main, ["search", path, *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert fragment in result.output, (extra, result.output)
        assert "Traceback" not in result.output


def test_out_file_resumes(tmp_path):
    path = str(_write(tmp_path))
    out = str(tmp_path / "r.jsonl")
    args = ["search", path, "--out", out, "--chunk-size", "2000", "--json"]
    first = json.loads(CliRunner().invoke(main, args).stdout)
    second = json.loads(CliRunner().invoke(main, args).stdout)
    assert first["chunks_evaluated"] > 0 and second["chunks_evaluated"] == 0
    assert second["chunks_resumed"] == first["chunks_evaluated"]
    assert first["top"] == second["top"] and first["pareto"] == second["pareto"]


def test_prune_gives_the_exhaustive_top_and_says_what_it_pruned(tmp_path):
    path = str(_write(tmp_path))
    full = CliRunner().invoke(main, ["search", path, "--top", "4", "--json", "--exhaustive"])
    pruned = CliRunner().invoke(main, ["search", path, "--top", "4", "--json", "--prune"])
    default = CliRunner().invoke(main, ["search", path, "--top", "4", "--json"])
    no_prune = CliRunner().invoke(main, ["search", path, "--top", "4", "--json", "--no-prune"])
    for r in (full, pruned, default, no_prune):
        assert r.exit_code == 0, r.output
    a, b = json.loads(full.stdout), json.loads(pruned.stdout)
    # pruning is the default; --exhaustive and --no-prune evaluate every strategy
    assert "pruned" not in a and json.loads(no_prune.stdout)["evaluated"] == a["evaluated"]
    assert json.loads(default.stdout)["pruned"]["considered"] == a["evaluated"]
    assert a["top"] == b["top"] and a["pareto"] == b["pareto"]
    assert b["pruned"]["considered"] == a["evaluated"] >= b["evaluated"]
    table = CliRunner().invoke(main, ["search", path])
    assert table.exit_code == 0, table.output
    assert "pruned search (exact top and Pareto front" in table.stdout
    both = CliRunner().invoke(main, ["search", path, "--prune", "--exhaustive"])
    assert both.exit_code == 2 and "--exhaustive" in both.output


def test_workers_and_out_select_the_exhaustive_search(tmp_path):
    path = str(_write(tmp_path))
    out = str(tmp_path / "r.jsonl")
    result = CliRunner().invoke(main, ["search", path, "--json", "--out", out])
    assert result.exit_code == 0, result.output
    assert "pruned" not in json.loads(result.stdout)


def test_prune_runs_in_one_process(tmp_path):
    path = str(_write(tmp_path))
    for extra, key in ((["--workers", "2"], "--workers"), (["--out", "r.jsonl"], "--out")):
        result = CliRunner().invoke(main, ["search", path, "--prune", *extra])
        assert result.exit_code == 2, result.output
        assert key in result.output and "one process" in result.output
