"""MSCCL-IR collective algorithms: parsing, the per-rank schedule view, symbolic execution,
conversion to per-rank Chakra ETs, and to the network layer's step programs."""

from deepflow.interop.msccl.dataflow import DataflowResult, run_dataflow, verify_collective
from deepflow.interop.msccl.ir import (
    Buffer,
    Gpu,
    MscclAlgorithm,
    MscclCollective,
    Step,
    StepType,
    Threadblock,
    parse_msccl,
    read_msccl,
)
from deepflow.interop.msccl.program import msccl_algorithm, msccl_to_program, strategy_algorithms
from deepflow.interop.msccl.schedule import (
    ScheduledStep,
    StepKey,
    chunk_bytes,
    input_chunks,
    rank_schedules,
)
from deepflow.interop.msccl.to_chakra import msccl_to_chakra

__all__ = [
    "Buffer",
    "DataflowResult",
    "Gpu",
    "MscclAlgorithm",
    "MscclCollective",
    "ScheduledStep",
    "Step",
    "StepKey",
    "StepType",
    "Threadblock",
    "chunk_bytes",
    "input_chunks",
    "msccl_algorithm",
    "msccl_to_chakra",
    "msccl_to_program",
    "parse_msccl",
    "rank_schedules",
    "read_msccl",
    "run_dataflow",
    "strategy_algorithms",
    "verify_collective",
]
