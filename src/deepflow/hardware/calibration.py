"""Calibration: measurement records -> fitted kernel curves, and the shipped source tables.

One function, :func:`fit_kernel_params`, turns measurement records (the ``measurements`` of
a calibration file, schema ``deepflow.calibration/1``) into the fitted curves of one
accelerator. ``scripts/fit_kernels.py`` calls it on the published microbenchmarks shipped
under ``hardware/data/microbenchmarks/`` (converted to records by :func:`published_records`)
to regenerate ``hardware/data/kernels/*.yaml``; ``deepflow calibrate --fit`` calls it on a
user's table. :func:`cross_validate` reports the leave-one-shape-out error of that same fit.

Record kinds used by the fit (other kinds, e.g. ``collective`` and ``operator``, are
ignored here)::

    {kind: gemm, dtype, m, n, k, groups: 1, time_s}
    {kind: grouped_gemm, dtype, m, n, k, groups, time_s}      # groups GEMMs m x n x k
    {kind: attention, dtype, batch, heads, kv_heads, seq, head_dim, causal, backward, time_s}
                         # backward: true = forward + backward time; v_head_dim optional
    {kind: memory, op, bytes, time_s}                         # bytes read + written
    {kind: elementwise, op, dtype, rows, cols, bytes, backward, time_s}

Optional keys: ``family`` (shape family for the error report), ``out_bytes`` (bytes of
output traffic per output element, default 2; twice the element width where the GEMM
accumulates into its output, :func:`~deepflow.hardware.kernels.output_bytes`), ``layout``
(a GEMM's operand layout, :data:`~deepflow.specs.kernels.GEMM_LAYOUTS`;
:func:`gemm_layout`), ``warmup_calls`` and ``timed_calls`` (a GEMM timed by the host's
clock over a loop of that many untimed and timed calls: fitted with the loop's clock
boost, :mod:`deepflow.hardware.clock_boost`).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from deepflow.errors import ConfigError
from deepflow.hardware.kernels import (
    GEMM_TILE_SET,
    LAYOUT_PRECISIONS,
    OPERAND_BYTES,
    STREAM_LATENCY_SIZES,
    TE_GROUPED_STREAMS,
    AttentionSample,
    Device,
    GemmSample,
    fit_attention_curve,
    fit_eager_stream_curve,
    fit_gemm_curve,
    fit_host_loop_curve,
    fit_peak_fraction,
    fit_stream_curve,
    leave_one_out,
    output_bytes,
    predict_attention,
    predict_gemm,
    stream_terms,
)
from deepflow.hardware.reduction import REDUCTION_OP, fit_reduction_curve, reduction_time
from deepflow.specs.accelerator import AcceleratorSpec, Precision
from deepflow.specs.kernels import (
    PRECISION_NAMES,
    SCHEMA,
    GemmCurve,
    KernelParams,
    MemoryCurve,
    check_record,
    layout_mn_major,
)

DEFAULT_BACKWARD_RATIO = 0.85
"""Backward/forward attention fraction when a table has forward rows only and no shipped
B200 table is available (the B200 fit's ratio is used when it is)."""


def read_measurements_csv(text: str, source: str) -> list[dict[str, Any]]:
    """Records of a flat measurement CSV (one column per key, ``shape`` as JSON, empty cells
    where a key does not apply), checked with :func:`check_record`."""
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows:
        raise ConfigError("no measurement rows", "measurements", source)
    out = []
    for i, row in enumerate(rows):
        record: dict[str, Any] = {k: v for k, v in row.items() if k and v not in (None, "")}
        if "shape" in record:
            try:
                record["shape"] = json.loads(record["shape"])
            except json.JSONDecodeError:
                raise ConfigError(
                    f"not valid JSON: {record['shape']!r}", f"measurements[{i}].shape", source
                ) from None
        try:
            out.append(check_record(record, f"measurements[{i}]"))
        except ConfigError as exc:
            raise exc.with_source(source) from None
    return out


# --- the fit -------------------------------------------------------------------------------


def _device(acc: AcceleratorSpec, dtype: str, memory_fraction: float) -> Device:
    return Device(
        peak=acc.peak(Precision(dtype)),
        memory_bandwidth=acc.memory_bandwidth,
        compute_units=acc.compute_units,
        memory_fraction=memory_fraction,
    )


def gemm_family(m: float, n: float, k: float, groups: float = 1.0) -> str:
    """Shape family of a GEMM for the error report: grouped, skinny (a side <= 256),
    small (largest side <= 2048), unaligned (a side not a multiple of 128), or large."""
    if groups > 1:
        return "grouped"
    if min(m, n) <= 256:
        return "skinny"
    if max(m, n, k) <= 2048:
        return "small"
    if any(x % 128 for x in (m, n, k)):
        return "unaligned"
    return "large"


@cache
def _calibrate_layouts() -> dict[tuple[int, int, int], str]:
    """``(m, n, k) -> layout`` of the GEMM sweeps of ``deepflow calibrate``
    (:func:`deepflow.hardware.calibrate.measure.gemm_shapes`, the full sweep first)."""
    from deepflow.hardware.calibrate.measure import gemm_shapes

    out: dict[tuple[int, int, int], str] = {}
    for quick in (False, True):
        for m, n, k, layout in gemm_shapes(quick):
            out.setdefault((m, n, k), layout)
    return out


def gemm_layout(record: Mapping[str, Any]) -> str | None:
    """The operand layout of a dense GEMM record (:data:`~deepflow.specs.kernels.GEMM_LAYOUTS`):
    its ``layout`` key; for a ``deepflow calibrate`` record written before the key existed
    (no ``layout``, no ``source``: the H200 file), the layout the calibrate sweep builds for
    that shape (``gemm_shapes``: squares ``nn``, skinny ``nt``, and per linear layer the
    forward ``nt``, the input gradient ``nn`` and the weight gradient ``tn``; unchanged
    since that run; fp8 ``nt`` always, ``_gemm_run`` builds its second operand K-major for
    cuBLASLt); ``None`` where unknown (published tables), taken as K-major."""
    layout = record.get("layout")
    if layout:
        return str(layout)
    if record.get("source") is None and record.get("kind") == "gemm":
        if record.get("dtype") == "fp8":
            return "nt"
        return _calibrate_layouts().get((int(record["m"]), int(record["n"]), int(record["k"])))
    return None


def _gemm_samples(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, GemmSample]]:
    out = []
    for r in records:
        g = float(r.get("groups") or 1.0)
        layout = gemm_layout(r)
        key = f"{int(r['m'])}x{int(r['n'])}x{int(r['k'])}x{int(g)}"
        fam = str(r.get("family") or gemm_family(r["m"], r["n"], r["k"], g))
        sample = GemmSample(
            m=r["m"],
            n=r["n"],
            k=r["k"],
            groups=g,
            time_s=r["time_s"],
            out_bytes=float(r.get("out_bytes") or 2.0),
            family=fam,
            mn_major=layout is not None and all(layout_mn_major(layout)),
            host_loop=(int(r.get("warmup_calls") or 0), int(r.get("timed_calls") or 0)),
        )
        out.append((key, sample))
    return out


def _attention_samples(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, AttentionSample]]:
    out = []
    for r in records:
        d = r["head_dim"]
        dv = r.get("v_head_dim") or d
        key = f"b{int(r['batch'])}h{int(r['heads'])}s{int(r['seq'])}d{int(d)}/{int(dv)}"
        causal, backward = bool(r["causal"]), bool(r["backward"])
        fam = r.get("family") or (
            ("causal " if causal else "")
            + ("forward+backward" if backward else "forward")
            # a table that states both head dimensions (SimuMax: 128/128 and MLA's 192/128)
            # reports its error per pair
            + (f" {int(d)}/{int(dv)}" if r.get("v_head_dim") else "")
        )
        sample = AttentionSample(
            batch=r["batch"],
            heads=r["heads"],
            seq=r["seq"],
            qk_dim=d,
            v_dim=dv,
            causal=causal,
            backward=backward,
            time_s=r["time_s"],
            family=str(fam),
        )
        out.append((key, sample))
    return out


