"""``deepflow plan-hetero`` and ``deepflow elastic``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from deepflow.cli import main

ROOT = Path(__file__).parents[2] / "examples"


def test_plan_hetero_json() -> None:
    out = CliRunner().invoke(main, ["plan-hetero", str(ROOT / "hetero-a100-v100.yaml"), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["gain"] > 0 and data["plan"]["step_time_s"] < data["even"]["step_time_s"]


def test_plan_hetero_table() -> None:
    out = CliRunner().invoke(main, ["plan-hetero", str(ROOT / "hetero-a100-v100.yaml")])
    assert out.exit_code == 0, out.output
    assert "gain" in out.output


def test_plan_hetero_bad_key_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("model: megatron-gpt-1.7b\nglobal_batch_size: 8\nvirtual_nodes: 8\n")
    out = CliRunner().invoke(main, ["plan-hetero", str(bad)])
    assert out.exit_code == 2
    assert "pools" in out.output


def test_elastic_table_and_json() -> None:
    out = CliRunner().invoke(main, ["elastic", str(ROOT / "elastic-timeline.yaml")])
    assert out.exit_code == 0, out.output
    assert "JCT" in out.output
    out = CliRunner().invoke(main, ["elastic", str(ROOT / "elastic-timeline.yaml"), "--json"])
    data = json.loads(out.output)
    assert set(data["jct_s"]) == {"virtual_nodes", "new_batch"}


def test_elastic_bad_timeline_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text(
        "model: megatron-gpt-1.7b\nsystem: dgx-a100-80gb\nglobal_batch_size: 8\n"
        "virtual_nodes: 8\nsteps: 10\ntimeline: [[0, -1]]\n"
    )
    out = CliRunner().invoke(main, ["elastic", str(bad)])
    assert out.exit_code == 2
    assert "timeline[0]" in out.output
