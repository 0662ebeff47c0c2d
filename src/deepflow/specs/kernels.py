"""Kernel-efficiency parameters as data: the fitted curves of one accelerator.

These are the value objects of the calibrated kernel model of
:mod:`deepflow.hardware.kernels` (the formulas and the fit live there; this module only
holds and validates the numbers). One :class:`KernelParams` describes one accelerator:

* ``gemm``: one :class:`GemmCurve` per precision (``fp32``, ``tf32``, ``fp16``, ``bf16``,
  ``fp8``); a precision that is absent falls back as :mod:`deepflow.hardware.kernels` says;
* ``grouped_gemm``: the same curve for grouped GEMMs (MoE experts), per precision;
* ``attention``: one :class:`AttentionCurve` per precision (fused flash attention);
* ``memory``: one :class:`MemoryCurve` (streaming element-wise kernels);
* ``source``: where the numbers come from (tables, fit script, fit error).

The shipped tables are ``hardware/data/kernels/<name>.yaml``; a calibration file
(``deepflow calibrate``) carries the same mapping under its ``fitted`` key.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import Field, field_validator

from deepflow.specs.base import PositiveInt, Seconds, Spec

PRECISION_NAMES = ("fp32", "tf32", "fp16", "bf16", "fp8")
"""Precisions a curve may be given for (the values of ``Precision``)."""

UnitFraction = Annotated[float, Field(gt=0, le=1.25)]
"""A fraction of a data-sheet figure; slightly above 1 is allowed for vendor figures that
are rounded down (a measured STREAM rate can exceed a rounded data-sheet bandwidth)."""


class GemmCurve(Spec):
    """Time of a GEMM ``[m, k] x [k, n]`` (``groups`` of them for a grouped GEMM):

    ``t = max(F / (P * peak_fraction * q_tile * q_wave * q_k), bytes / BW_mem) + latency_s``

    * ``peak_fraction``: fraction of the data-sheet dense peak ``P`` a large, well-shaped
      GEMM reaches;
    * ``tile_m`` x ``tile_n``: output tile of one thread block (tile quantization
      ``q_tile``), with tiles issued in waves over the compute units;
    * ``wave_loss``: the part of the last partial wave's idle time the library does not
      recover, ``q_wave = 1 - wave_loss (1 - T / (ceil(T / U) U))`` for ``T`` tiles on ``U``
      units (1: classic wave quantization; 0: stream-K or split-K spread the work evenly,
      Osama et al. 2023, "Stream-K", arXiv 2301.03598);
    * ``k_fill``: K-depth fill, ``q_k = k / (k + k_fill)`` (prologue and epilogue of each
      output tile amortized over its main loop);
    * ``latency_s``: fixed time per kernel (launch, prologue, tail).
    """

    peak_fraction: UnitFraction
    tile_m: PositiveInt = 128
    tile_n: PositiveInt = 128
    wave_loss: float = Field(default=1.0, ge=0, le=1)
    k_fill: float = Field(default=0.0, ge=0)
    latency_s: Seconds = 0.0


class AttentionCurve(Spec):
    """Time of a fused (flash) attention kernel:

    ``t_fwd = F_fwd / (P * forward_fraction * q_wave) + latency_s`` with
    ``F_fwd = 2 b h s_q s_kv (d_qk + d_v)`` (halved when causal) and ``q_wave`` the wave
    quantization of ``b h ceil(s_q / tile_q)`` query tiles; backward
    ``t_bwd = 2.5 F_fwd / (P * backward_fraction * q_wave) + latency_s``.
    """

    forward_fraction: UnitFraction
    backward_fraction: UnitFraction
    tile_q: PositiveInt = 128
    latency_s: Seconds = 0.0


class MemoryCurve(Spec):
    """Streaming kernels: ``t = bytes / (BW * fraction) + latency_s`` per kernel."""

    fraction: UnitFraction
    latency_s: Seconds = 0.0


class KernelParams(Spec):
    """The fitted kernel curves of one accelerator (see the module docstring)."""

    gemm: dict[str, GemmCurve] = Field(default_factory=dict)
    grouped_gemm: dict[str, GemmCurve] = Field(default_factory=dict)
    attention: dict[str, AttentionCurve] = Field(default_factory=dict)
    memory: MemoryCurve | None = None
    source: str = ""
    fit_error: dict[str, Any] = Field(default_factory=dict)

    @field_validator("gemm", "grouped_gemm", "attention")
    @classmethod
    def _known_precisions(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key not in PRECISION_NAMES:
                raise ValueError(
                    f"unknown precision {key!r}; expected one of {', '.join(PRECISION_NAMES)}"
                )
        return value


class OperatorRecord(Spec):
    """One measured operator of a calibration file (``kind: operator``): the FlexFlow-style
    profile of one operator shape, read by the operator simulator."""

    op: str
    shape: dict[str, Any] = Field(default_factory=dict)
    dtype: str = "fp32"
    backward: bool = False
    time_s: Seconds

    @field_validator("time_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value


class Calibration(Spec):
    """A calibration file resolved into a scenario (``system.accelerator.calibration``).

    ``file`` is the path as resolved, ``device`` the measured device's name, ``fitted`` its
    kernel curves (they replace the accelerator's shipped table), ``operators`` its
    per-operator measurements.
    """

    file: str
    device: str
    fitted: KernelParams
    operators: tuple[OperatorRecord, ...] = ()
