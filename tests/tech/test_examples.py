"""The data of the co-design example plots follows the physics it illustrates, and the
plots themselves stay optional."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from tests.tech.helpers import EXAMPLES

from deepflow.codesign import examples
from deepflow.codesign.budget import load_budget
from deepflow.codesign.point import Problem
from deepflow.codesign.sensitivity import elasticities, plot_tornado, tornado_data
from deepflow.specs import load_scenario


@pytest.fixture(scope="module")
def budget():
    return load_budget(EXAMPLES / "budget-3nm.yaml")


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(EXAMPLES / "gpt3-1024.yaml")


@pytest.fixture(scope="module")
def problem(budget, scenario):
    return Problem.from_scenario(scenario, budget.strategies, budget.cost)


def test_newer_hbm_is_never_slower(budget, problem):
    rows = examples.memory_generations(budget.design, problem)
    assert [r.label for r in rows] == list(examples.HBM_GENERATIONS)
    times = [r.step_time_s for r in rows]
    bandwidths = [r.memory_bandwidth for r in rows]
    assert math.isfinite(times[-1])
    assert times == sorted(times, reverse=True), times
    assert bandwidths == sorted(bandwidths)
    # the memory is all that changes
    assert len({r.peak_flops for r in rows}) == 1


def test_node_scaling_best_allocation_never_loses_to_the_budget_allocation(budget, problem):
    fixed = examples.node_scaling(budget.design, problem)
    best = examples.node_scaling(budget.design, problem, optimize=budget.search.vary, iterations=3)
    assert [r.label for r in fixed] == list(examples.NODES)
    for f, b in zip(fixed, best, strict=True):
        assert b.step_time_s <= f.step_time_s * (1 + 1e-12), f.label
    # two decades of scaling: the newest node beats the oldest by far
    assert best[-1].step_time_s < 0.5 * best[0].step_time_s
    peaks = [r.peak_flops for r in fixed]
    assert peaks == sorted(peaks)


def test_best_chip_improves_and_keeps_the_budget(budget, problem):
    chip = examples.best_chip(budget.design, problem, budget.search.vary, starts=2, iterations=4)
    assert chip.best.step_time_s <= chip.start.step_time_s
    assert min(chip.start_times) == pytest.approx(chip.best.step_time_s)
    for group, start in chip.start.allocation.items():
        assert sum(chip.best.allocation[group].values()) == pytest.approx(sum(start.values()))


def test_two_dies_per_package_double_one(budget, scenario):
    one, two, wafer = examples.integration_options(budget.design, scenario, budget.strategies)
    assert two.peak_flops == pytest.approx(2 * one.peak_flops, rel=0.01)
    assert two.memory_bandwidth == pytest.approx(2 * one.memory_bandwidth, rel=0.01)
    assert all(r.feasible for r in (one, two, wafer))
    # HBM sits on the die edge, which grows as sqrt(area): per mm^2 of silicon the wafer has
    # less memory bandwidth than the packaged dies
    assert wafer.memory_bandwidth / 32 < one.memory_bandwidth


def test_integration_that_does_not_divide_the_cluster_is_an_error(budget, scenario):
    odd = examples.Integration("odd", "wafer-scale", 1, budget.design.budget.die_area * 3, 1)
    with pytest.raises(ValueError, match="does not divide"):
        examples.integration_options(budget.design, scenario, budget.strategies, [odd])


def test_example_data_does_not_import_matplotlib():
    code = "import sys, deepflow.codesign.examples; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tornado_plot_is_written(tmp_path, budget, scenario):
    pytest.importorskip("matplotlib")
    keys = ["budget.tdp", "allocation.area.compute"]
    rows = elasticities(scenario, keys, design=budget.design)
    path = tmp_path / "tornado.png"
    plot_tornado(tornado_data(rows), path)
    assert path.stat().st_size > 0
    assert {r.key for r in rows} == set(keys)


def test_plots_script_runs_on_an_lstm_operator_graph_scenario(tmp_path):
    """examples/arch/plots.py reads an operator-graph scenario (the RNNLM: 2 LSTM layers of
    1500 units) through deepflow codesign's workload interface and draws its four plots,
    the packaging study in place of the transformer-only integration study."""
    pytest.importorskip("matplotlib")
    crossflow = EXAMPLES.parent / "crossflow"
    run = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "plots.py"),
            str(tmp_path),
            "--scenario",
            str(crossflow / "rnnlm-8.yaml"),
            "--budget",
            str(crossflow / "budget-4nm.yaml"),
            "--fast",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best_chip.png",
        "hbm_generations.png",
        "node_scaling.png",
        "packaging.png",
    ]
    assert "packaging (same per-die budget)" in run.stdout
    assert "wafer-scale mesh (8 dies / wafer)" in run.stdout


def test_n3_tiles_worse_than_n4_at_the_budget_allocation(budget, problem):
    """The numbers docs/codesign.md gives for n3 being slower than n4 at the budget's
    allocation: 201 vs. 133 units, 160 vs. 235 KiB of L1 per unit, and the hierarchical
    roofline of the best strategy's tp-4 GEMMs at 0.52 vs. 1.00."""
    from deepflow.codesign.point import evaluate_design, matmul_factor
    from deepflow.tech import generate

    got = {}
    for node in ("n4", "n3"):
        design = examples._variant(budget.design, node, {"node": node})
        g = generate(design)
        point = evaluate_design(design, problem)
        tp = int(problem.strategies.tp[point.strategy_index])
        l1 = g.hierarchy.sram[0].instance_capacity / 1024
        got[node] = (g.compute_units, round(l1), tp, matmul_factor(g, problem.gemm_shapes(tp)))
        got[node] += (point.step_time_s,)
    assert got["n4"][:3] == (133, 235, 4) and got["n3"][:3] == (201, 160, 4)
    assert got["n4"][3] == pytest.approx(1.00, abs=0.005)
    assert got["n3"][3] == pytest.approx(0.52, abs=0.005)
    assert got["n3"][4] > got["n4"][4]