def _by(records: Sequence[Mapping[str, Any]], kind: str) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == kind:
            out[str(r.get("dtype") or "")].append(r)
    return dict(out)


def _transfer(curve: GemmCurve, src: str, dst: str) -> GemmCurve:
    """``curve``'s shape terms for precision ``dst``: the K-depth fill is a fixed number of
    bytes of K per tile, so it scales with the operand width (an fp8 main-loop slice holds
    twice the elements of a 16-bit one)."""
    ratio = OPERAND_BYTES[PRECISION_NAMES.index(src)] / OPERAND_BYTES[PRECISION_NAMES.index(dst)]
    # the clock of the table the curve was fitted to is not the other precision's
    return curve.model_copy(
        update={
            "k_fill": round(float(curve.k_fill * ratio), 1),
            "clock_boost": 1.0,
            "boost_window_s": 0.0,
        }
    )


def _backward_ratio() -> float:
    from deepflow.hardware.kernels import shipped_table

    try:
        b200 = shipped_table("b200").attention["bf16"]
    except (ConfigError, KeyError):
        return DEFAULT_BACKWARD_RATIO
    return b200.backward_fraction / b200.forward_fraction


def fit_kernel_params(
    records: Sequence[Mapping[str, Any]],
    acc: AcceleratorSpec,
    source: str = "",
    backward_ratio: float | None = None,
    wave_loss: float | None = None,
    references: Sequence[Mapping[str, Any]] = (),
) -> KernelParams:
    """Fit the kernel curves of ``acc`` to measurement ``records`` (checked records; see the
    module docstring). The rules, in order:

    * memory: the geometric-mean bandwidth of the ``memory`` (and ``elementwise``) records;
      latency: the accelerator's launch overhead;
    * GEMM, per precision with three or more records: every term of the curve; with one or
      two records (e.g. a MAMF best shape): the peak fraction only, the shape terms taken
      from the precision with the most records (:func:`_transfer`). Where ``references``
      holds a record of that richer precision from the same benchmark (source) as the
      sparse records, the sparse precision's peak fraction is the one that puts the sparse
      curve at the richer curve's level against that benchmark, reproducing the
      benchmark's ratio of the two precisions (:func:`_relative_eta`): the
      absolute level stays that of the chip's shape table, only the precision ratio comes
      from the other benchmark (on the B200, SimuMax's host-timed Transformer Engine GEMMs
      reach 0.48 of the bf16 peak at MAMF's best bf16 shape, where MAMF measured 0.78:
      fitting MAMF's fp8 point alone onto SimuMax's shape terms gave an fp8 fraction of 0.90
      against 0.525 for bf16);
    * fp16 and bf16 run at one tensor-core rate on every chip here: a curve measured for
      one serves the other when that one has no records;
    * grouped GEMM, per precision with three or more records; else the dense curve;
    * attention, per precision: fitted; fp8 uses the bf16 curve (fused attention kernels
      run in 16-bit under fp8 training recipes); forward-only tables take the backward
      fraction as ``backward_ratio`` times the forward one.

    * the wave loss is fitted only for tables of :data:`WAVE_LOSS_FIT_MIN` shapes or more;
      a smaller table takes ``wave_loss``, by default the value fitted to the richest table
      of the same GPU architecture (:func:`architecture_wave_loss`: the library's stream-K /
      split-K policy is the architecture's, not the chip's); where the architecture has no
      richer table (A100, MI300X) it is fitted (a fixed 1, classic wave quantization, made
      the A100's large Megatron GEMMs 3 % slower and its vTrain-multi rows worse).

    Precisions without records are left out: they fall back to the accelerator's shipped
    table or efficiency block (:func:`deepflow.hardware.kernels.kernel_params`).
    """
    records = [check_record(r, f"measurements[{i}]") for i, r in enumerate(records)]
    mem = [r for r in records if r["kind"] == "memory"]
    memory = _fit_stream(model_stream_records(mem), acc) if mem else None
    ew_latency = memory.latency_s if memory else acc.efficiency.kernel_overhead
    elementwise = {
        key: _fit_eager(recs, acc, ew_latency)
        for key, recs in sorted(_elementwise(records).items())
    }
    mu = memory.fraction if memory else acc.efficiency.memory
    gemm: dict[str, GemmCurve] = {}
    dense = _pooled(_by(records, "gemm"))
    rich = [d for d in sorted(dense, key=lambda d: -len(dense[d])) if _shapes(dense[d]) >= 3]
    for dtype in rich:
        gemm[dtype] = _fit_gemm(dense[dtype], acc, dtype, mu, wave_loss)
    for dtype, recs in dense.items():
        if dtype in gemm:
            continue
        samples = [s for _, s in _gemm_samples(recs)]
        if rich:
            base = _transfer(gemm[rich[0]], rich[0], dtype)
        else:
            eff = acc.efficiency
            base = GemmCurve(
                peak_fraction=1.0,
                tile_m=eff.tile_m,
                tile_n=eff.tile_n,
                k_fill=float(eff.pipeline_stages * eff.tile_k),
                latency_s=eff.kernel_overhead,
            )
        eta = _fit_eta(samples, base, _device(acc, dtype, mu), dtype)
        if rich:
            relative = _relative_eta(recs, references, rich[0], gemm[rich[0]], base, acc, mu)
            eta = eta if relative is None else relative
        gemm[dtype] = base.model_copy(update={"peak_fraction": eta})
    for a, b in (("fp16", "bf16"), ("bf16", "fp16")):
        if a in gemm and b not in gemm:
            gemm[b] = gemm[a]
    grouped: dict[str, GemmCurve] = {}
    for dtype, recs in _by(records, "grouped_gemm").items():
        if is_host_loop(recs, dtype, acc) and dtype in gemm:
            samples = [s for _, s in _gemm_samples(recs)]
            grouped[dtype] = fit_host_loop_curve(
                samples, gemm[dtype], _device(acc, dtype, mu), dtype
            )
        elif _shapes(recs) >= 3:
            grouped[dtype] = _fit_gemm(recs, acc, dtype, mu, None, shared_wave=False)
    for a, b in (("fp16", "bf16"), ("bf16", "fp16")):
        if a in grouped and b not in grouped:
            grouped[b] = grouped[a]
    attention = {}
    ratio = backward_ratio if backward_ratio is not None else _backward_ratio()
    for dtype, recs in _by(records, "attention").items():
        samples = [s for _, s in _attention_samples(recs)]
        attention[dtype] = fit_attention_curve(
            samples, _device(acc, dtype, mu), ratio, acc.efficiency.kernel_overhead
        )
    for a, b in (("fp16", "bf16"), ("bf16", "fp16"), ("bf16", "fp8")):
        if a in attention and b not in attention:
            attention[b] = attention[a]
    return KernelParams(
        gemm=dict(sorted(gemm.items())),
        grouped_gemm=dict(sorted(grouped.items())),
        attention=dict(sorted(attention.items())),
        memory=memory,
        elementwise=elementwise,
        source=source,
    )


