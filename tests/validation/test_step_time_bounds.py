"""Predicted step time against published measurements, with bounds that fail.

One set of efficiency data per accelerator (on the accelerator presets), never per row.
The targets are 8 % mean / 15 % worst on Megatron-LM 2021, 12 % on vTrain multi-node and
13.2 % on vTrain single-node; Megatron-LM 2020 has a regression bound at the level reached.
"""

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


def test_vtrain_single_node_within_13_2_percent():
    """13.1 % (13.3 % before Megatron-DeepSpeed's per-micro-batch loop, the loss's
    per-token kernels and the host issue time of the embedding and LM head; 14.6 % before
    Megatron's causal softmax triangle, the vTrain rows' fp16 gradients and fitted node
    latency, and the dense embedding gradient): issue 11/13's target, 13.2 %. The
    host-bound TP 2-8 rows stay too fast (``bench/vtrain_single_breakdown.py``)."""
    r = result("vtrain-single")
    assert r.infeasible == 0
    assert r.mape <= 0.132


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


def test_simumax_b200_within_12_percent():
    """issue 14's target 12 %: 11.4 % (worst 27.5 %, TP 8; 11.3 % / 27.7 % before the
    B200's 128/128 attention was fitted apart from its 192/128 records), with the gradient
    reduce-scatter and parameter all-gather after the backward as the launcher runs them
    (no --overlap-grad-reduce / --overlap-param-gather: Megatron-LM's defaults are off);
    13.1 % with them assumed overlapped. Every row is still too fast, most at TP 8 (the
    B200 NVLink efficiency is the A100's, no B200 collective table)."""
    r = result("simumax-b200")
    assert r.infeasible == 0
    assert r.mape <= 0.12
    assert r.worst <= 0.28


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


def test_megatron_moe_modelzoo_every_row_feasible_within_12_percent():
    """issue 14: the 15 Qwen3-235B rows that deepflow can express (H100, GB200 and GB300,
    BF16 and MXFP8; MoE parallel folding with ETP 1), the "flex dispatcher, DeepEP backend"
    rows with DeepEP's kernels (strategy.moe_dispatcher: deepep), the GB200/GB300 fused
    attention from the B200's TransformerEngine records (scripts/fit_kernels.py), the
    dropless rows' learned routing as moe.routing aux_loss (deepflow.parallel.routing),
    each expert's uneven rows padded to whole GEMM tiles in expectation
    (deepflow.hardware.grouped_tiles): 10.0 % mean, worst 27.3 % (row 5); 9.5 % / 25.4 %
    with equal rows per expert; 10.5 % / 32.1 % with every row routed balanced;
    11.6 % before the B200 attention's 128/128 curve was fitted apart from its 192/128
    (MLA) records. Before: 13.2 % / 30.2 % on the 12 BF16 rows with NCCL all-to-alls and
    the GB200 attention at the FlashAttention-2 rate."""
    r = result("megatron-moe-modelzoo")
    assert r.infeasible == 0
    assert len(r.rows) == 15
    assert r.mape <= 0.12
    assert r.worst <= 0.30


def test_megatron_moe_modelzoo_no_row_worse_than_30_percent():
    """issue 14's target: no MoE row worse than 30 %. Worst row 5 (tp4 pp8 vpp4 ep8, 4K,
    dropless) at -27.3 % with the dropless rows routed as moe.routing aux_loss (busiest-rank
    imbalance 1.079 at EP 8 from Wang et al. 2024's measured MaxVio, not fitted to these
    rows) and the experts' uneven rows padded to whole tiles in expectation (the previous
    equal-rows rule gave -25.4 % through a whole tile per expert at any load above 1;
    python scripts/routing_imbalance_report.py, docs/moe.md "Validation": row 5 also misses
    a per-micro-batch cost no sourced term was found for)."""
    assert result("megatron-moe-modelzoo").worst <= 0.30


def test_simumax_b200_moe_feasible_memory_within_10_percent_worst_30():
    """issue 14: the DeepSeek-V2/V3-shaped MoE runs on 8 B200: every row feasible, peak
    memory within 10 % (1.0 % mean), no row worse than 30 % (16.2 %; 18.8 % before the
    192/128 attention factor), with the data-parallel collectives after the backward as the
    launcher runs them."""
    r = result("simumax-b200-moe")
    assert r.infeasible == 0
    assert len(r.rows) == 12
    assert r.worst <= 0.17
    assert r.memory_mape is not None and r.memory_mape <= 0.10
    assert all(abs(row.memory_error) <= 0.02 for row in r.rows)


def test_simumax_b200_moe_within_12_percent():
    """issue 14's target 12 %: 11.6 % mean (13.4 % before), the MLA attention (192/128 head
    dims) at its own SimuMax-fitted rate: the B200 attention curve's 192/128 factors
    (forward 0.92, backward 0.67 of the 128/128 fractions; python bench/kernel_fit_report.py)."""
    assert result("simumax-b200-moe").mape <= 0.12


def test_every_data_set_states_its_source_and_numeric_bounds():
    for d in STEP_TIME_DATASETS:
        assert isinstance(d.source, str) and d.source.strip(), d.name
        for bound in (d.mape_bound, d.worst_bound, d.memory_bound):
            assert bound is None or isinstance(bound, float), d.name
