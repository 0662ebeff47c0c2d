"""Fuzzing every command that reads a file: mutations of the shipped inputs, run through the
command line, end in exit 0 or in exit 2 with one ``error:`` line - never a traceback -
and each case within 10 s of CPU time (this process's, so that other load on a shared
machine does not count). (The readers alone: ``tests/specs/test_reader_fuzz.py``; the
crash list of issue 16 case by case: ``tests/cli/test_first_contact.py``.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from tests.specs.test_reader_fuzz import EDITS, mutate

from deepflow.cli import main

ROOT = Path(__file__).resolve().parents[2]
CASE_SECONDS = 10.0
SMALL = yaml.safe_dump(
    {
        "name": "fuzz",
        "model": "llama2-7b",
        "system": {"preset": "dgx-h100", "num_accelerators": 8},
        "strategy": {"tp": 2, "pp": 2, "micro_batch_size": 1},
        "training": {"global_batch_size": 16},
    }
).encode()
SCENARIO = {"scenario.yaml": SMALL}
# command line -> the files it reads ({name} in the line is the mutated copy of that file)
COMMANDS = [
    (["predict", "{scenario.yaml}"], SCENARIO),
    (["predict", "{scenario.yaml}", "--json"], SCENARIO),
    (["simulate", "{scenario.yaml}"], SCENARIO),
    (["search", "{scenario.yaml}", "--quiet"], SCENARIO),
    (["compare", "{scenario.yaml}", "{scenario.yaml}", "--csv"], SCENARIO),
    (["sensitivity", "{scenario.yaml}", "--vary", "accelerator.memory_bandwidth"], SCENARIO),
    (["report", "{scenario.yaml}", "--html", "{out}/r.html"], SCENARIO),
    (["et", "export", "{scenario.yaml}", "--out", "{out}/et"], SCENARIO),
    (
        ["codesign", "{scenario.yaml}", "--budget", "{budget.yaml}"],
        {
            "scenario.yaml": SMALL,
            "budget.yaml": (ROOT / "examples/arch/budget-3nm.yaml").read_bytes(),
        },
    ),
    (
        ["arch", "{design.yaml}"],
        {"design.yaml": (ROOT / "examples/arch/h100-class.yaml").read_bytes()},
    ),
    (
        ["plan-hetero", "{cluster.yaml}"],
        {"cluster.yaml": (ROOT / "examples/hetero-a100-v100.yaml").read_bytes()},
    ),
    (
        ["elastic", "{timeline.yaml}"],
        {"timeline.yaml": (ROOT / "examples/elastic-timeline.yaml").read_bytes()},
    ),
    (
        ["et", "convert", "{ring.xml}", "--out", "{out}/conv/r", "--size", "1048576"],
        {"ring.xml": (ROOT / "tests/fixtures/msccl/ring_1_8.xml").read_bytes()},
    ),
]
FUZZ = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def fill(argv: list[str], paths: dict[str, str]) -> list[str]:
    """``argv`` with each ``{name}`` replaced by its path."""
    out = []
    for arg in argv:
        for name, path in paths.items():
            arg = arg.replace("{" + name + "}", path)
        out.append(arg)
    return out


def run_case(tmp_path: Path, argv: list[str], files: dict[str, bytes], edits) -> None:
    folder = tmp_path / f"case{time.perf_counter_ns()}"
    folder.mkdir()
    paths = {"out": str(folder)}
    for name, data in files.items():
        path = folder / name
        path.write_bytes(mutate(data, edits))
        paths[name] = str(path)
    args = fill(argv, paths)
    start = time.process_time()
    result = CliRunner().invoke(main, args)
    elapsed = time.process_time() - start
    assert elapsed < CASE_SECONDS, (args, elapsed)
    assert result.exit_code in (0, 2), (args, result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        err = result.stderr.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: "), err


@pytest.mark.parametrize("index", range(len(COMMANDS)), ids=lambda i: " ".join(COMMANDS[i][0][:2]))
@FUZZ
@given(edits=EDITS)
def test_mutated_inputs_end_in_a_result_or_a_named_error(tmp_path, index, edits):
    argv, files = COMMANDS[index]
    run_case(tmp_path, argv, files, edits)


def test_every_command_runs_its_unmutated_input(tmp_path):
    """The fixtures themselves run (exit 0), so the mutations start from working inputs."""
    for argv, files in COMMANDS:
        folder = tmp_path / argv[0] / str(len(list(tmp_path.glob("*/*"))))
        folder.mkdir(parents=True)
        paths = {"out": str(folder)}
        for name, data in files.items():
            (folder / name).write_bytes(data)
            paths[name] = str(folder / name)
        args = fill(argv, paths)
        start = time.process_time()
        result = CliRunner().invoke(main, args)
        assert time.process_time() - start < CASE_SECONDS, args
        assert result.exit_code == 0, (args, result.output, result.exception)