def _relative_eta(
    records: Sequence[Mapping[str, Any]],
    references: Sequence[Mapping[str, Any]],
    rich: str,
    rich_curve: GemmCurve,
    base: GemmCurve,
    acc: AcceleratorSpec,
    mu: float,
) -> float | None:
    """Peak fraction of the sparse precision of ``records`` (shape terms ``base``) such that
    its rate relative to precision ``rich`` (curve ``rich_curve``) is the ratio one
    benchmark measured for the two: ``rich_curve`` predicts the benchmark's ``rich``
    records ``L`` times slower than measured (``L``: geometric mean of predicted over
    measured, the level of the chip's shape table against the benchmark's), and the sparse
    peak fraction is the one that predicts the sparse records ``L`` times slower than
    measured (:func:`_fit_eta`), so the ratio holds whatever the curves' terms that do not
    scale with ``eta`` (latency, the overlap of the output traffic). ``None`` when
    ``references`` hold no ``rich`` record (16-bit counting as one) of the same source as
    all of ``records``."""
    sources = {r.get("source") for r in records}
    if len(sources) != 1:
        return None
    sixteen = ("fp16", "bf16") if rich in ("fp16", "bf16") else (rich,)
    refs = [
        check_record(r, f"references[{i}]")
        for i, r in enumerate(references)
        if r.get("kind") == "gemm" and r.get("dtype") in sixteen and r.get("source") in sources
    ]
    if not refs:
        return None
    dtype = str(records[0]["dtype"])
    ref_samples = [s for _, s in _gemm_samples(refs)]
    pred = predict_gemm(rich_curve, ref_samples, _device(acc, rich, mu), rich, harness=False)
    level = float(np.exp(np.mean(np.log(pred / np.array([s.time_s for s in ref_samples])))))
    scaled = [replace(s, time_s=s.time_s * level) for _, s in _gemm_samples(records)]
    return _fit_eta(scaled, base, _device(acc, dtype, mu), dtype)


MODEL_STREAM_OP = "copy"
"""The streaming operation whose curve is the model's ``memory`` curve where a table
measures it at several sizes: a copy reads one buffer and writes another, as the
element-wise, norm and optimizer kernels of a training step do. A fill only writes and a
reduction (``sum``) only reads and adds a cross-block combine: on the measured H200 the fill
streams at 4.65 TB/s, the copy and the reduction at 4.3 TB/s, and the reduction's floor is
about 5 us against 3.5 us (``deepflow calibrate``'s ``copy``, ``write``, ``read``)."""


def stream_groups(records: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The memory records split by operation where every operation is measured at two or
    more sizes (each has its own bandwidth and latency, :data:`MODEL_STREAM_OP`), else one
    group: tables of one size per kernel (Azure's five STREAM kernels at 4 GB) are fitted
    and cross-validated as one curve."""
    by: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        by[str(r.get("op") or "stream")].append(r)
    if len(by) > 1 and all(len({r["bytes"] for r in g}) >= 2 for g in by.values()):
        return [by[op] for op in sorted(by)]
    return [list(records)]


def model_stream_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The memory records the model's ``memory`` curve is fitted to: the
    :data:`MODEL_STREAM_OP` records where :func:`stream_groups` splits the table by
    operation, else all of them."""
    groups = stream_groups(records)
    if len(groups) > 1:
        for g in groups:
            if str(g[0].get("op")) == MODEL_STREAM_OP:
                return g
    return list(records)


def is_reduction(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``records`` are one operation's sweep and that operation is the full
    reduction (:data:`~deepflow.hardware.reduction.REDUCTION_OP`, the calibrate ``read``), of
    several sizes: its time follows the reduction's grid (:mod:`deepflow.hardware.reduction`),
    not the streaming curve."""
    ops = {str(r.get("op") or "") for r in records}
    return ops == {REDUCTION_OP} and len({r["bytes"] for r in records}) >= STREAM_LATENCY_SIZES


def _fit_eager(
    records: Sequence[Mapping[str, Any]], acc: AcceleratorSpec, latency_s: float
) -> MemoryCurve:
    return fit_eager_stream_curve(
        [r["bytes"] for r in records],
        [r["time_s"] for r in records],
        acc.memory_bandwidth,
        latency_s,
    )


def _fit_stream(records: Sequence[Mapping[str, Any]], acc: AcceleratorSpec) -> MemoryCurve:
    return fit_stream_curve(
        [r["bytes"] for r in records],
        [r["time_s"] for r in records],
        acc.memory_bandwidth,
        acc.efficiency.kernel_overhead,
    )


def elementwise_key(record: Mapping[str, Any]) -> str:
    """The element-wise curve a record belongs to: its operator, ``.backward`` for a
    forward + backward time."""
    op = str(record.get("op") or "elementwise")
    return f"{op}.backward" if record.get("backward") else op


def _elementwise(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "elementwise":
            out[elementwise_key(r)].append(r)
    return dict(out)


LATENCY_FIT_MIN = 20
"""Tables with fewer shapes than this keep the accelerator's launch overhead as the GEMM
latency: a handful of shapes cannot separate a latency from the wave and K-fill terms."""


KERNEL_TIMED = {
    "deepgemm": (
        "DeepGEMM tests/test_core.py (test_gemm, test_m_grouped_gemm_contiguous) times each "
        "kernel with deep_gemm.jit_kernels.utils.bench_kineto: the PyTorch profiler's device "
        "duration of the kernels named 'fp8_gemm', without the host launch"
    ),
}
"""Sources whose times are device durations of the kernel alone (a profiler trace), not
host-timed launches: their GEMM latency ``t_0`` is the kernel's own prologue and tail, not
the accelerator's launch overhead, so it is fitted from the table whatever its number of
shapes (with the launch overhead held fixed, the H800 table's memory-bound M = 64/128
x 7168 x 2048 shapes came out 37-53 % slow)."""


def _shapes(records: Sequence[Mapping[str, Any]]) -> int:
    return len({key for key, _ in _gemm_samples(records)})


def _pooled(by_dtype: dict[str, list[Mapping[str, Any]]]) -> dict[str, list[Mapping[str, Any]]]:
    """fp16 and bf16 records pooled under the precision with more of them (one tensor-core
    rate for both on every chip here)."""
    out = dict(by_dtype)
    if "fp16" in out and "bf16" in out:
        a, b = sorted(("fp16", "bf16"), key=lambda d: -len(out[d]))
        out[a] = out[a] + out.pop(b)
    return out


WAVE_LOSS_FIT_MIN = 20
"""Tables with fewer shapes than this do not fit the wave loss: with a handful of shapes it
trades off against the K-fill and the peak fraction (fitted, the 9 Azure and the 18
DeepGEMM fp8 shapes of one GH100 die gave 1.0 on the H100 and 0.34 on the H800); they take the
value of the architecture's richest
table (``wave_loss`` of :func:`fit_kernel_params`); an architecture without a richer
table fits it."""


WAVE_LOSS_ARCHITECTURE = {
    "h100-sxm5-80gb": "hopper",
    "h200-sxm-141gb": "hopper",
    "h800-sxm5-80gb": "hopper",
    "b200": "blackwell",
    "gb200": "blackwell",
}
"""GPU architecture of each preset whose architecture has a table rich enough to fit the
wave loss (:data:`WAVE_LOSS_REFERENCE`); other chips (A100, MI300X) fit their own."""

WAVE_LOSS_REFERENCE = {
    "hopper": ("calibration", "h200-sxm-141gb"),
    "blackwell": ("published", "b200"),
}
"""The richest GEMM table of each architecture: the measured H200 calibration file (114
16-bit shapes incl. M = 64/128/512 and Llama training shapes, hardware/data/calibrations/)
and SimuMax's B200 operator table (514 16-bit shapes,
hardware/data/microbenchmarks/simumax_b200)."""


@cache
def _reference_curve(architecture: str) -> GemmCurve:
    """The 16-bit dense GEMM curve fitted to the richest table of ``architecture``."""
    from deepflow.specs import accelerator_from

    kind, name = WAVE_LOSS_REFERENCE[architecture]
    if kind == "calibration":
        records = measured_calibration(name)["measurements"]
    else:
        records = published_records()[name]
    records = [check_record(r, f"measurements[{i}]") for i, r in enumerate(records)]
    acc = accelerator_from(name)
    dense = _pooled(_by(records, "gemm"))
    dtype = "fp16" if "fp16" in dense else "bf16"
    mem = [r for r in records if r["kind"] == "memory"]
    mu = _fit_stream(model_stream_records(mem), acc).fraction if mem else acc.efficiency.memory
    return _fit_gemm(dense[dtype], acc, dtype, mu, None)


def _reference_wave_loss(architecture: str) -> float:
    return _reference_curve(architecture).wave_loss


def architecture_intensity(acc: AcceleratorSpec) -> float | None:
    """The operand intensity ``h`` of the tile set (``GemmCurve.operand_intensity``) fitted
    to the 16-bit GEMMs of the richest table of ``acc``'s GPU architecture
    (:data:`WAVE_LOSS_REFERENCE`), or ``None`` where there is none: the tile
    configurations and their per-tile efficiency are the architecture's kernels (the same
    CUTLASS / cuBLASLt kernels on every chip of one SM generation)."""
    arch = WAVE_LOSS_ARCHITECTURE.get(acc.name)
    return None if arch is None else _reference_curve(arch).operand_intensity


def architecture_wave_loss(acc: AcceleratorSpec) -> float | None:
    """The wave loss fitted to the 16-bit GEMMs of the richest table of ``acc``'s GPU
    architecture (:data:`WAVE_LOSS_REFERENCE`), or ``None`` where there is none. The
    library's tail policy (stream-K, split-K, data-parallel tiles; Osama et al. 2023,
    arXiv 2301.03598) belongs to the architecture's kernels, not to one chip's table."""
    arch = WAVE_LOSS_ARCHITECTURE.get(acc.name)
    return None if arch is None else _reference_wave_loss(arch)


def _fixed_terms(
    records: Sequence[Mapping[str, Any]],
    acc: AcceleratorSpec,
    wave_loss: float | None,
    shared_wave: bool = True,
) -> tuple[float | None, float | None, float | None]:
    """``(fixed_latency, fixed_wave_loss, fixed_intensity)`` of the GEMM fit of ``records``:
    ``None`` where the term is fitted. A dense table of fewer than :data:`WAVE_LOSS_FIT_MIN`
    shapes takes the tile set's operand intensity of its architecture's richest table
    (:func:`architecture_intensity`), like the wave loss: fitted to 8-18 shapes, ``h``
    trades off against ``k_fill`` and ``eta`` (the 8 A100 shapes gave ``h`` = 8 on a
    7-point search grid and 0 on a 9-point one); where the architecture has no richer
    table (A100, MI300X) it is 0 (every candidate tile at ``eta``). The reference describes
    the library kernels of the reference table (cuBLAS / cuBLASLt, CUTLASS); a table timed
    on the device from another library's kernels (:data:`KERNEL_TIMED`: DeepGEMM's JIT
    kernels, which choose their own block sizes per shape) fits its own ``h``. Grouped GEMMs (``shared_wave`` false) fit their own wave loss: their
    kernels (``torch._grouped_mm``, DeepGEMM's grouped GEMM) schedule the tiles of all groups
    in one persistent grid, not with the dense GEMM's tail policy (sharing the dense value
    made the H800 grouped fp8 cross-validated error 7.6 % -> 11.6 %)."""
    shapes = _shapes(records)
    kernel_timed = bool(records) and all(r.get("source") in KERNEL_TIMED for r in records)
    fit_latency = shapes >= LATENCY_FIT_MIN or kernel_timed
    latency = None if fit_latency else acc.efficiency.kernel_overhead
    if shapes >= WAVE_LOSS_FIT_MIN or not shared_wave:
        return latency, None, None
    if wave_loss is None:
        wave_loss = architecture_wave_loss(acc)
    if kernel_timed:  # another library's kernels (DeepGEMM): their own tile efficiency
        return latency, wave_loss, None
    intensity = architecture_intensity(acc)
    return latency, wave_loss, 0.0 if intensity is None else intensity


def architecture_overlap(acc: AcceleratorSpec) -> float | None:
    """The dense GEMM overlap ``o`` (``GemmCurve.overlap``) fitted to the 16-bit GEMMs of the
    richest table of ``acc``'s GPU architecture (:data:`WAVE_LOSS_REFERENCE`), or ``None``
    where there is none: how much of a tile's output traffic its library's kernels hide under
    other tiles' main loops is a property of those kernels, like the tile efficiency."""
    arch = WAVE_LOSS_ARCHITECTURE.get(acc.name)
    return None if arch is None else _reference_curve(arch).overlap


