"""Predicted step time against published measurements, with bounds that fail.

One set of efficiency data per accelerator (on the accelerator presets), never per row.
The targets are 8 % mean / 15 % worst on Megatron-LM 2021, 12 % on vTrain multi-node and
15 % on vTrain single-node; Megatron-LM 2020 has a regression bound at the level reached.
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


def test_megatron_2021_within_8_percent_mean_15_worst():
    r = result("megatron-2021")
    assert r.infeasible == 0
    assert r.mape <= 0.08
    assert r.worst <= 0.15


def test_megatron_2020_regression_bound():
    r = result("megatron-2020")
    assert r.infeasible == 0
    assert r.mape <= 0.08


def test_fms_fsdp_every_row_feasible_within_15_percent():
    """PyTorch FSDP/HSDP (issue 11's target): with the fsdp (eager ibm-fms kernels) and
    fsdp-compiled profiles and the measured Hopper kernel curves, 14.1 % (22.3 % with
    Megatron's kernels and the published-table curves)."""
    r = result("fms-fsdp")
    assert r.infeasible == 0
    assert r.mape <= 0.15


@pytest.mark.xfail(
    strict=True,
    reason="issue 13's target 12 %: the H100 rows stay 17-29 % too fast; FSDP communication "
    "contending with compute for SMs is not modelled",
)
def test_fms_fsdp_within_12_percent():
    assert result("fms-fsdp").mape <= 0.12


def test_simumax_b200_regression_bound():
    """Where the calibrated kernel model stands: 13.1 % (was 34.9 % too fast with one 0.80
    matmul fraction for every chip); the remaining error is uniformly too fast and grows
    with TP (see test_simumax_b200_within_12_percent)."""
    r = result("simumax-b200")
    assert r.infeasible == 0
    assert r.mape <= 0.135


@pytest.mark.xfail(
    strict=True,
    reason="target 12 %; the calibrated kernels reach 13.1 %: every row is still too fast, "
    "most at TP 8 (the B200 NVLink efficiency is the A100's, no B200 collective table)",
)
def test_simumax_b200_within_12_percent():
    r = result("simumax-b200")
    assert r.mape <= 0.12
