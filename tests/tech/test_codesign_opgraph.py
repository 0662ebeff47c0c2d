"""Co-design of operator-graph workloads (an LSTM and a CNN) through the workload
interface: the gradient search improves on its start and beats a grid of the same
evaluation budget, deterministically; bad scenarios exit 2 naming the key."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepflow.cli import main
from deepflow.codesign.budget import load_budget
from deepflow.codesign.gradient import gradient_search, grid_search
from deepflow.codesign.opgraph import load_opgraph_problem, opgraph_problem_from
from deepflow.codesign.point import evaluate_design
from deepflow.codesign.space import DesignSpace
from deepflow.errors import ConfigError
from deepflow.search.mcmc import expert_strategies

CROSSFLOW = Path(__file__).resolve().parents[2] / "examples" / "crossflow"
BUDGET = CROSSFLOW / "budget-4nm.yaml"


def _problem(name: str):
    p = load_opgraph_problem(CROSSFLOW / name)
    s = p.system
    experts = expert_strategies(p.graph, s.num_accelerators, s.scale_up_size)
    return replace(p, extra_starts=tuple(experts.items()))


@pytest.mark.parametrize("scenario", ["rnnlm-8.yaml", "alexnet-8.yaml"])
def test_codesign_improves_and_beats_a_same_budget_grid(scenario: str) -> None:
    problem = _problem(scenario)
    budget = load_budget(BUDGET)
    space = DesignSpace.of(budget.design, budget.search.vary, budget.search.lower)
    s = budget.search
    res = gradient_search(space, problem, starts=s.starts, iterations=s.iterations, seed=1)
    assert all(s.time < s.time0 for s in res.starts)
    evals = sum(s.evaluations for s in res.starts)
    _, grid_best = grid_search(space, problem, points=math.isqrt(evals))
    assert res.best.step_time_s < grid_best
    assert res.best.feasible and res.best.energy_j > 0 and res.best.cost_per_step > 0


def test_codesign_cli_on_a_cnn_is_deterministic() -> None:
    args = ["codesign", str(CROSSFLOW / "alexnet-8.yaml"), "--budget", str(BUDGET)]
    args += ["--json", "--quiet", "--seed", "2"]
    a = CliRunner().invoke(main, args)
    b = CliRunner().invoke(main, args)
    assert a.exit_code == 0, a.output
    assert a.output == b.output
    out = json.loads(a.output)
    assert out["best"]["step_time_s"] < out["starts"][0]["time0_s"]
    assert "alexnet" in out["best"]["strategy"]


def test_opgraph_point_uses_the_strategys_sharded_gemms() -> None:
    """The same design on the LSTM LM: only the kernel-parallel candidate fits 64 V100-size
    clusters' memory on a 16 GB design, and the reason names memory when nothing fits."""
    budget = load_budget(BUDGET)
    data = {"workload": "lstm-lm", "batch": 4096, "precision": "bf16"}
    data["system"] = {"preset": "dgx-v100", "num_accelerators": 64}
    plain = evaluate_design(budget.design, opgraph_problem_from(data))
    assert not plain.feasible and "GB" in str(plain.reason)
    kp = evaluate_design(budget.design, opgraph_problem_from({**data, "kernel_parallel": True}))
    assert kp.feasible and math.isfinite(kp.step_time_s)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"workload": "lstm", "batch": 8}, "workload"),
        ({"workload": "rnnlm", "batch": 0}, "batch"),
        ({"workload": "rnnlm", "precision": "fp7"}, "precision"),
        ({"workload": "rnnlm", "kernel_parallel": "yes"}, "kernel_parallel"),
        ({"workload": "rnnlm", "gpus": 8}, "gpus"),
    ],
)
def test_bad_opgraph_scenarios_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        opgraph_problem_from(data)
    assert exc.value.path == key


def test_bad_opgraph_scenario_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("workload: lstm-lm\nbatch: -1\n")
    r = CliRunner().invoke(main, ["codesign", str(bad), "--budget", str(BUDGET)])
    assert r.exit_code == 2 and "batch" in r.output