def _output_widths(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``records`` measure one GEMM shape at two output widths (``out_bytes``): the
    same main loop with more or less output traffic, which separates the traffic's unhidden
    part from the terms of the main loop (SimuMax times each weight-gradient GEMM
    accumulating into an fp32 and into a bf16 main gradient)."""
    widths: dict[tuple[float, ...], set[float]] = defaultdict(set)
    for r in records:
        shape = tuple(float(r.get(x) or 1.0) for x in ("m", "n", "k", "groups"))
        widths[shape].add(float(r.get("out_bytes") or 2.0))
    return any(len(w) > 1 for w in widths.values())


def _overlap_terms(
    records: Sequence[Mapping[str, Any]], acc: AcceleratorSpec, shared_wave: bool = True
) -> tuple[float, bool]:
    """``(fixed_overlap, staged)`` of the GEMM fit of ``records``
    (:func:`~deepflow.hardware.kernels.fit_gemm_curve`): a dense table of
    :data:`WAVE_LOSS_FIT_MIN` shapes or more that measures shapes at two output widths
    (:func:`_output_widths`) fits its overlap (``staged``); a table of as many shapes
    without two output widths holds 1 (the roofline's full overlap: there the unhidden
    traffic trades off against ``eta`` and ``k_fill``); a smaller table takes its
    architecture's (:func:`architecture_overlap`; 1 where there is none), and 1 where
    another library's kernels were timed (:data:`KERNEL_TIMED`, as for the operand
    intensity). Grouped tables (``shared_wave``
    false) fit theirs in the main grid (``fit_overlap``): the returned pair is not used."""
    if not shared_wave:
        return 1.0, False
    if _shapes(records) >= WAVE_LOSS_FIT_MIN:
        return 1.0, _output_widths(records)
    if records and all(r.get("source") in KERNEL_TIMED for r in records):
        return 1.0, False
    overlap = architecture_overlap(acc)
    return (1.0 if overlap is None else overlap), False


def group_launch(
    records: Sequence[Mapping[str, Any]], dtype: str, acc: AcceleratorSpec | None = None
) -> int:
    """How the library that measured ``records`` launches the groups of a grouped GEMM
    (``GemmCurve.group_streams``), from its code:

    * SimuMax's table (Transformer Engine's grouped GEMM): one cuBLAS GEMM per group over
      :data:`~deepflow.hardware.kernels.TE_GROUPED_STREAMS` streams
      (``nvte_multi_stream_cublas_gemm``, transformer_engine/common/gemm/cublaslt_gemm.cu);
    * ``deepflow calibrate`` with ``torch._grouped_mm`` (``impl: grouped_mm``): one CUTLASS
      kernel for bf16 on sm90/sm100 (``bf16bf16_grouped_mm``; the Hopper and Blackwell
      presets of :data:`WAVE_LOSS_ARCHITECTURE`), else ``_grouped_mm_fallback``, a loop of
      ``mm_out`` over the groups on one stream (aten/src/ATen/native/cuda/GroupedBlas.cpp,
      ``_grouped_mm_cuda``);
    * DeepGEMM's grouped kernels, ``torch.bmm`` and anything else: one kernel (0)."""
    sources = {r.get("source") for r in records}
    if sources == {"simumax"}:
        return TE_GROUPED_STREAMS
    if all(r.get("impl") == "grouped_mm" for r in records):
        fast = dtype == "bf16" and acc is not None and acc.name in WAVE_LOSS_ARCHITECTURE
        return 0 if fast else 1
    return 0


