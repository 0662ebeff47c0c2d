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


def test_fms_fsdp_within_12_percent():
    """PyTorch FSDP/HSDP (issue 13's target 12 %): with the fsdp (eager ibm-fms kernels) and
    fsdp-compiled profiles and the measured Hopper kernel curves, 11.9 %: SDPA's
    FlashAttention-2 kernel (``attention_kernel``; 14.1 % at the cuDNN attention curve),
    ibm-fms's separate query/key/value and wg/w1 linears (``separate_projections``) and
    the foreach AdamW + FSDP gradient clipping (92 bytes per parameter). 22.3 % with
    Megatron's kernels and the published-table curves. The H100 rows stay 13-24 % too fast."""
    r = result("fms-fsdp")
    assert r.infeasible == 0
    assert r.mape <= 0.12


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


def test_hf_step_h200_peak_memory_within_10_percent():
    """issue 13: hf-trainer's peak memory on the measured single-H200 Hugging Face steps,
    mean abs error at most 10 % (0.2 %: saved tensors of the transformers code under CUDA
    autocast, the loss's gradients at the backward peak, gradients made in backward)."""
    r = result("hf-step-h200")
    assert r.infeasible == 0
    assert r.memory_mape is not None and r.memory_mape <= 0.10
    assert all(abs(row.memory_error) <= 0.02 for row in r.rows)


def test_hf_step_h200_within_15_percent():
    """issue 13's target: hf-trainer's step time on the measured single-H200 steps, mean
    abs error at most 15 % (14.3 %: 16.5 % before Llama's separate q/k/v and gate/up
    linears, each its own GEMM, autocast cast and gradient accumulation, and the LM head's
    autocast weight cast; 22 % with the stand-in switches). Every row is still too fast:
    GPT-2 -20 to -21 %, Llama -7 to -10 % (-14 % on the smallest step). Not modelled:
    eager mixed-dtype element-wise kernels (bf16 + fp32 under autocast run PyTorch's
    non-vectorised casting loop), cuDNN attention with dropout (GPT-2) at its own measured
    speed, GPT-2's odd vocabulary (50257) in the LM head GEMM."""
    r = result("hf-step-h200")
    assert r.infeasible == 0
    assert r.mape <= 0.15
    assert all(row.error < 0 for row in r.rows)


def test_megatron_moe_modelzoo_every_row_feasible_regression_bound():
    """issue 14: the 12 Qwen3-235B rows that deepflow can express (H100 and GB200; MoE
    parallel folding with ETP 1 keeps EP 8 inside a node). 13.2 % mean, worst 30.2 % (the
    GB200 row, on Hopper-derived Blackwell efficiencies); was 50.7 % on 9 rows with EP
    spread over nodes."""
    r = result("megatron-moe-modelzoo")
    assert r.infeasible == 0
    assert len(r.rows) == 12
    assert r.mape <= 0.135
    assert r.worst <= 0.31


@pytest.mark.xfail(
    strict=True,
    reason="issue 14's target 12 % mean, 30 % worst: at 13.2 % / 30.2 %. The dropless rows "
    "(learned routing) are modelled with balanced routing (moe.imbalance 1.0; the source "
    "states no imbalance) and run 4-16 % too fast; the GB200 row uses the B200 efficiency "
    "data without CUDA graphs (+30 %); row 5 (tp4 pp8 vpp4, 4K) is 30 % too fast",
)
def test_megatron_moe_modelzoo_within_12_percent_30_worst():
    r = result("megatron-moe-modelzoo")
    assert r.mape <= 0.12
    assert r.worst <= 0.30


def test_simumax_b200_moe_feasible_memory_within_10_percent_worst_30():
    """issue 14: the DeepSeek-V2/V3-shaped MoE runs on 8 B200: every row feasible, peak
    memory within 10 % (1.0 % mean), no row worse than 30 % (21.3 %)."""
    r = result("simumax-b200-moe")
    assert r.infeasible == 0
    assert len(r.rows) == 12
    assert r.worst <= 0.30
    assert r.memory_mape is not None and r.memory_mape <= 0.10
    assert all(abs(row.memory_error) <= 0.02 for row in r.rows)
    assert r.mape <= 0.16


@pytest.mark.xfail(
    strict=True,
    reason="issue 14's target 12 %: at 15.3 %, every row too fast (-8 to -21 %, EP 8 rows "
    "most); the NCCL all-to-all's NVLink efficiency is the ring collectives' and the MLA "
    "attention (192/128 head dims) runs at the calibrated flash-attention rate",
)
def test_simumax_b200_moe_within_12_percent():
    assert result("simumax-b200-moe").mape <= 0.12


def test_every_data_set_states_its_source_and_numeric_bounds():
    for d in STEP_TIME_DATASETS:
        assert isinstance(d.source, str) and d.source.strip(), d.name
        for bound in (d.mape_bound, d.worst_bound, d.memory_bound):
            assert bound is None or isinstance(bound, float), d.name
