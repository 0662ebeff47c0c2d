"""Fuzzing every command that reads a file: mutations of the shipped inputs, run through the
command line, end in exit 0 or in exit 2 with one ``error:`` line - never a traceback -
and each case under 10 s of CPU time and 1 GiB of memory. (The readers alone:
``tests/specs/test_reader_fuzz.py``; the crash list of issue 16 case by case:
``tests/cli/test_first_contact.py``.)

Each case runs in a forked child of the test process (:func:`run_bounded`), so that its
limits are the operating system's and its measurements its own: an address-space ceiling
(``RLIMIT_AS``) of what the child has mapped at the fork plus 1 GiB, a CPU limit
(``RLIMIT_CPU``) and a wall-clock alarm that end a hang, and ``os.wait4`` for the child's
CPU time and peak resident set. A case passes only if it stays under both bounds without
meeting the ceiling; a command that does meet it must still end in exit 2 with one line
(``test_an_allocation_over_the_ceiling_is_exit_2_with_one_line``).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from tests.specs.test_reader_fuzz import EDITS, mutate

from deepflow.cli import main
from deepflow.cli.app import OUT_OF_MEMORY

ROOT = Path(__file__).resolve().parents[2]
CASE_SECONDS = 10.0
CASE_BYTES = 1 << 30
WALL_SECONDS = 60  # a child blocked without using CPU (reading an endless pipe) ends too
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


def _status_bytes(field: str) -> int:
    """``field`` (``VmSize``, ``VmRSS``) of this process, in bytes (``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def run_bounded(
    args: list[str],
    headroom: int = CASE_BYTES,
    before: Callable[[], None] | None = None,
    cpu_limit: int = int(CASE_SECONDS) + 2,
) -> dict:
    """Run ``deepflow ARGS`` in a forked child whose address space may grow by ``headroom``
    bytes past what it holds at the fork, with a CPU limit of ``cpu_limit`` seconds (just
    above :data:`CASE_SECONDS`) and an alarm at :data:`WALL_SECONDS`. Returns the exit code,
    stdout, stderr and exception of the command, the child's CPU seconds (``cpu``) and the
    growth of its peak resident set over the resident set at the fork (``grown``), or
    ``signal`` when the child was killed (a hang)."""
    read, write = os.pipe()
    rss = _status_bytes("VmRSS")
    pid = os.fork()
    if pid == 0:  # the child: limits, the command, its result down the pipe, exit
        code = 0
        try:
            os.close(read)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.signal(signal.SIGXCPU, signal.SIG_DFL)
            signal.alarm(WALL_SECONDS)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_limit, cpu_limit + 1))
            limit = _status_bytes("VmSize") + headroom
            resource.setrlimit(
                resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1])
            )
            if before is not None:
                before()
            result = CliRunner().invoke(main, args)
            payload = {
                "exit_code": result.exit_code,
                "output": result.output,
                "stderr": result.stderr,
                "exception": None
                if result.exception is None or isinstance(result.exception, SystemExit)
                else repr(result.exception),
            }
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)
            with os.fdopen(write, "w") as out:
                json.dump(payload, out)
        except BaseException:  # anything escaping: the parent reports the exit status
            code = 3
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as inp:
        text = inp.read()
    _, status, usage = os.wait4(pid, 0)
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status), "cpu": usage.ru_utime + usage.ru_stime}
    assert os.WEXITSTATUS(status) == 0 and text, ("the child failed", args, status)
    payload = json.loads(text)
    payload["cpu"] = usage.ru_utime + usage.ru_stime
    payload["grown"] = usage.ru_maxrss * 1024 - rss
    return payload


def run_case(tmp_path: Path, argv: list[str], files: dict[str, bytes], edits) -> None:
    folder = tmp_path / f"case{time.perf_counter_ns()}"
    folder.mkdir()
    paths = {"out": str(folder)}
    for name, data in files.items():
        path = folder / name
        path.write_bytes(mutate(data, edits))
        paths[name] = str(path)
    args = fill(argv, paths)
    result = run_bounded(args)
    assert "signal" not in result, ("killed: a hang", args, result)
    assert result["cpu"] < CASE_SECONDS, (args, result["cpu"])
    assert result["grown"] < CASE_BYTES, (args, result["grown"])
    code, output, err = result["exit_code"], result["output"], result["stderr"].strip()
    assert code in (0, 2), (args, code, output, result["exception"])
    assert "Traceback" not in output
    assert err != OUT_OF_MEMORY, ("met the 1 GiB ceiling", args)
    if code == 2:
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
        result = run_bounded(args)
        assert "signal" not in result, ("killed", args, result)
        assert result["cpu"] < CASE_SECONDS, (args, result["cpu"])
        assert result["grown"] < CASE_BYTES, (args, result["grown"])
        assert result["exit_code"] == 0, (args, result["output"], result["exception"])


def _allocate_past_the_ceiling(*args, **kwargs):
    return bytearray(256 << 20)  # 256 MiB, past the 16 MiB headroom of the test below


def test_an_allocation_over_the_ceiling_is_exit_2_with_one_line(tmp_path):
    """A command whose allocation fails under the address-space ceiling (a real
    ``MemoryError`` from the operating system's limit, not a raised one) ends in exit 2
    with the one ``error:`` line, no traceback."""
    import deepflow.cli.predict as predict_command

    path = tmp_path / "scenario.yaml"
    path.write_bytes(SMALL)

    def before() -> None:
        predict_command.predict = _allocate_past_the_ceiling  # type: ignore[assignment]

    result = run_bounded(["predict", str(path)], headroom=16 << 20, before=before)
    assert "signal" not in result, result
    assert result["exit_code"] == 2, result
    assert result["stderr"].strip() == OUT_OF_MEMORY
    assert "Traceback" not in result["output"]


def test_a_hang_is_ended_and_reported():
    """The CPU limit ends a command that never returns, so a hang fails its case instead of
    stalling the suite (a 1 s limit here, for the suite's time)."""

    def spin() -> None:
        while True:
            pass

    result = run_bounded(["--version"], before=spin, cpu_limit=1)
    assert result.get("signal") == signal.SIGXCPU, result
    assert result["cpu"] > 0.5  # it ran, until the 1 s limit (as the scheduler accounts it)
