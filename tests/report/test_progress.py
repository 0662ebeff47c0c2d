"""Progress bars: shown on a terminal, never with --quiet or off a terminal; the callbacks
that feed them count honestly and cannot change a result."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from deepflow.cli import main
from deepflow.report.progress import progress
from deepflow.search.mcmc import mcmc_search
from deepflow.sim import simulate
from deepflow.sim.opsim import OpSimulator
from deepflow.specs import scenario_from_dict, system_from
from deepflow.workload.rnn import rnnlm

LONG_COMMANDS = [
    ("et", "export"),
    ("et", "simulate"),
    ("simulate",),
    ("search",),
    ("search-ops",),
    ("codesign",),
    ("validate",),
]


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=80, markup=False), out


def test_bar_shows_on_a_terminal():
    console, out = _console(True)
    with progress("crunching", console=console) as bar:
        assert bar.shown
        bar.update(3, 7)
        bar.step("writing")
    assert "crunching" in out.getvalue() or "writing" in out.getvalue()


@pytest.mark.parametrize(("terminal", "quiet"), [(False, False), (True, True), (False, True)])
def test_no_bar_off_a_terminal_or_when_quiet(terminal, quiet):
    console, out = _console(terminal)
    with progress("crunching", quiet=quiet, console=console) as bar:
        assert not bar.shown
        bar.update(3, 7)
        bar.step("writing")
    assert out.getvalue() == ""


@pytest.mark.parametrize("path", LONG_COMMANDS, ids=" ".join)
def test_every_long_command_takes_quiet(path):
    command = main
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert "--quiet" in {opt for p in command.params for opt in p.opts}


def _scenario():
    return scenario_from_dict(
        {
            "model": "llama2-7b",
            "system": {"preset": "dgx-a100-80gb", "num_accelerators": 16},
            "strategy": {"tp": 2, "pp": 4, "micro_batch_size": 1},
            "training": {"global_batch_size": 64},
        }
    )


def test_simulator_progress_counts_every_task_and_changes_nothing():
    calls: list[tuple[int, int]] = []
    with_cb = simulate(_scenario(), on_progress=lambda d, t: calls.append((d, t)))
    without = simulate(_scenario())
    n = len(with_cb.lowered.graph.tasks)
    assert calls and calls[-1] == (n, n)
    assert all(t == n for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    np.testing.assert_array_equal(with_cb.execution.start, without.execution.start)
    assert with_cb.prediction == without.prediction


def test_mcmc_progress_counts_chains_and_changes_nothing():
    sim = OpSimulator(
        rnnlm(batch=64),
        system_from({"preset": "dgx-v100", "num_accelerators": 16, "accelerators_per_node": 4}),
    )
    calls: list[tuple[int, int]] = []
    a = mcmc_search(sim, iterations=60, seed=0, on_progress=lambda d, t: calls.append((d, t)))
    b = mcmc_search(sim, iterations=60, seed=0)
    total = calls[-1][1]
    assert calls == [(i, total) for i in range(1, total + 1)]
    assert a.best_cost == b.best_cost


def test_simulate_prints_no_bar_when_not_a_terminal(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "model: llama2-7b\nsystem: {preset: dgx-a100-80gb, num_accelerators: 16}\n"
        "strategy: {tp: 2, pp: 4, micro_batch_size: 1}\ntraining: {global_batch_size: 64}\n"
    )
    result = CliRunner().invoke(main, ["simulate", str(path)])
    assert result.exit_code == 0, result.output
    assert "simulating" not in result.output and "\x1b[" not in result.output


def test_export_progress_counts_ranks_and_changes_nothing(tmp_path):
    from deepflow.interop.astra import export_scenario

    calls: list[tuple[int, int]] = []
    a = export_scenario(_scenario(), tmp_path / "a", on_progress=lambda d, t: calls.append((d, t)))
    b = export_scenario(_scenario(), tmp_path / "b")
    assert calls == [(i, a.ranks) for i in range(1, a.ranks + 1)]
    for fa, fb in zip(sorted(a.files), sorted(b.files), strict=True):
        assert Path(fa).read_bytes() == Path(fb).read_bytes()
