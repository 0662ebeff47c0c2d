"""Gradient co-design improves every start, respects the budgets and matches a grid;
NSGA-II returns a non-dominated front; sensitivity and the CLI."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from tests.tech.helpers import EXAMPLES, open_design, small_scenario

from deepflow.cli import main
from deepflow.codesign.gradient import gradient_search, grid_search
from deepflow.codesign.pareto import non_dominated, nsga2_search
from deepflow.codesign.point import Problem
from deepflow.codesign.sensitivity import elasticities, tornado_data
from deepflow.codesign.space import DesignSpace, project_simplex
from deepflow.specs import default_scenario
from deepflow.tech import generate

TWO = ["area.compute", "area.memory_controller", "power.compute", "power.memory"]


@pytest.fixture(scope="module")
def problem():
    return Problem.from_scenario(small_scenario())


@pytest.fixture(scope="module")
def search(problem):
    space = DesignSpace.of(open_design(), TWO)
    return space, gradient_search(space, problem, starts=3, iterations=20, seed=1)


def test_gradient_improves_every_start(search):
    _, result = search
    for start in result.starts:
        assert start.time < start.time0
        assert list(start.history) == sorted(start.history, reverse=True)


def test_gradient_designs_respect_budgets(search):
    space, result = search
    for start in result.starts:
        design = space.design(start.x)
        for group in ("area", "power", "perimeter"):
            fractions = design.allocation.group(group)
            assert sum(fractions.values()) <= 1 + 1e-9
            assert min(fractions.values()) >= 0
        g = generate(design)
        assert sum(g.power_w.values()) <= design.budget.tdp * (1 + 1e-9)
        assert sum(g.area_mm2.values()) <= design.budget.total_die_area * (1 + 1e-9)


def test_gradient_best_within_5_percent_of_grid(search, problem):
    space, result = search
    _, grid_time = grid_search(space, problem, points=21)
    assert result.best.step_time_s <= 1.05 * grid_time


def test_search_is_deterministic(problem):
    space = DesignSpace.of(open_design(), TWO)
    calls: list[tuple[int, int]] = []
    a = gradient_search(space, problem, starts=2, iterations=3, seed=7)
    b = gradient_search(
        space,
        problem,
        starts=2,
        iterations=3,
        seed=7,
        on_progress=lambda d, t: calls.append((d, t)),
    )
    assert [s.time for s in a.starts] == [s.time for s in b.starts]
    assert calls == [(1, 2), (2, 2)]  # the progress bar's count, one per finished start


@given(
    v=arrays(np.float64, st.integers(2, 6), elements=st.floats(-2, 2)), total=st.floats(0.1, 1.0)
)
def test_projection_lands_on_the_capped_simplex(v, total):
    x = project_simplex(v, total, 0.01)
    assert x.sum() == pytest.approx(total, abs=1e-9) or total < 0.01 * len(v)
    assert np.all(x >= 0.01 - 1e-12)


@given(
    values=arrays(
        np.float64, st.tuples(st.integers(1, 30), st.integers(2, 3)), elements=st.floats(0, 10)
    )
)
def test_non_dominated_front_property(values):
    mask = non_dominated(values)
    front = values[mask]
    assert mask.any()
    for a in front:  # no front member dominates another
        assert not np.any(np.all(front <= a, axis=1) & np.any(front < a, axis=1))
    for b in values[~mask]:  # every other point is dominated by a front member
        assert np.any(np.all(front <= b, axis=1) & np.any(front < b, axis=1))


def test_nsga2_returns_a_non_dominated_front(problem):
    pytest.importorskip("optuna", reason="optuna is an optional dependency (pip install optuna)")
    space = DesignSpace.of(open_design(), TWO)
    calls: list[tuple[int, int]] = []
    result = nsga2_search(
        space, problem, ("time", "energy"), trials=24, population=8, seed=3,
        on_progress=lambda d, t: calls.append((d, t)),
    )  # fmt: skip
    assert calls == [(i, 24) for i in range(1, 25)]
    front = result.values[list(result.front)]
    assert len(front) >= 1 and np.all(np.isfinite(front))
    for a in front:
        assert not np.any(np.all(front <= a, axis=1) & np.any(front < a, axis=1))


def test_memory_bandwidth_elasticity_is_negative_and_bounded():
    rows = elasticities(
        default_scenario(), ["accelerator.memory_bandwidth", "accelerator.peak_flops"]
    )
    for r in rows:
        assert -1.0 - 1e-6 <= r.elasticity <= 0.0
    bars = tornado_data(rows)
    assert abs(bars[0]["elasticity"]) >= abs(bars[-1]["elasticity"])


def test_unknown_sensitivity_key_is_exit_2():
    runner = CliRunner()
    scenario = str(EXAMPLES / "gpt3-1024.yaml")
    out = runner.invoke(main, ["sensitivity", scenario, "--vary", "accelerator.nope"])
    assert out.exit_code == 2 and "accelerator.nope" in out.output


def test_arch_cli_prints_the_accelerator():
    out = CliRunner().invoke(main, ["arch", str(EXAMPLES / "h100-class.yaml"), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["feasible"] and data["compute_units"] == 132
    assert math.isfinite(data["accelerator"]["peak_flops"]["bf16"])


def test_hierarchical_roofline_of_a_point_follows_tp():
    """The matmul efficiency of a co-design point comes from the GEMMs sharded by the
    strategy's tp: smaller per-device GEMMs tile worse, so it falls as tp grows, and a
    mixed-tp grid reports the system of the tp its best strategy uses."""
    from deepflow.codesign.point import StrategyGrid, evaluate_design

    design = open_design()
    base = generate(design).accelerator.efficiency.matmul
    effs = []
    for tp in (1, 2, 4, 8):
        grid = StrategyGrid(
            tp=(tp,), pp=(1,), micro_batch_size=(1,), recompute=("selective",), zero=(0,)
        )
        prob = Problem.from_scenario(small_scenario(), grid=grid)
        point = evaluate_design(design, prob)
        assert point.feasible
        effs.append(point.system.accelerator.efficiency.matmul / base)
        assert prob.gemm_shapes(tp) != prob.gemm_shapes(1) or tp == 1
    assert all(a > b for a, b in itertools.pairwise(effs)), effs
    grid = StrategyGrid(
        tp=(8, 1), pp=(1,), micro_batch_size=(1,), recompute=("selective",), zero=(0,)
    )
    mixed = Problem.from_scenario(small_scenario(), grid=grid)
    point = evaluate_design(design, mixed)
    tp_best = int(mixed.strategies.tp[point.strategy_index])
    assert point.system.accelerator.efficiency.matmul / base == pytest.approx(
        effs[(1, 2, 4, 8).index(tp_best)]
    )


@pytest.mark.parametrize("packaging", ["cowos-s", "wafer-scale"])
def test_one_vectorized_call_equals_evaluating_each_tp_on_its_own_system(packaging):
    """The co-design point evaluates a mixed-tp grid in one call with a per-strategy matmul
    scale (one call per tp on a mesh, whose rings follow tp); every step time, the chosen
    strategy, its system, energy and cost equal those of the per-tp path (each tp group
    evaluated on the system_for of its own sharded GEMMs and tp rings)."""
    from deepflow.codesign.energy import step_energy
    from deepflow.codesign.point import StrategyGrid, evaluate_generated, system_for
    from deepflow.codesign.space import DesignSpace
    from deepflow.estimate import evaluate

    grid = StrategyGrid(tp=(4, 1, 2, 8), pp=(1, 2), micro_batch_size=(1, 2), zero=(0, 1))
    prob = Problem.from_scenario(small_scenario(), grid=grid)
    data = open_design().model_dump()
    data["technology"]["packaging"] = packaging
    design = type(open_design()).model_validate(data)
    space = DesignSpace.of(design, TWO)
    mesh = packaging == "wafer-scale"
    rng = np.random.default_rng(3)
    for x in [space.start()] + [space.random(rng) for _ in range(3)]:
        generated = generate(space.design(x))
        point = evaluate_generated(generated, prob)
        tps = np.asarray(prob.strategies.tp)
        best = (math.inf, -1, None, None)
        for tp in sorted(set(tps.tolist())):
            index = np.flatnonzero(tps == tp)
            shapes = prob.gemm_shapes(tp)
            inner = tp if mesh else 1
            system = system_for(generated, prob.system, shapes, prob.precision, inner=inner)
            sub = evaluate(prob.model, system, prob.global_batch_size, prob.strategies.take(index))
            times = np.where(sub.feasible, sub.step_time, np.inf)
            j = int(np.argmin(times))
            if times[j] < best[0]:
                best = (float(times[j]), int(index[j]), (sub, j, shapes), system)
        step, index, (sub, j, shapes), system = best
        assert point.feasible
        assert point.step_time_s == step and point.strategy_index == index
        assert point.system == system
        energy = step_energy(generated, sub, j, shapes, prob.precision)
        assert point.energy == energy
