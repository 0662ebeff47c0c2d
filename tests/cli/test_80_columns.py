"""Output for people fits 80 columns without cutting a number, and never shows a Python
enum repr such as ``<Recompute.NONE: 'none'>``.

Each command runs twice, at ``COLUMNS=80`` and at ``COLUMNS=300``: the numbers (with their
signs, decimals and percent signs) must be the same (as a multiset: a table row that wraps
interleaves its cells' lines), so that no number was shortened (``…``), folded across lines
or dropped; no line may be wider than 80. Wall-clock times of the run itself are masked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepflow.cli import main
from deepflow.specs import default_scenario
from deepflow.specs.strategy import PipelineSchedule, Recompute, StrategySpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENUM_REPR = re.compile(r"<[A-Za-z_][\w.]*: ['\"]?[^>]*>")
WALL_CLOCK = re.compile(r"(?:iterations, |strategies in )[\d.]+ s(?: \([\d,]+/s\))?")
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?")

SMALL = """name: small
model: llama2-7b
system: {preset: dgx-a100-80gb, num_accelerators: 16}
strategy: {tp: 2, pp: 4, micro_batch_size: 1, recompute: none}
training: {global_batch_size: 64, tokens: 1e9}
"""


def _run(args: list[str], columns: int) -> str:
    result = CliRunner().invoke(main, args, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def _numbers(text: str) -> list[str]:
    return NUMBER.findall(WALL_CLOCK.sub("", text))


def _commands(tmp_path) -> list[list[str]]:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return [
        ["predict"],
        ["predict", str(path)],
        ["simulate", str(path)],
        ["search", str(path), "--fix", "tp=1,2", "--fix", "pp=1,2,4", "--top", "5"],
        ["validate", "-d", "megatron-2021", "-d", "hf-step-h200", "-d", "nccl-a100"],
        ["search-ops", "rnnlm", "--gpus", "4", "--nodes", "1", "--budget", "40"],
        ["plan-hetero", str(EXAMPLES / "hetero-a100-v100.yaml")],
        ["elastic", str(EXAMPLES / "elastic-timeline.yaml")],
        ["elastic", "--cluster", str(EXAMPLES / "cluster-jobs.yaml")],
    ]


@pytest.mark.parametrize("index", range(9))
def test_fits_80_columns_without_cutting_numbers(tmp_path, index):
    args = _commands(tmp_path)[index]
    narrow = _run(args, 80)
    wide = _run(args, 300)
    for line in narrow.splitlines():
        assert len(line) <= 80, f"{args}: {line!r}"
    assert "…" not in narrow, args
    assert sorted(_numbers(narrow)) == sorted(_numbers(wide)), args
    assert not ENUM_REPR.search(narrow), args


@pytest.mark.parametrize("index", range(9))
def test_json_has_no_enum_reprs(tmp_path, index):
    args = _commands(tmp_path)[index]
    out = _run([*args, "--json"], 80)
    assert not ENUM_REPR.search(out), args


def test_strategy_prints_its_compact_form():
    assert ENUM_REPR.search(repr(Recompute.NONE))  # the pattern catches the repr
    for recompute in Recompute:
        for schedule in PipelineSchedule:
            spec = StrategySpec(
                dp=1, pp=2, recompute=recompute, pipeline_schedule=schedule, micro_batch_size=2
            )
            text = str(spec)
            assert not ENUM_REPR.search(text)
            assert text.startswith("dp1 tp1 pp2") and "mbs2" in text
            assert text.endswith(spec.schedule.value)
    assert str(default_scenario().strategy) == "dp16 tp8 pp8 vpp2 sp rc-selective mbs1 interleaved"
