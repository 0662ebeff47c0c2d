"""Accelerator specs: peak throughput per precision, memory, links, power, efficiency data."""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from deepflow.specs.base import (
    Bandwidth,
    Bytes,
    FlopRate,
    Fraction,
    Name,
    PositiveInt,
    Seconds,
    Sources,
    Spec,
    Watts,
)
from deepflow.specs.kernels import Calibration


class Precision(str, Enum):
    """Numeric precision of the training step's matrix math (spec/scenario.md)."""

    FP32 = "fp32"
    TF32 = "tf32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"

    @property
    def activation_bytes(self) -> int:
        """Bytes per stored activation element: fp32/tf32 keep fp32 tensors, the rest keep
        16-bit tensors (fp8 training keeps bf16 activations outside GEMM inputs;
        Micikevicius et al. 2022, arXiv 2209.05433, sec. 4)."""
        return 4 if self in (Precision.FP32, Precision.TF32) else 2


class PeakFlops(Spec):
    """Dense (non-sparse) peak FLOP/s per precision, from the vendor data sheet.

    ``fp8`` is 0 for an accelerator without FP8 matrix units.
    """

    fp32: FlopRate
    tf32: FlopRate
    fp16: FlopRate
    bf16: FlopRate
    fp8: FlopRate = 0.0

    def at(self, precision: Precision) -> float:
        return float(getattr(self, precision.value))


class Efficiency(Spec):
    """Achievable fractions of peak and fixed overheads for one accelerator, as data.

    * ``matmul``: the largest fraction of dense peak a large, well-shaped GEMM reaches
      (maximum achievable matmul FLOP/s, measured by a GEMM sweep);
    * ``attention``: fraction of dense peak a fused (flash) attention kernel reaches;
    * ``memory``: fraction of the data-sheet memory bandwidth a streaming kernel reaches;
    * ``kernel_overhead``: fixed time per kernel launch on the device stream;
    * ``host_overhead``: host CPU time to issue one kernel from an eager framework
      (Python, dispatcher, autograd); kernels cannot run faster than the host issues them.
      Default: 20 us per kernel of deepflow's operator list (an eager Megatron-style GPT
      layer issues 141 aten ops in 1.03 ms of host time for forward + backward, 51 kernels
      in deepflow's count; measured by ``bench/host_overhead.py``);
    * ``checkpoint_host_factor``: host time of recomputing a checkpointed layer, in units of
      its forward pass's host time (same measurement: checkpointing adds 1.46 ms = 4.8 x
      the forward's 15 kernels x 20 us);
    * ``tile_m``/``tile_n``: output tile of the GEMM kernels, for tile and wave quantization;
    * ``tile_k``/``pipeline_stages``: K-slice per main-loop iteration and depth of the
      software pipeline that loads it; filling the pipeline costs ``stages * tile_k`` of K per
      output tile (CUTLASS 2.x sm80 defaults: 64 and 3);
    * ``source``: where each number comes from.
    """

    matmul: Fraction = 0.75
    attention: Fraction = 0.6
    memory: Fraction = 0.85
    kernel_overhead: Seconds = 5e-6
    host_overhead: Seconds = 20e-6
    checkpoint_host_factor: float = Field(default=4.8, ge=0)
    tile_m: PositiveInt = 128
    tile_n: PositiveInt = 128
    tile_k: PositiveInt = 64
    pipeline_stages: PositiveInt = 3
    source: str = "generic defaults"


class AcceleratorSpec(Spec):
    """One accelerator (GPU or TPU chip). Bandwidths are per direction."""

    name: Name = "custom"
    vendor: str = ""
    peak_flops: PeakFlops
    memory_capacity: Bytes
    memory_bandwidth: Bandwidth
    scale_up_bandwidth: Bandwidth = 0.0
    tdp: Watts = 0.0
    compute_units: PositiveInt = Field(
        default=108, description="SMs or cores, for wave quantization"
    )
    l2_cache: Bytes = 0.0
    efficiency: Efficiency = Efficiency()
    kernel_table: str = Field(
        default="",
        description="shipped measured-kernel table (hardware/data/kernels/<name>.yaml); "
        "empty: the efficiency block's model",
    )
    device_names: tuple[str, ...] = Field(
        default=(),
        description="device names a calibration file of this accelerator may carry "
        "(as torch.cuda.get_device_name reports them); empty: any",
    )
    calibration: Calibration | None = None
    microscaling: bool = Field(
        default=False,
        description="tensor cores take OCP Microscaling (MX) block-scaled FP8 operands and "
        "FP8 GEMMs in any operand layout (NVIDIA Blackwell, sm_100: tcgen05 block-scaled "
        "MMA); needed by strategy.fp8_recipe mxfp8 (deepflow.specs.fp8)",
    )
    sources: Sources

    def peak(self, precision: Precision) -> float:
        """Dense peak FLOP/s at ``precision``."""
        return self.peak_flops.at(precision)
