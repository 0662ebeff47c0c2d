"""Kernel-efficiency parameters as data: the fitted curves of one accelerator.

These are the value objects of the calibrated kernel model of
:mod:`deepflow.hardware.kernels` (the formulas and the fit live there; this module only
holds and validates the numbers). One :class:`KernelParams` describes one accelerator:

* ``gemm``: one :class:`GemmCurve` per precision (``fp32``, ``tf32``, ``fp16``, ``bf16``,
  ``fp8``); a precision that is absent falls back as :mod:`deepflow.hardware.kernels` says;
* ``grouped_gemm``: the same curve for grouped GEMMs (MoE experts), per precision;
* ``attention``: one :class:`AttentionCurve` per precision (fused flash attention);
* ``flash_attention_2``: the same curve fitted to published FlashAttention-2 measurements
  only (Dao 2023), where a chip has them: the kernel PyTorch's
  ``scaled_dot_product_attention`` ran before it dispatched to cuDNN on Hopper, which a
  framework profile selects with ``attention_kernel: flash-attention-2`` (a chip without
  such records uses ``attention``);
* ``memory``: one :class:`MemoryCurve` (streaming kernels: copies, and the element-wise
  kernels of the estimator);
* ``elementwise``: measured element-wise/norm/softmax operators, one :class:`MemoryCurve`
  per operator (``layernorm``; ``layernorm.backward`` for forward + backward) over the
  least traffic the operator needs: how far one framework's kernels are from streaming;
* ``source``: where the numbers come from (tables, fit script, fit error).

The shipped tables are ``hardware/data/kernels/<name>.yaml``; a calibration file
(``deepflow calibrate``) carries the same mapping under its ``fitted`` key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)

from deepflow.errors import ConfigError
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
    * ``latency_s``: fixed time per kernel (launch, prologue, tail);
    * ``tiles``: the library's candidate output tiles (a kernel per tile shape, the one
      that runs fastest chosen per GEMM shape: :func:`deepflow.hardware.kernels.gemm_terms`);
      empty: the one tile ``tile_m`` x ``tile_n``. With a set, ``tile_m`` x ``tile_n`` is
      its reference tile (the one of highest per-tile intensity), at which ``peak_fraction``
      applies;
    * ``operand_intensity``: ``h`` of the per-tile efficiency ``a / (a + h)`` of a candidate
      of intensity ``a = tm tn / (tm + tn)`` (multiply-adds per operand element loaded per
      K step), relative to the reference tile's: the SM's MMA rate over its operand feed
      rate, in elements (0: every candidate runs at ``peak_fraction``);
    * ``group_streams`` (grouped GEMMs): 0 when one kernel runs all groups (a persistent
      grouped kernel: DeepGEMM, ``torch._grouped_mm``, CUTLASS grouped GEMM); ``s > 0`` when
      each group is its own GEMM kernel, issued round-robin over ``s`` streams (Transformer
      Engine's ``nvte_multi_stream_cublas_gemm``, ``num_streams = 4``): ``min(s, g)`` groups
      share the compute units at a time (their tiles make one wave count) and every round of
      ``s`` groups pays the latency, ``ceil(g / s) t_0``;
    * ``overlap``: the part of the shorter of the compute and memory terms hidden under the
      longer one, ``t = max(c, m) + (1 - overlap) min(c, m) + latency`` (1: the roofline's
      full overlap). A tile's epilogue writes its output (and, accumulating, reads it) after
      its main loop, not under it; where other tiles' main loops do not cover it, that
      traffic adds to the time. Grouped GEMMs of few tokens per expert show it most (MoE
      weight gradients: ``[n, k]`` per expert accumulated into the main gradient with K =
      the expert's tokens). A dense curve fits it where its table measures one shape at
      two output widths, else takes its architecture's or 1
      (:func:`deepflow.hardware.calibration._overlap_terms`);
    * ``mn_major_fraction``: the factor on ``peak_fraction`` for a GEMM whose two operands
      are both MN-major (neither contiguous along K: the weight gradient ``dY^T X`` of a
      row-major framework); 1 for precisions whose kernels do not depend on the operand
      layout (:func:`deepflow.hardware.kernels.operands_factor`);
    * ``host_issue_s`` (grouped GEMMs of one kernel per group, ``group_streams`` > 0): the
      host's time to issue one group's kernel; each round of groups takes at least that
      (PyTorch's ``_grouped_mm_fallback``: a host loop of ``mm_out`` calls; 0: the device
      is never waiting for the host);
    * ``clock_boost``, ``boost_window_s``: the clock of the table the curve was fitted to,
      where a host loop timed it (:mod:`deepflow.hardware.clock_boost`): the boost factor
      over the sustained clock and the window it lasts. The curve's own terms are those of
      the sustained clock; the estimator does not use these two (1 and 0: no boost).
    """

    peak_fraction: UnitFraction
    tile_m: PositiveInt = 128
    tile_n: PositiveInt = 128
    wave_loss: float = Field(default=1.0, ge=0, le=1)
    k_fill: float = Field(default=0.0, ge=0)
    latency_s: Seconds = 0.0
    group_streams: int = Field(default=0, ge=0)
    tiles: tuple[tuple[PositiveInt, PositiveInt], ...] = ()
    operand_intensity: float = Field(default=0.0, ge=0)
    overlap: float = Field(default=1.0, ge=0, le=1)
    mn_major_fraction: float = Field(default=1.0, gt=0, le=1)
    host_issue_s: Seconds = 0.0
    clock_boost: float = Field(default=1.0, ge=1)
    boost_window_s: Seconds = 0.0

    @model_serializer(mode="wrap")
    def _without_unused_terms(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The curve's mapping, without the layout and host terms where they do nothing
        (a written table lists them only on the curves that fit them)."""
        data = handler(self)
        for key, unused in (
            ("mn_major_fraction", 1.0),
            ("host_issue_s", 0.0),
            ("clock_boost", 1.0),
            ("boost_window_s", 0.0),
        ):
            if data.get(key) == unused:
                data.pop(key)
        return data

    def candidate_tiles(self) -> tuple[tuple[int, int], ...]:
        """The candidate tiles: ``tiles``, or the one tile ``tile_m`` x ``tile_n``."""
        return self.tiles or ((self.tile_m, self.tile_n),)


class HeadDimFactor(Spec):
    """The attention kernel's efficiency at head dimensions ``(qk_dim, v_dim)`` relative to
    the curve's reference head dimensions: ``forward`` multiplies ``forward_fraction``,
    ``backward`` multiplies ``backward_fraction`` for attention of exactly these head
    dimensions (a fused kernel compiles one tile configuration per head dimension, so its
    efficiency is a property of the pair; e.g. MLA's 192/128 against 128/128)."""

    qk_dim: PositiveInt
    v_dim: PositiveInt
    forward: float = Field(gt=0, le=4)
    backward: float = Field(gt=0, le=4)


class AttentionCurve(Spec):
    """Time of a fused (flash) attention kernel:

    ``t_fwd = F_fwd / (P * forward_fraction * c_fwd * q_wave) + latency_s`` with
    ``F_fwd = 2 b h s_q s_kv (d_qk + d_v)`` (halved when causal) and ``q_wave`` the wave
    quantization of ``b h ceil(s_q / tile_q)`` query tiles; backward
    ``t_bwd = 2.5 F_fwd / (P * backward_fraction * c_bwd * q_wave) + latency_s``.
    ``c_fwd``, ``c_bwd``: the :class:`HeadDimFactor` of the attention's head dimensions in
    ``head_dims``, 1 for head dimensions not listed (the reference ones, and those no table
    measured).
    """

    forward_fraction: UnitFraction
    backward_fraction: UnitFraction
    tile_q: PositiveInt = 128
    latency_s: Seconds = 0.0
    head_dims: list[HeadDimFactor] = Field(default_factory=list)


class MemoryCurve(Spec):
    """Streaming kernels: ``t = bytes / (BW * fraction) + latency_s`` per kernel; with
    ``host_floor_s`` > 0 (the element-wise curves of eager PyTorch operators),
    ``t = max(host_floor_s, bytes / (BW * fraction) + latency_s)``: the device waits for a
    host that issues the operator (dispatch, autograd) more slowly than the device runs it."""

    fraction: UnitFraction
    latency_s: Seconds = 0.0
    host_floor_s: Seconds = 0.0


class KernelParams(Spec):
    """The fitted kernel curves of one accelerator (see the module docstring)."""

    gemm: dict[str, GemmCurve] = Field(default_factory=dict)
    grouped_gemm: dict[str, GemmCurve] = Field(default_factory=dict)
    attention: dict[str, AttentionCurve] = Field(default_factory=dict)
    flash_attention_2: dict[str, AttentionCurve] = Field(default_factory=dict)
    memory: MemoryCurve | None = None
    elementwise: dict[str, MemoryCurve] = Field(default_factory=dict)
    source: str = ""
    fit_error: dict[str, Any] = Field(default_factory=dict)

    @field_validator("gemm", "grouped_gemm", "attention", "flash_attention_2")
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


SCHEMA = "deepflow.calibration/1"
KINDS = (
    "gemm",
    "grouped_gemm",
    "attention",
    "memory",
    "elementwise",
    "collective",
    "operator",
)
REQUIRED: dict[str, tuple[str, ...]] = {
    "gemm": ("dtype", "m", "n", "k", "time_s"),
    "grouped_gemm": ("dtype", "m", "n", "k", "groups", "time_s"),
    "attention": ("dtype", "batch", "heads", "seq", "head_dim", "causal", "backward", "time_s"),
    "memory": ("bytes", "time_s"),
    "elementwise": ("bytes", "time_s"),
    "collective": ("op", "ranks", "bytes", "time_s"),
    "operator": ("op", "time_s"),
}

# --- checking records ------------------------------------------------------------------------


def _number(value: object, path: str, integer: bool = False) -> float:
    if isinstance(value, bool) or value is None or value == "":
        raise ConfigError(f"expected a number, got {value!r}", path)
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"expected a number, got {value!r}", path) from None
    if not math.isfinite(x):
        raise ConfigError(f"must be finite, got {value!r}", path)
    if integer and x != int(x):
        raise ConfigError(f"must be an integer, got {value!r}", path)
    return x


def _flag(value: object, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if value in (0, 1):
        return bool(value)
    raise ConfigError(f"expected true or false, got {value!r}", path)


def check_record(record: object, path: str) -> dict[str, Any]:
    """A measurement record, checked: known kind, required fields present, times positive and
    finite, shapes positive integers; a :class:`ConfigError` naming ``path.field``
    otherwise. Returns the record with numbers as floats and flags as bools."""
    if not isinstance(record, Mapping):
        raise ConfigError(f"expected a mapping, got {record!r}", path)
    kind = record.get("kind")
    if kind not in KINDS:
        raise ConfigError(
            f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}", f"{path}.kind"
        )
    out: dict[str, Any] = dict(record)
    for key in REQUIRED[kind]:
        if key not in record or record[key] in (None, ""):
            raise ConfigError("missing required field", f"{path}.{key}")
    time_s = _number(record["time_s"], f"{path}.time_s")
    if time_s <= 0:
        raise ConfigError(
            f"must be a positive number of seconds, got {record['time_s']!r}", f"{path}.time_s"
        )
    out["time_s"] = time_s
    if "dtype" in REQUIRED[kind] or record.get("dtype") not in (None, ""):
        dtype = record.get("dtype")
        if dtype not in PRECISION_NAMES:
            raise ConfigError(
                f"unknown dtype {dtype!r}; expected one of {', '.join(PRECISION_NAMES)}",
                f"{path}.dtype",
            )
    for key in ("m", "n", "k", "groups", "batch", "heads", "kv_heads", "seq", "head_dim", "v_head_dim", "rows", "cols", "ranks"):  # fmt: skip
        if record.get(key) not in (None, ""):
            x = _number(record[key], f"{path}.{key}", integer=True)
            if x < 1:
                raise ConfigError(
                    f"must be a positive integer, got {record[key]!r}", f"{path}.{key}"
                )
            out[key] = x
    if record.get("bytes") not in (None, ""):
        x = _number(record["bytes"], f"{path}.bytes")
        if x <= 0:
            raise ConfigError(
                f"must be a positive number of bytes, got {record['bytes']!r}", f"{path}.bytes"
            )
        out["bytes"] = x
    for key in ("causal", "backward"):
        if record.get(key) not in (None, ""):
            out[key] = _flag(record[key], f"{path}.{key}")
    layout = record.get("layout")
    if layout not in (None, "") and layout not in GEMM_LAYOUTS:
        raise ConfigError(
            f"unknown GEMM operand layout {layout!r}; expected one of {', '.join(GEMM_LAYOUTS)}",
            f"{path}.layout",
        )
    return out


GEMM_LAYOUTS = ("nn", "nt", "tn", "tt")
"""Operand layouts of a GEMM record ``C[m, n] = A[m, k] B[k, n]`` (``layout``, optional), as
``deepflow calibrate`` built them in PyTorch: the first letter ``t`` when ``A`` is a
transposed view (stored ``[k, m]``: M-major), the second ``t`` when ``B`` is one (stored
``[n, k]``: K-major, ``nn.Linear``'s weight in the forward). ``tn``: both operands MN-major
(the weight gradient ``dY^T X``)."""


def layout_mn_major(layout: str) -> tuple[bool, bool]:
    """Whether ``A`` and ``B`` of a GEMM of operand ``layout`` (:data:`GEMM_LAYOUTS`) are
    MN-major (not contiguous along K)."""
    return layout[0] == "t", layout[1] == "n"


# --- calibration files in scenarios ----------------------------------------------------------


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML parse error on one line: the problem and where (PyYAML's message spans
    several lines with a caret drawing)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _normalized(name: str) -> str:
    return " ".join(name.lower().replace("-", " ").split())


def device_matches(device: str, names: tuple[str, ...]) -> bool:
    """The matching rule between a calibration file's ``device.name`` and an accelerator's
    ``device_names``: case-, hyphen- and space-insensitive, a listed name equal to the
    device name or a prefix of it ending at a word (``NVIDIA H200`` matches
    ``NVIDIA H200 141GB``, not ``NVIDIA H2000``). An accelerator without names (a custom
    one) accepts any device."""
    if not names:
        return True
    dev = _normalized(device)
    for name in names:
        n = _normalized(name)
        if dev == n or dev.startswith(n + " "):
            return True
    return False


def read_calibration(
    path: str | Path, device_names: tuple[str, ...] = (), accelerator: str = ""
) -> Calibration:
    """Read and check a calibration file for an accelerator with ``device_names``.

    Checked: the schema (``deepflow.calibration/1``), ``device.name`` against
    ``device_names`` (:func:`device_matches`), every measurement record (known kind, required
    fields, positive finite times, :func:`check_record`), and a ``fitted`` block (written by
    ``deepflow calibrate``; a measurements-only file must be fitted first). Errors are
    :class:`ConfigError` naming the file and the field.
    """
    source = str(path)
    try:
        text = Path(path).read_text("utf-8")
        # JSON through its own parser: YAML 1.1 reads JSON's ``1e-05`` as a string
        data = json.loads(text) if source.lower().endswith(".json") else yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"cannot read calibration file: {exc.strerror}", source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {yaml_problem(exc)}", source=source) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc}", source=source) from None
    try:
        if not isinstance(data, Mapping):
            raise ConfigError("a calibration file must be a mapping", "")
        if data.get("schema") != SCHEMA:
            raise ConfigError(f"expected {SCHEMA!r}, got {data.get('schema')!r}", "schema")
        device = data.get("device")
        if not isinstance(device, Mapping) or not isinstance(device.get("name"), str):
            raise ConfigError("missing required field (a mapping with a name)", "device.name")
        if not device_matches(device["name"], device_names):
            raise ConfigError(
                f"device {device['name']!r} does not match the scenario's accelerator "
                f"{accelerator!r} (device_names: {', '.join(device_names)})",
                "device.name",
            )
        records = data.get("measurements") or []
        if not isinstance(records, list):
            raise ConfigError("expected a list of records", "measurements")
        checked = [check_record(r, f"measurements[{i}]") for i, r in enumerate(records)]
        if "fitted" not in data or data["fitted"] is None:
            raise ConfigError(
                "missing required field; fit the measurements first "
                "(deepflow calibrate --fit MEASUREMENTS.csv --out FILE)",
                "fitted",
            )
        try:
            fitted = KernelParams.model_validate(data["fitted"])
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigError(
                f"{str(err['msg']).removeprefix('Value error, ')} (got {err.get('input')!r})",
                f"fitted.{loc}",
            ) from None
        operators = tuple(
            OperatorRecord(
                op=str(r["op"]),
                shape=dict(r.get("shape") or {}),
                dtype=str(r.get("dtype") or "fp32"),
                backward=bool(r.get("backward", False)),
                time_s=r["time_s"],
            )
            for r in checked
            if r["kind"] == "operator"
        )
    except ConfigError as exc:
        raise exc.with_source(source) from None
    return Calibration(file=source, device=device["name"], fitted=fitted, operators=operators)