def _fit_gemm(
    records: Sequence[Mapping[str, Any]],
    acc: AcceleratorSpec,
    dtype: str,
    mu: float,
    wave_loss: float | None = None,
    shared_wave: bool = True,
) -> GemmCurve:
    samples = [s for _, s in _gemm_samples(records)]
    latency, wave, intensity = _fixed_terms(records, acc, wave_loss, shared_wave)
    overlap, staged = _overlap_terms(records, acc, shared_wave)
    streams = 0 if shared_wave else group_launch(records, dtype, acc)
    tiles = GEMM_TILE_SET if shared_wave else ()
    device = _device(acc, dtype, mu)
    return fit_gemm_curve(
        samples,
        device,
        dtype,
        latency,
        wave,
        streams,
        tiles,
        intensity,
        fit_overlap=not shared_wave,
        fit_layout=shared_wave and dtype in LAYOUT_PRECISIONS,
        fixed_overlap=overlap,
        staged_overlap=staged,
    )


HOST_LOOP_DTYPES = ("fp16",)
"""Precisions whose grouped records of ``_grouped_mm_fallback`` (:func:`group_launch` 1)
are fitted as what ran, a host loop of dense GEMMs (:func:`fit_host_loop_curve`), instead of
as a grouped kernel. The H200 file's fp16 groups are faster than the host issues them (16
groups of 256 x 768 x 2048, of 1024 x 768 x 2048 and of 256 x 2048 x 768 all take 413-419
us: the host's loop, not the GEMMs), which no grouped-kernel curve describes (its
cross-validated error was 27.9 %). Its fp32 groups (the same path) outlast the loop, and
their grouped curve (9.3 %) is the one the shipped tables use: left as fitted."""


def is_host_loop(records: Sequence[Mapping[str, Any]], dtype: str, acc: AcceleratorSpec) -> bool:
    """Whether grouped ``records`` of ``dtype`` are fitted as a host loop of dense GEMMs
    (:data:`HOST_LOOP_DTYPES`, ``_grouped_mm_fallback``)."""
    return dtype in HOST_LOOP_DTYPES and group_launch(records, dtype, acc) == 1


def _fit_eta(samples: Sequence[GemmSample], base: GemmCurve, device: Device, dtype: str) -> float:
    """The peak fraction that makes ``base`` match ``samples`` best
    (:func:`~deepflow.hardware.kernels.fit_peak_fraction`)."""
    return fit_peak_fraction(samples, base, device, dtype)


# --- cross-validation ---------------------------------------------------------------------


@dataclass(frozen=True)
class CurveError:
    """Leave-one-shape-out error of one curve: per-family and overall mean |relative error|."""

    accelerator: str
    curve: str  # gemm / grouped_gemm / attention / memory
    dtype: str
    samples: int
    mean_abs: float
    families: dict[str, float]

    @property
    def worst_family(self) -> float:
        return max(self.families.values()) if self.families else 0.0


def cross_validate(
    records: Sequence[Mapping[str, Any]], acc: AcceleratorSpec, wave_loss: float | None = None
) -> list[CurveError]:
    """Leave-one-shape-out errors of the curves :func:`fit_kernel_params` fits from
    ``records`` (each shape predicted by the curve fitted without it, with the same fit and
    the same ``wave_loss``)."""
    records = [check_record(r, f"measurements[{i}]") for i, r in enumerate(records)]
    out: list[CurveError] = []
    mem = [r for r in records if r["kind"] == "memory"]
    mu = acc.efficiency.memory
    ew_latency = acc.efficiency.kernel_overhead
    if mem:
        model_memory = _fit_stream(model_stream_records(mem), acc)
        mu, ew_latency = model_memory.fraction, model_memory.latency_s
        if len(mem) >= 2:
            # each operation by its own curve where each is measured at several sizes
            groups = stream_groups(mem)
            mem = [r for g in groups for r in g]
            errs = np.concatenate([_stream_loo(g, acc) for g in groups])
            fams = [str(r.get("op") or "stream") for r in mem]
            big = [r["bytes"] >= STREAM_FLOOR_BYTES for r in mem]
            for name, keep in (("memory", True), ("memory.latency", False)):
                idx = [i for i, b in enumerate(big) if b == keep]
                if idx:
                    out.append(_error(acc.name, name, "", errs[idx], [fams[i] for i in idx]))
    ew_errs: list[float] = []
    ew_fams: list[str] = []
    for key, recs in sorted(_elementwise(records).items()):
        if len({r["bytes"] for r in recs}) < 2:
            continue
        ew_errs += list(_stream_loo(recs, acc, ew_latency))
        ew_fams += [key] * len(recs)
    if ew_errs:
        out.append(_error(acc.name, "elementwise", "", ew_errs, ew_fams))
    dense_by = _pooled(_by(records, "gemm"))
    for kind in ("gemm", "grouped_gemm"):
        by = _by(records, kind)
        for dtype, recs in sorted((dense_by if kind == "gemm" else by).items()):
            samples = _gemm_samples(recs)
            if len({key for key, _ in samples}) < 4:
                continue
            device = _device(acc, dtype, mu)
            if kind == "grouped_gemm" and is_host_loop(recs, dtype, acc):
                dense = _dense_curve(dense_by, dtype, acc, mu, wave_loss)
                if dense is not None:
                    # one dense curve fitted to the dense records: held out per group shape
                    # is the host issue time only
                    errs = leave_one_out(
                        samples,
                        lambda train, d=device, t=dtype, c=dense: fit_host_loop_curve(
                            train, c, d, t
                        ),
                        lambda curve, test, d=device, t=dtype: predict_gemm(curve, test, d, t),
                    )
                    out.append(_error(acc.name, kind, dtype, errs, [s.family for _, s in samples]))
                    continue
            fixed, wave, h = _fixed_terms(recs, acc, wave_loss, kind == "gemm")
            streams = 0 if kind == "gemm" else group_launch(recs, dtype, acc)
            tiles = GEMM_TILE_SET if kind == "gemm" else ()
            overlap = kind != "gemm"  # fitted in the main grid for grouped curves
            fixed_o, staged = _overlap_terms(recs, acc, kind == "gemm")
            layout = kind == "gemm" and dtype in LAYOUT_PRECISIONS
            errs = leave_one_out(
                samples,
                lambda train, d=device, t=dtype, f=fixed, w=wave, s=streams, c=tiles, h=h, o=overlap, y=layout, fo=fixed_o, so=staged: (
                    fit_gemm_curve(
                        train,
                        d,
                        t,
                        f,
                        w,
                        s,
                        c,
                        h,
                        fit_overlap=o,
                        fit_layout=y,
                        fixed_overlap=fo,
                        staged_overlap=so,
                    )
                ),
                lambda curve, test, d=device, t=dtype: predict_gemm(curve, test, d, t),
            )
            out.append(_error(acc.name, kind, dtype, errs, [s.family for _, s in samples]))
    ratio = _backward_ratio()
    for dtype, recs in sorted(_by(records, "attention").items()):
        samples = _attention_samples(recs)
        fwd_keys = {key for key, s in samples if not s.backward}
        if len(fwd_keys) < 4:
            continue
        device = _device(acc, dtype, mu)
        errs = leave_one_out(
            samples,
            lambda train, d=device: fit_attention_curve(train, d, ratio),
            lambda curve, test, d=device: predict_attention(curve, test, d),
        )
        out.append(_error(acc.name, "attention", dtype, errs, [s.family for _, s in samples]))
    return out


