"""``deepflow search-ops``."""

import json

from click.testing import CliRunner

from deepflow.cli.app import main


def test_search_ops_json() -> None:
    r = CliRunner().invoke(main, ["search-ops", "rnntc", "--budget", "60", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["best_s"] <= out["data_parallel_s"]
    assert out["speedup"] >= 1.0
    assert len(out["ops"]) == 14 and {"op", "degrees", "devices"} <= set(out["ops"][0])


def test_search_ops_text_and_bad_input() -> None:
    r = CliRunner().invoke(main, ["search-ops", "alexnet", "--budget", "30"])
    assert r.exit_code == 0, r.output
    assert "speed-up" in r.output and "data parallel" in r.output
    bad = CliRunner().invoke(main, ["search-ops", "alexnet", "--gpus", "10", "--nodes", "4"])
    assert bad.exit_code == 2


def test_search_ops_sync_after_backward_is_slower_for_data_parallel() -> None:
    args = ["search-ops", "alexnet", "--budget", "0", "--json"]
    over = json.loads(CliRunner().invoke(main, args).output)
    after = json.loads(CliRunner().invoke(main, [*args, "--sync", "after-backward"]).output)
    assert over["sync"] == "overlapped" and after["sync"] == "after-backward"
    assert after["data_parallel_s"] > over["data_parallel_s"]


def test_search_ops_kernel_parallel_lstm_lm_fits_64_v100s() -> None:
    from click.testing import CliRunner

    from deepflow.cli import main

    args = ["search-ops", "lstm-lm", "--gpus", "64", "--nodes", "8", "--batch", "4096"]
    args += ["--precision", "fp16", "--budget", "200", "--quiet"]
    plain = CliRunner().invoke(main, args)
    assert plain.exit_code == 0, plain.output
    assert "does not fit in memory" in plain.output and "infeasible" in plain.output
    kp = CliRunner().invoke(main, [*args, "--kernel-parallel"])
    assert kp.exit_code == 0, kp.output
    assert "infeasible" not in kp.output and " CR" in kp.output
