"""Run the shipped validation data sets through the evaluator and compare.

Each data set pairs published measurements with scenarios
(:mod:`deepflow.validation.datasets`); :func:`run_dataset` predicts every case with the
closed-form evaluator and returns a :class:`DatasetResult` carrying the error bounds the
test suite holds it to. Efficiency data is per accelerator (on the accelerator presets),
the same for every row: nothing here is fitted to a measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deepflow.estimate import predict
from deepflow.specs.scenario import scenario_from_dict
from deepflow.validation.datasets import (
    Case,
    fms_fsdp_cases,
    megatron_2020_cases,
    megatron_2021_cases,
    megatron_moe_modelzoo_cases,
    simumax_b200_cases,
    simumax_b200_moe_cases,
    vtrain_multi_cases,
    vtrain_single_cases,
)
from deepflow.validation.hf_step import hf_step_cases
from deepflow.validation.results import DatasetResult, RowResult

if TYPE_CHECKING:
    from deepflow.validation.nccl import NodeModel


@dataclass(frozen=True)
class StepTimeDataset:
    """A step-time data set: its cases, source and error bounds (None = report only)."""

    name: str
    description: str
    cases: Callable[[], list[Case]]
    source: str
    mape_bound: float | None
    worst_bound: float | None = None
    memory_bound: float | None = None  # mean abs peak-memory error, where rows measured it


STEP_TIME_DATASETS: tuple[StepTimeDataset, ...] = (
    StepTimeDataset(
        "megatron-2021",
        "Megatron-LM GPT 1.7B-1T on 32-3072 A100 80GB (Selene)",
        megatron_2021_cases,
        "Narayanan et al. 2021, SC21, Table 1",
        0.08,
        0.15,
    ),
    StepTimeDataset(
        "vtrain-multi",
        "Megatron-DeepSpeed GPT 3.6B-175B on 64-512 A100",
        vtrain_multi_cases,
        "vTrain (Bang et al., MICRO 2024) ground_truth_multi.csv",
        0.12,
    ),
    StepTimeDataset(
        "vtrain-single",
        "Megatron-DeepSpeed small GPTs on 2-8 A100 (one node)",
        vtrain_single_cases,
        "vTrain (Bang et al., MICRO 2024) ground_truth_single.csv",
        0.132,
    ),
    StepTimeDataset(
        "megatron-2020",
        "Megatron-LM GPT-2 1.2B-8.7B on DGX-2 V100 and DGX-A100 (README 2020)",
        megatron_2020_cases,
        "Megatron-LM README, September 2020",
        None,
    ),
    StepTimeDataset(
        "fms-fsdp",
        "PyTorch FSDP/HSDP Llama 2 7B-70B on 128 A100 and 96 H100 (eager and compiled)",
        fms_fsdp_cases,
        "IBM fms-fsdp README, 'Training throughput benchmarks' (2024)",
        0.12,
    ),
    StepTimeDataset(
        "megatron-moe-modelzoo",
        "Megatron-Core Qwen3-235B-A22B on 256 H100 and GB200: FSDP, PP 1-32, 4K-128K context",
        megatron_moe_modelzoo_cases,
        "Megatron-MoE-ModelZoo best_practice/qwen3 (2026)",
        0.12,
        0.30,
    ),
    StepTimeDataset(
        "hf-step-h200",
        "Hugging Face Llama and GPT-2 (0.76-0.84 B) training steps on one H200, Trainer defaults",
        hf_step_cases,
        "measured for deepflow: bench/framework_step.py (validation/data/hf_step_h200)",
        0.15,
        memory_bound=0.10,
    ),
    StepTimeDataset(
        "simumax-b200",
        "Megatron-LM Llama-3 70B/405B (truncated) on one 8x B200 node, TP 1-8, PP 1-2",
        simumax_b200_cases,
        "SimuMax B200 release v1.2 (MooreThreads/SimuMax 4dcaae5), measured runs",
        0.12,
    ),
    StepTimeDataset(
        "simumax-b200-moe",
        "Megatron-LM DeepSeek-V2/V3 shapes (4 layers, MoE) on one 8x B200 node, EP 4-8",
        simumax_b200_moe_cases,
        "SimuMax B200 release v1.2 (MooreThreads/SimuMax 4dcaae5), measured runs",
        0.12,
        0.30,
        memory_bound=0.10,
    ),
)


def run_case(case: Case) -> RowResult:
    """Predict one case and pair it with its measurement."""
    scenario = scenario_from_dict(case.scenario, name=case.row_id)
    prediction = predict(scenario)
    memory = case.measured_peak_memory_bytes
    return RowResult(
        dataset=case.dataset,
        row_id=case.row_id,
        description=case.description,
        measured=case.measured_step_time_s,
        predicted=prediction.step_time_s if prediction.feasible else None,
        reason=prediction.reason,
        measured_memory=memory,
        predicted_memory=prediction.peak_memory_bytes if prediction.feasible and memory else None,
    )


def run_dataset(dataset: StepTimeDataset) -> DatasetResult:
    """Predict every case of ``dataset``."""
    rows = tuple(run_case(case) for case in dataset.cases())
    return DatasetResult(
        name=dataset.name,
        description=dataset.description,
        rows=rows,
        mape_bound=dataset.mape_bound,
        worst_bound=dataset.worst_bound,
        source=dataset.source,
        memory_bound=dataset.memory_bound,
    )


def _extra_datasets() -> dict[str, Callable[[], DatasetResult]]:
    """Data sets measured in other units (collective times), keyed by name.

    Each name is bound to its node model, not to a position in a list, so a data set runs
    alone (``deepflow validate --dataset nccl-v100`` evaluates only the V100 tables) and the
    pairing cannot drift if the list of models is reordered.
    """
    try:
        from deepflow.validation.nccl import a100_node, nccl_allreduce_dataset, v100_node
    except ImportError:  # collective validation not available
        return {}
    models = {"nccl-a100": a100_node, "nccl-v100": v100_node}

    def runner(make_model: Callable[[], NodeModel]) -> Callable[[], DatasetResult]:
        return lambda: nccl_allreduce_dataset(make_model())

    return {name: runner(make) for name, make in models.items()}


def all_dataset_names() -> list[str]:
    """Every data set ``deepflow validate`` knows, in report order."""
    return [d.name for d in STEP_TIME_DATASETS] + list(_extra_datasets())


def run_by_name(name: str) -> DatasetResult:
    """Run the data set called ``name``."""
    for dataset in STEP_TIME_DATASETS:
        if dataset.name == name:
            return run_dataset(dataset)
    extra = _extra_datasets()
    if name in extra:
        return extra[name]()
    raise KeyError(name)