def _dense_curve(
    dense_by: dict[str, list[Mapping[str, Any]]],
    dtype: str,
    acc: AcceleratorSpec,
    mu: float,
    wave_loss: float | None,
) -> GemmCurve | None:
    """The dense GEMM curve :func:`fit_kernel_params` fits for ``dtype`` (fp16 and bf16
    pooled, :func:`_pooled`), or ``None`` without three dense shapes of it."""
    twin = {"fp16": "bf16", "bf16": "fp16"}.get(dtype)
    recs = dense_by.get(dtype) or (dense_by.get(twin) if twin else None)
    if not recs or _shapes(recs) < 3:
        return None
    return _fit_gemm(recs, acc, dtype, mu, wave_loss)


STREAM_FLOOR_BYTES = 256 * 2**20
"""Streaming kernels of at least this size (several times any L2 cache here) measure the
bandwidth and are reported as the ``memory`` curve's error; smaller ones, whose time is
mostly the fixed latency and the kernel's ramp, as ``memory.latency``."""


@dataclass(frozen=True)
class _StreamSample:
    r: Mapping[str, Any]
    time_s: float


def _stream_loo(
    records: Sequence[Mapping[str, Any]], acc: AcceleratorSpec, eager_latency: float | None = None
) -> np.ndarray:
    """Leave-one-size-out relative time errors of the streaming curve (records of the same
    operator and size are left out together); with ``eager_latency``, of the element-wise
    curve with a host floor (:func:`_fit_eager`); for the reduction of a table that measures
    each memory operation apart (``op`` :data:`~deepflow.hardware.reduction.REDUCTION_OP`),
    of the reduction curve (:mod:`deepflow.hardware.reduction`)."""
    samples = [(f"{r.get('op')}/{r['bytes']:.0f}", _StreamSample(r, r["time_s"])) for r in records]
    if eager_latency is None and is_reduction(records):
        return leave_one_out(
            samples,
            lambda train: fit_reduction_curve(
                [s.r["bytes"] for s in train],
                [s.time_s for s in train],
                acc.memory_bandwidth,
                acc.compute_units,
            ),
            lambda curve, test: reduction_time(
                [s.r["bytes"] for s in test], acc.memory_bandwidth, acc.compute_units, curve
            ),
        )

    def fit(train: Sequence[_StreamSample]) -> MemoryCurve:
        recs = [s.r for s in train]
        return (
            _fit_stream(recs, acc)
            if eager_latency is None
            else _fit_eager(recs, acc, eager_latency)
        )

    return leave_one_out(
        samples,
        fit,
        lambda curve, test: stream_terms(
            np.array([s.r["bytes"] for s in test]),
            acc.memory_bandwidth,
            curve.fraction,
            curve.latency_s,
            curve.host_floor_s,
        ),
    )


def eager_stream_errors(
    records: Sequence[Mapping[str, Any]], acc: AcceleratorSpec, latency_s: float
) -> np.ndarray:
    """Leave-one-size-out relative time errors of one element-wise operator's eager curve
    (the records of one :func:`elementwise_key`, kernel latency ``latency_s``), in record
    order: the per-size residuals behind the ``elementwise`` error."""
    return _stream_loo(records, acc, latency_s)


def fit_error_table(errors: Sequence[CurveError]) -> dict[str, dict[str, Any]]:
    """Cross-validated errors as the ``fit_error`` mapping of a table or calibration file:
    per curve key (``gemm.bf16``, ``memory``) the samples, the mean absolute error and the
    mean absolute error per shape family."""
    return {
        (f"{e.curve}.{e.dtype}" if e.dtype else e.curve): {
            "samples": e.samples,
            "loso_mean_abs": round(e.mean_abs, 4),
            "families": {f: round(v, 4) for f, v in e.families.items()},
        }
        for e in errors
    }


def _error(
    name: str, curve: str, dtype: str, errs: Sequence[float], families: Sequence[str]
) -> CurveError:
    e = np.abs(np.asarray(errs, dtype=np.float64))
    fams: dict[str, list[float]] = defaultdict(list)
    for f, x in zip(families, e, strict=True):
        fams[f].append(float(x))
    return CurveError(
        accelerator=name,
        curve=curve,
        dtype=dtype,
        samples=int(e.size),
        mean_abs=float(e.mean()),
        families={f: float(np.mean(v)) for f, v in sorted(fams.items())},
    )


# --- the shipped published tables, as records ------------------------------------------------

#: Device strings of the published tables -> accelerator preset.
PUBLISHED_DEVICES = {
    "NVIDIA A100-SXM4-80GB": "a100-sxm4-80gb",
    "NVIDIA A100 SXM": "a100-sxm4-80gb",
    "NVIDIA H100 80GB HBM3": "h100-sxm5-80gb",
    "NVIDIA H100 SXM": "h100-sxm5-80gb",
    "NVIDIA H200 141GB": "h200-sxm-141gb",
    "NVIDIA H200 SXM": "h200-sxm-141gb",
    "NVIDIA H800 SXM5": "h800-sxm5-80gb",
    "NVIDIA B200": "b200",
    "NVIDIA B200 SXM": "b200",
    "NVIDIA GB200 185GB": "gb200",
    "NVIDIA GB200 SXM": "gb200",
    "AMD Instinct MI300X": "mi300x",
    "AMD MI300X": "mi300x",
}


def _main_grad_bytes(shape_key: str) -> float:
    """Bytes per element of the main gradient a SimuMax wgrad GEMM accumulates into, from its
    verbatim shape key (``main_grad_dtype=fp32`` or ``bf16``; fp32 where the key omits it)."""
    for part in shape_key.split(","):
        name, _, value = part.strip().partition("=")
        if name == "main_grad_dtype":
            return {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0}[value.strip()]
    return 4.0


def _source_csv(folder: str, name: str) -> list[dict[str, str]]:
    node = resources.files("deepflow.hardware") / "data" / "microbenchmarks" / folder / name
    return list(csv.DictReader(io.StringIO(node.read_text("utf-8"), newline="")))


def _measured_by_table(records: Sequence[Mapping[str, Any]], dtype: str) -> bool:
    """Whether ``records`` hold a GEMM shape table of ``dtype`` (16-bit counting as one)."""
    sixteen = ("fp16", "bf16") if dtype in ("fp16", "bf16") else (dtype,)
    return any(r["kind"] == "gemm" and r["dtype"] in sixteen for r in records)


def _mamf_records() -> list[tuple[str, dict[str, Any]]]:
    """Every MAMF best-shape row of a known accelerator as ``(preset, gemm record)``."""
    out = []
    for r in _source_csv("mamf_ml_engineering", "mamf.csv"):
        preset = PUBLISHED_DEVICES.get(r["accelerator"])
        if preset is None:
            continue
        m, n, k = (float(r[x]) for x in ("m", "n", "k"))
        record = {
            "kind": "gemm",
            "dtype": "bf16" if r["dtype"] == "bf16" else "fp8",
            "m": m,
            "n": n,
            "k": k,
            "groups": 1,
            "family": "MAMF best shape",
            "time_s": 2.0 * m * n * k / (float(r["mamf_tflops"]) * 1e12),
            "source": "mamf",
        }
        out.append((preset, record))
    return out


