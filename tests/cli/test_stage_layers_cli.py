"""`strategy.stage_layers` on the command line: uneven pipelines predict, a bad explicit
split exits 2 with one line naming the key, the rule and the value."""

import json

import pytest
from click.testing import CliRunner

from deepflow.cli import main

SCENARIO = """model: llama2-7b
system: {{preset: dgx-h100, num_accelerators: 32}}
strategy: {{tp: 8, pp: 4, vpp: {vpp}{extra}}}
training: {{global_batch_size: 64}}
"""


def run(tmp_path, vpp=1, extra=""):
    path = tmp_path / "split.yaml"
    path.write_text(SCENARIO.format(vpp=vpp, extra=extra))
    return CliRunner().invoke(main, ["predict", str(path), "--json"])


def test_explicit_split_predicts(tmp_path):
    result = run(tmp_path, extra=", stage_layers: [7, 9, 9, 7]")
    assert result.exit_code == 0, result.output
    line = json.loads(result.output)
    assert line["feasible"] is True


@pytest.mark.parametrize(
    ("vpp", "extra", "message"),
    [
        (
            1,
            ", stage_layers: [8, 8, 8]",
            "strategy.stage_layers: needs 4 entries (pp=4, one per stage), got 3: [8, 8, 8]",
        ),
        (
            2,
            ", stage_layers: [8, 8, 8, 8, 0]",
            "strategy.stage_layers: needs 4 entries (pp=4, one per stage) or 8 "
            "(pp*vpp=4*2, one per virtual chunk), got 5: [8, 8, 8, 8, 0]",
        ),
        (
            1,
            ", stage_layers: [8, 8, 8, 9]",
            "strategy.stage_layers: entries must add up to num_layers=32, "
            "but [8, 8, 8, 9] adds up to 33",
        ),
        (
            1,
            ", stage_layers: [8, 8, 17, -1]",
            "strategy.stage_layers.3: Input should be greater than or equal to 0 (got -1)",
        ),
    ],
)
def test_bad_split_exits_2_with_one_line(tmp_path, vpp, extra, message):
    result = run(tmp_path, vpp, extra)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].endswith(f"split.yaml: {message}"), lines[0]
    assert "Traceback" not in result.output
