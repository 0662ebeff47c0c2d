"""Sharded data parallelism on the command line: FSDP and HSDP scenarios predict; a bad
``shard_degree`` exits 2 with one line naming the key, the rule and the value."""

import json

import pytest
from click.testing import CliRunner

from deepflow.cli import main

SCENARIO = """model: llama2-7b
system: {{preset: dgx-h100, num_accelerators: 64}}
strategy: {{tp: 1, pp: 1, micro_batch_size: 2, {extra}}}
training: {{global_batch_size: 128}}
"""


def run(tmp_path, extra):
    path = tmp_path / "fsdp.yaml"
    path.write_text(SCENARIO.format(extra=extra))
    return CliRunner().invoke(main, ["predict", str(path), "--json"])


def test_fsdp_and_hsdp_predict(tmp_path):
    full = json.loads(run(tmp_path, "zero: 3").output)
    hybrid = json.loads(run(tmp_path, "zero: 3, shard_degree: 8").output)
    assert full["feasible"] and hybrid["feasible"]
    # shards over 8 ranks instead of 64: more state per GPU
    assert hybrid["memory_bytes"]["optimizer_state"] == pytest.approx(
        8 * full["memory_bytes"]["optimizer_state"]
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "zero: 3, shard_degree: 6",
            "strategy.shard_degree=6 does not divide the sharding group dp*cp=64*1=64",
        ),
        ("zero: 0, shard_degree: 8", "strategy.shard_degree=8 needs strategy.zero >= 1"),
        ("zero: 3, shard_degree: 0", "strategy.shard_degree"),
    ],
)
def test_bad_shard_degree_exits_2_with_one_line(tmp_path, extra, message):
    result = run(tmp_path, extra)
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1, result.output
    assert message in lines[0]
    assert "Traceback" not in result.output