def published_references() -> dict[str, list[dict[str, Any]]]:
    """The MAMF best-shape records that :func:`published_records` leaves out because a shape
    table of the same precision measures the chip, by preset: not fitted, they give the
    ratio between two precisions measured by one benchmark on one chip
    (``references`` of :func:`fit_kernel_params`)."""
    records = published_records()
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for preset, record in _mamf_records():
        if record not in records.get(preset, []):
            out[preset].append(record)
    return dict(out)


SIMUMAX_GEMM_LOOP = (25, 75)
"""Warm-up and timed calls of SimuMax's dense GEMM loop: ``test()`` in
simu_tools/efficency_test/test_gemm_efficiency.py (commit
4dcaae513ba7679d56c116a17cd4a691ec41e252) passes ``test_steps = 100, warmup_steps = 25``
to ``run_te_gemm``, which times calls ``25 .. 99`` with ``time.time()`` between two device
synchronizations (:mod:`deepflow.hardware.clock_boost`)."""


def published_records() -> dict[str, list[dict[str, Any]]]:
    """The shipped microbenchmark tables as measurement records, by accelerator preset.

    Conversions (each source's README, ``hardware/data/microbenchmarks/<source>/``):

    * Azure GEMM (cuBLASLt / hipBLASLt, superbench): ``time = 2 m n k / TFLOP/s``; rows that
      the source superseded are skipped; dtype FP16 -> fp16, FP8 -> fp8.
    * Azure FlashAttention-2: the single number is read as the forward, non-causal
      TFLOP/s of Dao-AILab ``benchmark_flash_attention.py`` (batch 2, seq 8192, model dim
      2048, so heads = 2048 / head_dim; fp16): ``time = 4 b s^2 h d / TFLOP/s``.
    * Azure HBM (STREAM-type kernels): a nominal 4 GB moved at the printed TB/s.
    * SimuMax B200 (Transformer Engine, bf16): ``time = F / (efficiency x 2250 TFLOP/s)``
      with F = 2 b m n k (matmul), 2 g m n k (grouped; m = M per group) and the full
      non-causal attention count ``2 b s^2 h (d_qk + d_v)`` for the causal kernels (the
      README's convention); a backward row becomes a forward + backward record by adding
      the forward row of the same shape.
    * DeepGEMM H800 FP8: ``time = 2 g m n k / TFLOP/s`` (dense: g = 1).
    * MAMF (ml-engineering): the best shape at the printed TFLOP/s, one record per
      accelerator and dtype, only where no shape table of the same precision (16-bit
      counting as one) exists for the chip: different benchmarks disagree by 5-10 % on the
      same chip, and one table per curve keeps the curve consistent.
    """
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(device: str, record: dict[str, Any]) -> None:
        preset = PUBLISHED_DEVICES.get(device)
        if preset is not None:
            out[preset].append(record)

    for r in _source_csv("azure_ai_benchmarking_guide", "gemm.csv"):
        if r["superseded_in_source"].startswith("yes"):
            continue
        m, n, k = (float(r[x]) for x in ("m", "n", "k"))
        add(
            r["accelerator"],
            {
                "kind": "gemm",
                "dtype": r["dtype"].lower(),
                "m": m,
                "n": n,
                "k": k,
                "groups": 1,
                "time_s": 2.0 * m * n * k / (float(r["tflops"]) * 1e12),
                "source": "azure",
            },
        )
    for r in _source_csv("azure_ai_benchmarking_guide", "flash_attention.csv"):
        if r["superseded_in_source"].startswith("yes") or "Flash" not in r["implementation"]:
            continue
        d, b, s = float(r["head_dim"]), float(r["batch_size"]), float(r["seq_len"])
        h = 2048.0 / d
        add(
            r["accelerator"],
            {
                "kind": "attention",
                "dtype": "fp16",
                "batch": b,
                "heads": h,
                "kv_heads": h,
                "seq": s,
                "head_dim": d,
                "causal": False,
                "backward": False,
                "time_s": 4.0 * b * s * s * h * d / (float(r["tflops"]) * 1e12),
                "source": "azure",
            },
        )
    for r in _source_csv("azure_ai_benchmarking_guide", "hbm_bandwidth.csv"):
        if r["superseded_in_source"].startswith("yes"):
            continue
        add(
            r["accelerator"],
            {
                "kind": "memory",
                "op": r["kernel"].lower(),
                "bytes": 4e9,
                "time_s": 4e9 / (float(r["bandwidth"]) * 1e12),
                "source": "azure",
            },
        )
    forward: dict[tuple[str, ...], float] = {}
    bwd_rows = []
    for r in _source_csv("simumax_b200", "b200_operator_efficiency.csv"):
        eff, peak = float(r["efficiency_verbatim"]), float(r["peak_tflops_assumed"]) * 1e12
        if r["op"] == "matmul":
            b, m, n, k = (float(r[x]) for x in ("b", "m", "n", "k"))
            fam = {"TN": "fwd (TN)", "NN": "dgrad (NN)", "NT": "wgrad (NT)"}[r["layout"]]
            element = 4.0 if r["out_dtype"] == "fp32" else 2.0
            warmup, timed = SIMUMAX_GEMM_LOOP
            add(
                r["accelerator"],
                {
                    "kind": "gemm",
                    "dtype": "bf16",
                    "m": m,
                    "n": n,
                    "k": k,
                    "groups": b,
                    # the wgrad GEMMs accumulate into the output (beta 1): read and written
                    "out_bytes": float(output_bytes(element, r["accumulate"] == "True")),
                    "family": fam,
                    "time_s": 2.0 * b * m * n * k / (eff * peak),
                    "warmup_calls": warmup,
                    "timed_calls": timed,
                    "source": "simumax",
                },
            )
        elif r["op"] == "group_matmul":
            g, m, n, k = (float(r[x]) for x in ("num_groups", "m_per_group", "n", "k"))
            # SimuMax lists the forward shape Y[M, N] = X[M, K] W[K, N] for every stage; the
            # backward GEMMs are dX[M, K] = dY[M, N] W^T (contraction N) and
            # dW[N, K] = dY^T X (contraction M, the tokens of a group), accumulated into the
            # main gradient (accumulate=True: beta 1, C read and written): 8 bytes per
            # element for an fp32 main gradient, 4 for a bf16 one (``main_grad_dtype`` of
            # the verbatim shape key; SimuMax measures every wgrad shape with both)
            out_bytes = 2.0
            if r["stage"] == "bwd_grad_act":
                m, n, k = m, k, n
            elif r["stage"] == "bwd_grad_w":
                m, n, k = n, k, m
                if r["accumulate"] == "True":
                    out_bytes = float(output_bytes(_main_grad_bytes(r["shape_key_verbatim"]), True))
            add(
                r["accelerator"],
                {
                    "kind": "grouped_gemm",
                    "dtype": "bf16",
                    "m": m,
                    "n": n,
                    "k": k,
                    "groups": g,
                    "out_bytes": out_bytes,
                    "family": f"grouped {r['stage']}",
                    "time_s": 2.0 * g * m * n * k / (eff * peak),
                    "source": "simumax",
                },
            )
        else:
            b, s, h, g = (
                float(r[x]) for x in ("attn_batch", "attn_seq_len", "attn_heads", "attn_kv_heads")
            )
            dq, dv = float(r["attn_qk_head_dim"]), float(r["attn_v_head_dim"])
            full = 2.0 * b * s * s * h * (dq + dv)
            key = (
                r["attn_batch"],
                r["attn_seq_len"],
                r["attn_heads"],
                r["attn_kv_heads"],
                r["attn_qk_head_dim"],
                r["attn_v_head_dim"],
                r["qkv_contiguous"],
            )
            shape = {
                "kind": "attention",
                "dtype": "bf16",
                "batch": b,
                "heads": h,
                "kv_heads": g,
                "seq": s,
                "head_dim": dq,
                "v_head_dim": dv,
                "causal": True,
                "source": "simumax",
            }
            if r["op"] == "sdp_fwd":
                forward[key] = full / (eff * peak)
                add(r["accelerator"], {**shape, "backward": False, "time_s": forward[key]})
            else:
                bwd_rows.append((r["accelerator"], key, shape, 2.5 * full / (eff * peak)))
    for device, key, shape, t_bwd in bwd_rows:
        if key in forward:
            add(device, {**shape, "backward": True, "time_s": forward[key] + t_bwd})
    for r in _source_csv("deepgemm_h800", "fp8_gemm.csv"):
        g, m, n, k = (float(r[x]) for x in ("num_groups", "m_per_group", "n", "k"))
        kind = "gemm" if r["gemm_kind"] == "dense" else "grouped_gemm"
        add(
            r["accelerator"],
            {
                "kind": kind,
                "dtype": "fp8",
                "m": m,
                "n": n,
                "k": k,
                "groups": g,
                "time_s": 2.0 * g * m * n * k / (float(r["tflops"]) * 1e12),
                "source": "deepgemm",
            },
        )

    for preset, record in _mamf_records():
        if not _measured_by_table(out.get(preset, []), record["dtype"]):
            out[preset].append(record)
    return dict(out)