def test_arch_and_sensitivity_take_operator_graph_scenarios() -> None:
    design = str(Path(__file__).resolve().parents[2] / "examples" / "arch" / "h100-class.yaml")
    r = CliRunner().invoke(
        main, ["arch", design, "--scenario", str(CROSSFLOW / "rnnlm-8.yaml"), "--json"]
    )
    assert r.exit_code == 0, r.output
    w = json.loads(r.output)["workload"]
    assert w["feasible"] and w["step_time_s"] > 0 and "rnnlm" in w["strategy"]
    s = CliRunner().invoke(
        main,
        [
            "sensitivity",
            str(CROSSFLOW / "alexnet-8.yaml"),
            "--vary",
            "accelerator.peak_flops",
            "--json",
        ],
    )
    assert s.exit_code == 0, s.output
    (bar,) = json.loads(s.output)
    # AlexNet on 8 GPUs is mostly compute-bound: faster FLOPs, shorter steps
    assert -1.0 <= bar["elasticity"] < -0.3


def test_pitfalls_orderings_that_must_hold() -> None:
    """Adding the strategy choice never slows a step: software only <= baseline, hardware
    then software <= hardware only, and the joint and software-then-hardware searches
    start from the software-only point and never rise above it."""
    from deepflow.codesign.examples import allocation_sweep, pitfalls

    budget = load_budget(BUDGET)
    p = pitfalls(budget.design, _problem("alexnet-8.yaml"), budget.search.vary, 0, 1, 3, 0)
    assert p.software_only <= p.baseline
    assert p.hardware_then_software <= p.hardware_only
    assert p.joint <= p.software_only and p.software_then_hardware <= p.software_only
    assert p.strategies["baseline"].startswith("data-parallel")
    rows = allocation_sweep(
        budget.design,
        _problem("alexnet-8.yaml"),
        "area.memory_controller",
        "area.compute",
        [0.05, 0.15],
    )
    assert rows[0].memory_bandwidth < rows[1].memory_bandwidth
    assert rows[0].peak_flops > rows[1].peak_flops


def test_lstm_lm_end_to_end_arch_search_codesign(tmp_path: Path) -> None:
    """DeepFlow's LSTM LM on 64 accelerators: the design's accelerator runs it
    (``arch --scenario``), the per-operator search with CR/RC kernel parallelism finds a
    strategy that fits, and ``codesign`` improves the design, memory checked throughout."""
    design = str(Path(__file__).resolve().parents[2] / "examples" / "arch" / "h100-class.yaml")
    scenario = str(CROSSFLOW / "lstm-lm-64.yaml")
    a = CliRunner().invoke(main, ["arch", design, "--scenario", scenario, "--json"])
    assert a.exit_code == 0, a.output
    assert json.loads(a.output)["workload"]["feasible"]
    args = ["search-ops", "lstm-lm", "--gpus", "64", "--nodes", "8", "--batch", "4096"]
    s = CliRunner().invoke(
        main,
        [*args, "--precision", "fp16", "--budget", "150", "--kernel-parallel", "--json", "--quiet"],
    )
    assert s.exit_code == 0, s.output
    found = json.loads(s.output)
    assert found["infeasible"] is None and found["peak_memory_bytes"] < 34.4e9
    assert any("kernel" in o for o in found["ops"])
    text = (
        BUDGET.read_text()
        .replace("starts: 2", "starts: 1")
        .replace("iterations: 8", "iterations: 2")
    )
    small = tmp_path / "budget.yaml"
    small.write_text(text)
    c = CliRunner().invoke(
        main, ["codesign", scenario, "--budget", str(small), "--json", "--quiet"]
    )
    assert c.exit_code == 0, c.output
    out = json.loads(c.output)
    assert out["best"]["step_time_s"] < out["starts"][0]["time0_s"]
    assert "kernel-parallel" in out["best"]["strategy"]
