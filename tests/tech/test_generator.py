"""The generator lands on the data sheets of A100-, H100- and B200-class parts, solves
voltage robustly, and the generated accelerator predicts like the preset."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.tech.helpers import CLASSES, SYSTEMS, class_design

from deepflow.codesign.point import Problem, evaluate_design
from deepflow.estimate import predict
from deepflow.specs import accelerator_from, scenario_from_dict
from deepflow.tech import PowerLimit, generate, process_node, solve_operating_point
from deepflow.tech.generator import compute_power


@pytest.mark.parametrize("name", list(CLASSES))
def test_generated_class_within_25_percent_of_data_sheet(name):
    g = generate(class_design(name))
    preset = accelerator_from(CLASSES[name])
    assert g.feasible, g.reason
    assert g.accelerator.peak_flops.bf16 == pytest.approx(preset.peak_flops.bf16, rel=0.25)
    assert g.accelerator.memory_bandwidth == pytest.approx(preset.memory_bandwidth, rel=0.25)


@pytest.mark.parametrize("name", list(CLASSES))
def test_gpt3_step_time_within_20_percent_of_preset(name):
    scenario = scenario_from_dict(
        {
            "model": "gpt3-175b",
            "system": {"preset": SYSTEMS[name], "num_accelerators": 1024},
            "strategy": {
                "tp": 8,
                "pp": 8,
                "sequence_parallel": True,
                "recompute": "selective",
                "micro_batch_size": 1,
            },
            "training": {"global_batch_size": 1536},
        }
    )
    preset_time = predict(scenario).step_time_s
    point = evaluate_design(class_design(name), Problem.from_scenario(scenario))
    assert point.feasible, point.reason
    assert point.step_time_s == pytest.approx(preset_time, rel=0.20)


@given(
    budget=st.floats(1.0, 5000.0),
    nominal=st.floats(10.0, 2000.0),
    node=st.sampled_from(["n16", "n7", "n5", "n4", "n3", "n2"]),
)
def test_voltage_solution_is_above_threshold_and_meets_budget(budget, nominal, node):
    tech = process_node(node)
    op = solve_operating_point(tech, nominal, budget)
    assert tech.min_voltage <= op.voltage <= tech.max_voltage
    assert op.voltage > tech.threshold_voltage
    assert op.frequency > 0
    if op.limit is PowerLimit.BUDGET:
        assert compute_power(tech, nominal, op.voltage) == pytest.approx(budget, rel=1e-9)
    else:
        assert op.power <= budget * (1 + 1e-12)


def test_more_power_never_lowers_the_clock():
    tech = process_node("n4")
    clocks = [solve_operating_point(tech, 400.0, p).frequency for p in (100, 300, 500, 800)]
    assert clocks == sorted(clocks)


def test_budget_left_empty_is_infeasible_not_an_error():
    design = class_design("a100")
    alloc = design.allocation.with_values({("area", "memory_controller"): 0.0})
    g = generate(design.model_copy(update={"allocation": alloc}))
    assert not g.feasible and "hbm2e" in g.reason


def test_generated_design_respects_its_budgets():
    for name in CLASSES:
        g = generate(class_design(name))
        d = g.design
        assert sum(g.power_w.values()) <= d.budget.tdp * (1 + 1e-9)
        assert sum(g.area_mm2.values()) <= d.budget.total_die_area * (1 + 1e-9)
        mem = d.technology.memory
        assert d.budget.total_die_area + g.memory_stacks * mem.footprint <= d.package_area