def fitted_calibration(
    records: Sequence[Mapping[str, Any]],
    acc: AcceleratorSpec,
    device: Mapping[str, Any] | None = None,
    environment: Mapping[str, Any] | None = None,
    source: str = "",
) -> dict[str, Any]:
    """A complete calibration file (schema ``deepflow.calibration/1``) with ``fitted``
    written by :func:`fit_kernel_params` from ``records``: what ``deepflow calibrate --fit``
    writes for a table measured elsewhere, and what a measuring run adds to its
    measurements. ``device`` defaults to the accelerator's first device name."""
    data = {
        "device": dict(device or {}),
        "environment": dict(environment or {}),
        "measurements": records,
    }
    return fit_measured_file(data, acc, "deepflow calibrate --fit", source)


# --- deepflow calibrate: which accelerator a measured file is fitted for ---------------------


def accelerator_for_device(device: str) -> str | None:
    """The accelerator preset whose ``device_names`` match a measured device's name
    (:func:`deepflow.specs.kernels.device_matches`; presets without names are skipped), or
    ``None`` (a CPU, or a GPU without a preset)."""
    from deepflow.specs import preset_names
    from deepflow.specs.kernels import device_matches

    for name in preset_names("accelerators"):
        acc = accelerator_from_spec(name)
        if acc.device_names and device_matches(device, acc.device_names):
            return name
    return None


def accelerator_from_spec(spec: str, key: str = "--accelerator") -> AcceleratorSpec:
    """An accelerator from a preset name, or from a YAML/JSON file holding an accelerator
    mapping (the same mapping a scenario's ``system.accelerator`` takes: a custom chip, or
    a preset with changes; ``device_names`` lists the devices it stands for)."""
    from pathlib import Path

    import yaml

    from deepflow.specs import accelerator_from

    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            data = yaml.safe_load(path.read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read accelerator file: {exc.strerror}", key, spec) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", key, spec) from None
        if not isinstance(data, Mapping):
            raise ConfigError("an accelerator file must hold a mapping", key, spec)
        try:
            return accelerator_from(dict(data), "accelerator")
        except ConfigError as exc:
            raise exc.with_source(spec) from None
    return accelerator_from(spec, key)


def fit_measured_file(
    data: Mapping[str, Any], acc: AcceleratorSpec, command: str, source: str = ""
) -> dict[str, Any]:
    """A measured calibration (``deepflow calibrate``'s output, or a measurements-only
    file) with its ``fitted`` block written by :func:`fit_kernel_params`: the device,
    environment and notes are kept, the fit's command and accelerator are recorded under
    ``environment.fit``. A file without a device (a CSV table) is taken as measured on
    ``acc`` (its first device name)."""
    from deepflow.specs.kernels import device_matches

    device = dict(data.get("device") or {})
    if not device.get("name"):
        device = {"name": acc.device_names[0] if acc.device_names else acc.name, "count": 1}
    elif not device_matches(str(device["name"]), acc.device_names):
        raise ConfigError(
            f"the measured device {device['name']!r} does not match accelerator {acc.name!r} "
            f"(device_names: {', '.join(acc.device_names)}); name an accelerator whose "
            "device_names list it",
            "--accelerator",
        )
    records = list(data.get("measurements") or [])
    fitted = fit_kernel_params(
        records, acc, source or f"{command}: fit_kernel_params for {acc.name}"
    )
    fitted = fitted.model_copy(update={"fit_error": fit_error_table(cross_validate(records, acc))})
    environment = dict(data.get("environment") or {})
    environment["fit"] = {"command": command, "accelerator": acc.name}
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "device": device,
        "environment": environment,
        "measurements": [dict(r) for r in records],
    }
    if "notes" in data:
        out["notes"] = list(data["notes"] or [])
    out["fitted"] = fitted.model_dump(mode="json", exclude_defaults=False)
    return out


def curve_errors(
    records: Sequence[Mapping[str, Any]], acc: AcceleratorSpec, params: KernelParams
) -> list[CurveError]:
    """Errors of given curves ``params`` (not refitted) against measurement ``records``:
    how far a shipped table is from a measurement of the same chip. Curves ``params`` lacks
    and records of other kinds are skipped; the memory curve is checked against the records
    it stands for (:func:`model_stream_records`: the copies where the table measures each
    operation at several sizes)."""
    records = [check_record(r, f"measurements[{i}]") for i, r in enumerate(records)]
    out: list[CurveError] = []
    mu = params.memory.fraction if params.memory else acc.efficiency.memory
    mem = model_stream_records([r for r in records if r["kind"] == "memory"])
    mem = [r for r in mem if r["bytes"] >= STREAM_FLOOR_BYTES]
    if mem and params.memory is not None:
        pred = stream_terms(
            np.array([r["bytes"] for r in mem]),
            acc.memory_bandwidth,
            params.memory.fraction,
            params.memory.latency_s,
        )
        errs = pred / np.array([r["time_s"] for r in mem]) - 1.0
        out.append(_error(acc.name, "memory", "", errs, [str(r.get("op")) for r in mem]))
    for kind, curves in (("gemm", params.gemm), ("grouped_gemm", params.grouped_gemm)):
        for dtype, recs in sorted(_by(records, kind).items()):
            if dtype not in curves:
                continue
            samples = [s for _, s in _gemm_samples(recs)]
            pred = predict_gemm(curves[dtype], samples, _device(acc, dtype, mu), dtype)
            errs = pred / np.array([s.time_s for s in samples]) - 1.0
            out.append(_error(acc.name, kind, dtype, errs, [s.family for s in samples]))
    for dtype, recs in sorted(_by(records, "attention").items()):
        if dtype not in params.attention:
            continue
        samples = [s for _, s in _attention_samples(recs)]
        pred = predict_attention(params.attention[dtype], samples, _device(acc, dtype, mu))
        errs = pred / np.array([s.time_s for s in samples]) - 1.0
        out.append(_error(acc.name, "attention", dtype, errs, [s.family for s in samples]))
    return out


def measured_calibration(name: str) -> dict[str, Any]:
    """A measured calibration file shipped under ``hardware/data/calibrations/`` (read and
    checked), e.g. ``h200-sxm-141gb``: a ``deepflow calibrate`` run on the chip."""
    from deepflow.hardware.calibrate.io import read_calibration

    node = resources.files("deepflow.hardware") / "data" / "calibrations" / f"{name}.yaml"
    with resources.as_file(node) as path:
        return read_calibration(path)
