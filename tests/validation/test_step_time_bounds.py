"""Predicted step time against published measurements, with bounds that fail.

One set of efficiency data per accelerator (on the accelerator presets), never per row.
The issue's targets are 8 % mean / 15 % worst on Megatron-LM 2021, 12 % on vTrain
multi-node and 15 % on vTrain single-node. Where the model does not reach a target yet, a
regression bound at the level reached holds it there and a strict xfail records the gap.
"""

import pytest

from deepflow.validation.runner import STEP_TIME_DATASETS, run_dataset

RESULTS = {}


def result(name):
    if name not in RESULTS:
        dataset = next(d for d in STEP_TIME_DATASETS if d.name == name)
        RESULTS[name] = run_dataset(dataset)
    return RESULTS[name]


def test_vtrain_multi_node_within_12_percent():
    r = result("vtrain-multi")
    assert r.infeasible == 0
    assert r.mape <= 0.12


def test_vtrain_single_node_within_15_percent():
    r = result("vtrain-single")
    assert r.infeasible == 0
    assert r.mape <= 0.15


def test_megatron_2021_regression_bound():
    r = result("megatron-2021")
    assert r.infeasible == 0
    assert r.mape <= 0.09
    assert r.worst <= 0.15


@pytest.mark.xfail(strict=True, reason="model is 8.7% optimistic on Megatron-LM 2021 (target 8%)")
def test_megatron_2021_target():
    r = result("megatron-2021")
    assert r.mape <= 0.08 and r.worst <= 0.15


def test_megatron_2020_regression_bound():
    r = result("megatron-2020")
    assert r.infeasible == 0
    assert r.mape <= 0.08
