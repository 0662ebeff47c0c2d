"""The calibrated kernel-efficiency model: GEMM, grouped GEMM, attention and memory curves.

Every time deepflow predicts stands on how long one accelerator takes for one GEMM, one
attention and one streaming kernel. This module holds that model: a few explained terms
per (accelerator, precision) whose values are *data*, fitted to published microbenchmarks by
:func:`fit_gemm_curve` / :func:`fit_attention_curve` / :func:`fit_memory_curve` (called by
``scripts/fit_kernels.py`` for the shipped tables and by ``deepflow calibrate --fit`` for a
user's own measurements; one fit for both).

GEMM ``[m, k] x [k, n]``, ``g`` independent GEMMs of that shape in one launch (a grouped
GEMM: MoE experts; a strided-batched GEMM: unfused attention scores), at data-sheet dense
peak ``P`` and memory bandwidth ``BW`` (roofline: Williams, Waterman, Patterson 2009)::

    F       = 2 m n k g
    q_tile  = m n / (ceil(m / tm) tm ceil(n / tn) tn)        tile quantization
    T       = g ceil(m / tm) ceil(n / tn)                     output tiles
    q_wave  = 1 - w (1 - T / (ceil(T / U) U))                wave quantization, U units
    q_k     = k / (k + k_fill)                                K-depth fill
    compute = F / (P eta q_tile q_wave q_k)
    memory  = ((m k + k n) e_in + m n e_out) g / (BW mu)
    t       = max(compute, memory) + (1 - o) min(compute, memory) + t_0

A dense GEMM curve holds a candidate tile set (:data:`GEMM_TILE_SET`, ``GemmCurve.tiles``):
``q_tile``, ``T`` and ``q_wave`` are those of each candidate ``tm x tn``, its compute time
is divided by its tile efficiency ``(a / (a + h)) / (a_ref / (a_ref + h))`` with
``a = tm tn / (tm + tn)`` (:func:`tile_efficiency`; ``h`` fitted,
``GemmCurve.operand_intensity``; ``a_ref`` the set's highest intensity, the tile at which
``eta`` applies), and the kernel runs the fastest candidate, as a library heuristic that
picks the fastest kernel per shape does (cuBLASLt, CUTLASS's profiler, hipBLASLt).

A grouped GEMM whose library launches one kernel per group over ``s`` streams
(``GemmCurve.group_streams``: Transformer Engine, PyTorch's ``_grouped_mm`` fallback) counts
the tiles of ``min(s, g)`` groups in ``T`` and pays ``ceil(g / s) t_0``; where a host loop
issues the groups (``GemmCurve.host_issue_s`` = ``t_h``, :func:`fit_host_loop_curve`),
``t = max(t, ceil(g / s) t_h)``.

A GEMM whose two operands are MN-major (a weight gradient) runs at ``eta`` times
``GemmCurve.mn_major_fraction`` (:func:`operands_factor`; fitted for tf32 only,
:data:`LAYOUT_PRECISIONS`).

``o`` (``GemmCurve.overlap``) is the part of the shorter term hidden under the longer. It is
fitted for grouped GEMMs, whose weight-gradient GEMMs with few tokens per expert (K small)
stream an output of ``m n e_out`` bytes per group (8 bytes: the fp32 main gradient read and
written, ``accumulate=True``, :func:`output_bytes`) behind a main loop of a few K steps: the
output traffic then runs after the main loop, not under it (SimuMax's B200 table measures
each such shape with an fp32 and a bf16 main gradient; the time difference is the extra
output bytes at the memory bandwidth, added, not hidden). A dense curve fits it where its
table measures one shape at two output widths (:func:`_fit_staged`), else takes its
architecture's or 1 (the roofline's full overlap;
:func:`deepflow.hardware.calibration._overlap_terms`); the estimator evaluates every GEMM
with its curve's ``o`` (:func:`gemm_kernel_time`).

A table timed by the host over a loop of calls (``GemmSample.host_loop``) is fitted with the
loop's clock boost (:mod:`deepflow.hardware.clock_boost`): the curve's terms are those of
the sustained clock.

Tile and wave quantization are those of NVIDIA's "Matrix Multiplication Background User's
Guide" (sections "Tile Quantization", "Wave Quantization"); the K-depth fill is the
prologue/epilogue of each output tile (load pipeline fill, accumulator write-back) amortized
over its main loop along K (CUTLASS, "Efficient GEMM in CUDA", software pipelining). ``eta``
(peak-achievable fraction), ``tm x tn`` (chosen among the library's tile shapes),
``w`` (the part of the last wave's idle time the library does not recover with stream-K
or split-K; Osama et al. 2023, arXiv 2301.03598), ``k_fill`` and ``t_0`` (fixed per-kernel
latency) are fitted; ``mu`` is the memory curve's.

Attention (FlashAttention-2, Dao 2023, arXiv 2307.08691, sec. 3; cuDNN / Transformer
Engine fused attention): forward FLOPs ``2 b h s_q s_kv (d_qk + d_v)``, halved when causal
(masked tiles are skipped, sec. 3.1.1), backward 2.5 times the forward (sec. 3.2: five
matmuls instead of two). Work is split in ``b h ceil(s_q / tile_q)`` query tiles, issued in
waves over the compute units::

    t_fwd = F_fwd / (P eta_fwd c_fwd q_wave) + t_0
    t_bwd = 2.5 F_fwd / (P eta_bwd c_bwd q_wave) + t_0

``c_fwd``, ``c_bwd``: the head-dimension factors (``AttentionCurve.head_dims``). A fused
attention kernel is compiled per head-dimension pair ``(d_qk, d_v)`` with its own tile
shape and pipeline depth, because Q, K, V, dO and the dQ/dK/dV accumulators of one tile
must fit in shared memory and registers. Above 128 the tiles and pipelines shrink:
FlashAttention-3 (Dao-AILab/flash-attention, hopper/flash_bwd_launch_template.h,
``run_mha_bwd_hdim128``: causal backward blocks 64 x 128 with two dO stages;
``run_mha_bwd_hdim192`` with ``d_v <= 128``, MLA: 64 x 96 with one dO and one dS stage),
so less work per loaded tile and less latency hiding; cuDNN / Transformer Engine fused
attention likewise select their kernel per head dimension. The efficiency at a wider pair
is therefore a measured property of that pair, not a function of ``d_qk + d_v`` that
could be extrapolated. Where a table measures a pair wider than its reference pair (the
measured pair nearest ``d_qk + d_v = 256``), e.g. SimuMax B200's
192/128 next to 128/128, ``eta_fwd``, ``eta_bwd``, ``tile_q`` and ``t_0`` are fitted on the
other records and one factor per wider pair and direction on that pair's records; pairs
no table measured, and pairs no wider than the reference, run at the curve (``c = 1``).
Narrower pairs (64/64 in the H200 calibration) stay pooled with the reference, as the
curve was fitted before the factor existed: their loss (the softmax and rescaling work per
tile does not shrink with ``d``) is not separated here (docs/hardware.md, "Head
dimensions").

Streaming (element-wise, norm, softmax, copy) kernels: ``t = bytes / (BW mu) + t_0`` per
kernel, ``mu`` the achievable fraction of the data-sheet bandwidth (STREAM-type kernels).
The element-wise curves of eager PyTorch operators measured by ``deepflow calibrate`` add a
host floor, ``t = max(t_host, bytes / (BW mu) + t_0)`` (:func:`fit_eager_stream_curve`).
A full reduction (the calibrate ``read`` sweep, ``x.sum()``) runs on as many thread blocks as
PyTorch's reduction heuristic gives it, one up to 512 KiB: its curve is
:mod:`deepflow.hardware.reduction`'s.

Where the parameters come from, in order: a calibration file on the accelerator
(``system.accelerator.calibration``), the accelerator's shipped table
(``hardware/data/kernels/<kernel_table>.yaml``, regenerated by ``scripts/fit_kernels.py``),
else the accelerator's ``efficiency`` block (one matmul fraction, the CUTLASS tile and
pipeline defaults and the launch overhead: the model of accelerators without a measured
table, e.g. generated designs and TPUs).

All evaluation functions are vectorized: arguments broadcast as NumPy arrays, and the
precision may be an array of precision codes (``Precision`` order), so that a batch of
strategies looks its parameters up by fancy indexing (precomputed per accelerator).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

from deepflow.errors import ConfigError
from deepflow.hardware.clock_boost import host_loop_time, sustained_time
from deepflow.hardware.grouped_tiles import UnevenRows
from deepflow.specs.accelerator import AcceleratorSpec, Precision
from deepflow.specs.kernels import (
    PRECISION_NAMES,
    AttentionCurve,
    GemmCurve,
    HeadDimFactor,
    KernelParams,
    MemoryCurve,
)

assert tuple(p.value for p in Precision) == PRECISION_NAMES

BF16 = PRECISION_NAMES.index("bf16")
OPERAND_BYTES = np.array([4.0, 4.0, 2.0, 2.0, 1.0])
"""Bytes per GEMM input element by precision code (fp8: e4m3 inputs, bf16 output)."""


def output_bytes(element_bytes: object, accumulate: object) -> np.ndarray:
    """Output traffic of a GEMM per output element: the output written, and where the GEMM
    accumulates into it (``D = A B + beta C`` with ``C = D``, ``beta = 1``) read first, twice
    the element width. Transformer Engine sets ``beta`` from its ``accumulate`` flag
    (transformer_engine/common/gemm/cublaslt_gemm.cu, ``cublas_gemm``:
    ``float beta = (accumulate) ? one : zero``, then ``cublasLtMatmul`` with ``C = D``): the
    weight-gradient GEMMs that accumulate into the main gradient (gradient-accumulation
    fusion, ``accumulate=True``)."""
    return np.asarray(element_bytes, dtype=np.float64) * np.where(accumulate, 2.0, 1.0)


ATTENTION_BACKWARD_FLOPS = 2.5
"""Backward FLOPs of fused attention per forward FLOP (Dao 2023, sec. 3.2: five
matmuls to the forward's two)."""

TILE_CANDIDATES = ((64, 128), (128, 64), (128, 128), (128, 256), (256, 128), (256, 256))
"""Output tiles the one-tile fit chooses among (grouped GEMM curves; CUTLASS / cuBLASLt /
hipBLASLt threadblock tiles)."""

GEMM_TILE_SET = ((256, 128), (128, 256), (128, 128), (128, 64), (64, 128), (64, 64))
"""Candidate output tiles of a dense GEMM curve: the threadblock tiles with both sides in
{64, 128, 256} of CUTLASS's SM80 tensor-op GEMM kernels (python/cutlass_library/generator.py,
``GenerateSM80_TensorOp_16816``: 256x128, 128x256, 128x128, 128x64, 64x128, 64x64; its
256x64 and 64x256 are left out to keep the evaluation at six candidates). A library
heuristic (cuBLASLt, CUTLASS's profiler, hipBLASLt) picks one kernel per shape from such a
set; the model takes the fastest candidate. The same set stands for every chip here: the
Hopper and Blackwell CUTLASS generators (``GenerateSM90_TensorOp_16b_WGMMA_gemm``,
``GenerateSM100_TensorOp_16b_UMMA_gemm``) build their tiles from the same 64 / 128 / 256
sides; hipBLASLt's MI300 macro tiles are not sourced separately."""

OPERAND_INTENSITY_GRID = (0.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
"""Values of the operand intensity ``h`` (``GemmCurve.operand_intensity``) the tile-set fit
chooses among (0: every tile at the same efficiency; 128: a 64x64 tile at half the
efficiency of 256x128)."""

TE_GROUPED_STREAMS = 4
"""Streams over which Transformer Engine issues the per-group cuBLAS GEMMs of a grouped GEMM
(transformer_engine/common/include/transformer_engine/gemm.h, ``num_streams = 4``; used by
``nvte_multi_stream_cublas_gemm`` in transformer_engine/common/gemm/cublaslt_gemm.cu)."""


# --- parameters: resolution and per-accelerator arrays ---------------------------------------


def _read_table(name: str) -> KernelParams:
    node = resources.files("deepflow.hardware") / "data" / "kernels" / f"{name}.yaml"
    try:
        data = yaml.safe_load(node.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no shipped kernel table {name!r} (hardware/data/kernels/{name}.yaml)",
            "system.accelerator.kernel_table",
        ) from None
    return KernelParams.model_validate(data["fitted"])


@cache
def shipped_table(name: str) -> KernelParams:
    """The shipped kernel table ``hardware/data/kernels/<name>.yaml`` (its ``fitted`` key)."""
    return _read_table(name)


def table_names() -> list[str]:
    """Names of the shipped kernel tables."""
    node = resources.files("deepflow.hardware") / "data" / "kernels"
    return sorted(p.name[:-5] for p in node.iterdir() if p.name.endswith(".yaml"))


def legacy_params(acc: AcceleratorSpec) -> KernelParams:
    """The model of an accelerator without a measured table, from its ``efficiency`` block:
    one matmul fraction for every precision, the CUTLASS tile, the pipeline fill
    ``stages * tile_k`` as K-depth fill, the launch overhead as latency."""
    eff = acc.efficiency
    gemm = GemmCurve(
        peak_fraction=eff.matmul,
        tile_m=eff.tile_m,
        tile_n=eff.tile_n,
        k_fill=float(eff.pipeline_stages * eff.tile_k),
        latency_s=eff.kernel_overhead,
    )
    attn = AttentionCurve(
        forward_fraction=eff.attention,
        backward_fraction=eff.attention,
        tile_q=eff.tile_m,
        latency_s=eff.kernel_overhead,
    )
    return KernelParams(
        gemm=dict.fromkeys(PRECISION_NAMES, gemm),
        grouped_gemm=dict.fromkeys(PRECISION_NAMES, gemm),
        attention=dict.fromkeys(PRECISION_NAMES, attn),
        memory=MemoryCurve(fraction=eff.memory, latency_s=eff.kernel_overhead),
        source=f"efficiency block of the accelerator spec: {eff.source}",
    )


def kernel_params(acc: AcceleratorSpec) -> KernelParams:
    """The resolved curves of ``acc`` for every precision: the calibration file's, else the
    shipped table's, else the efficiency block's (per curve and precision, in that order)."""
    layers = [legacy_params(acc)]
    if acc.kernel_table:
        layers.append(shipped_table(acc.kernel_table))
    if acc.calibration is not None:
        layers.append(acc.calibration.fitted)
    gemm: dict[str, GemmCurve] = {}
    grouped: dict[str, GemmCurve] = {}
    attention: dict[str, AttentionCurve] = {}
    fa2: dict[str, AttentionCurve] = {}
    memory = layers[0].memory
    sources = []
    for layer in layers:
        gemm.update(layer.gemm)
        # a table without grouped curves groups at its dense curves
        grouped.update(layer.grouped_gemm or layer.gemm)
        attention.update(layer.attention)
        fa2.update(layer.flash_attention_2)
        memory = layer.memory or memory
        sources.append(layer.source)
    return KernelParams(
        gemm=gemm,
        grouped_gemm=grouped,
        attention=attention,
        flash_attention_2=fa2,
        memory=memory,
        source=" | ".join(reversed(sources)),
    )


@dataclass(frozen=True)
class _GemmArrays:
    eta: np.ndarray
    tile_m: np.ndarray  # [precision, candidate]
    tile_n: np.ndarray  # [precision, candidate]
    wave_loss: np.ndarray
    k_fill: np.ndarray
    latency: np.ndarray
    group_streams: np.ndarray
    intensity: np.ndarray
    overlap: np.ndarray
    mn_major: np.ndarray
    host_issue: np.ndarray
    _rows: dict[int, dict[str, np.ndarray]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, curves: dict[str, GemmCurve], width: int) -> _GemmArrays:
        """Arrays of ``curves`` by precision code; the candidate tiles padded to ``width``
        by repeating the last one (a repeated candidate does not change the minimum)."""
        c = [curves[p] for p in PRECISION_NAMES]
        tiles = [list(x.candidate_tiles()) for x in c]
        tiles = [t + [t[-1]] * (width - len(t)) for t in tiles]
        return cls(
            eta=np.array([x.peak_fraction for x in c]),
            tile_m=np.array([[float(a) for a, _ in t] for t in tiles]),
            tile_n=np.array([[float(b) for _, b in t] for t in tiles]),
            wave_loss=np.array([x.wave_loss for x in c]),
            k_fill=np.array([x.k_fill for x in c]),
            latency=np.array([x.latency_s for x in c]),
            group_streams=np.array([float(x.group_streams) for x in c]),
            intensity=np.array([x.operand_intensity for x in c]),
            overlap=np.array([x.overlap for x in c]),
            mn_major=np.array([x.mn_major_fraction for x in c]),
            host_issue=np.array([x.host_issue_s for x in c]),
        )

    def row(self, code: int, name: str) -> np.ndarray:
        """``getattr(self, name)[code]`` for one precision code, kept per code (the
        arrays are not changed after :meth:`of`)."""
        rows = self._rows.get(code)
        if rows is None:
            rows = self._rows[code] = {
                f.name: getattr(self, f.name)[code] for f in fields(self) if f.name != "_rows"
            }
        return rows[name]


@dataclass(frozen=True)
class KernelTable:
    """Per-precision parameter arrays of one accelerator, for vectorized lookup."""

    params: KernelParams
    gemm: _GemmArrays
    grouped: _GemmArrays
    attn_forward: np.ndarray
    attn_backward: np.ndarray
    attn_tile_q: np.ndarray
    attn_latency: np.ndarray
    fa2_forward: np.ndarray
    fa2_backward: np.ndarray
    fa2_tile_q: np.ndarray
    fa2_latency: np.ndarray
    attn_head_dims: tuple[tuple[float, float, np.ndarray, np.ndarray], ...]
    fa2_head_dims: tuple[tuple[float, float, np.ndarray, np.ndarray], ...]
    memory_bandwidth: float  # achievable bytes/s
    memory_latency: float
    compute_units: float


_TABLES: dict[int, tuple[AcceleratorSpec, KernelTable]] = {}


def _head_dim_arrays(
    curves: Sequence[AttentionCurve],
) -> tuple[tuple[float, float, np.ndarray, np.ndarray], ...]:
    """``(d_qk, d_v, c_fwd[code], c_bwd[code])`` for every head-dimension pair that one of
    ``curves`` (one per precision code) lists; 1 for the precisions that do not list it."""
    pairs = sorted({(f.qk_dim, f.v_dim) for c in curves for f in c.head_dims})
    out = []
    for q, v in pairs:
        fwd, bwd = np.ones(len(curves)), np.ones(len(curves))
        for i, c in enumerate(curves):
            for f in c.head_dims:
                if (f.qk_dim, f.v_dim) == (q, v):
                    fwd[i], bwd[i] = f.forward, f.backward
        out.append((float(q), float(v), fwd, bwd))
    return tuple(out)


def head_dim_factors(
    pairs: Sequence[tuple[float, float, object, object]], qk_dim: object, v_dim: object
) -> tuple[object, object]:
    """``(c_fwd, c_bwd)`` of attention with head dimensions ``qk_dim``, ``v_dim`` (arrays
    broadcast) from ``(d_qk, d_v, c_fwd, c_bwd)`` pairs: the listed pair's factors, 1 for
    an unlisted pair (the module docstring's attention curve)."""
    fwd: object = 1.0
    bwd: object = 1.0
    for q, v, f, b in pairs:
        match = (np.asarray(qk_dim) == q) & (np.asarray(v_dim) == v)
        if match.any():
            fwd = np.where(match, f, fwd)
            bwd = np.where(match, b, bwd)
    return fwd, bwd


def kernel_table(acc: AcceleratorSpec) -> KernelTable:
    """The arrays of :func:`kernel_params` for ``acc``, built once per accelerator object."""
    hit = _TABLES.get(id(acc))
    if hit is not None and hit[0] is acc:
        return hit[1]
    p = kernel_params(acc)
    attn = [p.attention[x] for x in PRECISION_NAMES]
    # FlashAttention-2 where the chip has its own published curve, else the attention curve
    fa2 = [p.flash_attention_2.get(x, p.attention[x]) for x in PRECISION_NAMES]
    assert p.memory is not None
    width = max(len(c.candidate_tiles()) for c in (*p.gemm.values(), *p.grouped_gemm.values()))
    table = KernelTable(
        params=p,
        gemm=_GemmArrays.of(p.gemm, width),
        grouped=_GemmArrays.of(p.grouped_gemm, width),
        attn_forward=np.array([a.forward_fraction for a in attn]),
        attn_backward=np.array([a.backward_fraction for a in attn]),
        attn_tile_q=np.array([float(a.tile_q) for a in attn]),
        attn_latency=np.array([a.latency_s for a in attn]),
        fa2_forward=np.array([a.forward_fraction for a in fa2]),
        fa2_backward=np.array([a.backward_fraction for a in fa2]),
        fa2_tile_q=np.array([float(a.tile_q) for a in fa2]),
        fa2_latency=np.array([a.latency_s for a in fa2]),
        attn_head_dims=_head_dim_arrays(attn),
        fa2_head_dims=_head_dim_arrays(fa2),
        memory_bandwidth=acc.memory_bandwidth * p.memory.fraction,
        memory_latency=p.memory.latency_s,
        compute_units=float(acc.compute_units),
    )
    if len(_TABLES) > 256:  # accelerators derived in a loop (co-design): keep the cache small
        _TABLES.clear()
    _TABLES[id(acc)] = (acc, table)
    return table


def precision_code(dtype: object) -> object:
    """A precision code (or array of codes) from a :class:`Precision`, its name, or codes;
    ``None`` means bf16."""
    if dtype is None:
        return BF16
    if isinstance(dtype, Precision):
        return PRECISION_NAMES.index(dtype.value)
    if isinstance(dtype, str):
        return PRECISION_NAMES.index(Precision(dtype).value)
    return dtype


# --- the curves ----------------------------------------------------------------------------


def tile_efficiency(tile_m: object, tile_n: object, intensity: object) -> np.ndarray:
    """Efficiency of each candidate tile (candidate axis last) relative to the set's best:
    ``r(a) / max r``, ``r(a) = a / (a + h)``, ``a = tm tn / (tm + tn)``.

    Per K step a ``tm x tn`` tile loads ``(tm + tn) tk`` operand elements and issues
    ``tm tn tk`` multiply-adds; when the operand feed (shared memory / L2 to the tensor
    cores) and the MMAs do not fully overlap, the time per step is
    ``tm tn tk / R + (tm + tn) tk / B``, the efficiency ``a / (a + R / B)``: ``h = R / B``
    is the rate ratio, in elements (Volkov and Demmel 2008, "Benchmarking GPUs to tune
    dense linear algebra", SC08: the blocked GEMM's bandwidth need falls as
    ``1 / a``; CUTLASS, "Efficient GEMM in CUDA", threadblock tiles)."""
    tm = np.asarray(tile_m, dtype=np.float64)
    tn = np.asarray(tile_n, dtype=np.float64)
    a = tm * tn / (tm + tn)
    r = a / (a + np.asarray(intensity, dtype=np.float64)[..., None])
    return r / np.max(r, axis=-1, keepdims=True)


def gemm_terms(
    m: object,
    n: object,
    k: object,
    groups: object,
    peak: object,
    bandwidth: float,
    units: float,
    eta: object,
    tile_m: object,
    tile_n: object,
    wave_loss: object,
    k_fill: object,
    latency: object,
    in_bytes: object,
    out_bytes: object,
    group_streams: object = 0,
    intensity: object = 0.0,
    uneven_rows: UnevenRows | None = None,
    overlap: object = 1.0,
    host_issue: object = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(time, compute, memory)`` of the GEMM curve (module docstring) from raw parameters:
    the one definition that the evaluators and the fit share.

    ``tile_m``, ``tile_n``: one tile (scalars, or arrays broadcast against the shape), or
    candidate tiles along a last axis (``GemmCurve.tiles``): each candidate's compute time
    is that of the one-tile curve at efficiency ``eta`` times :func:`tile_efficiency`
    (``intensity``: ``GemmCurve.operand_intensity``), and the kernel runs the fastest
    candidate (what a library heuristic that picks the fastest kernel achieves):
    ``compute = min_c compute_c``. Since ``max(x, memory)`` rises with ``x``, that is also
    the candidate of least time.

    ``overlap`` < 1: ``(1 - overlap) min(compute, memory)`` is added to the roofline's
    ``max`` (1 adds nothing and is not evaluated).

    ``group_streams`` > 0: the ``groups`` GEMMs are separate kernels over that many streams
    (:class:`~deepflow.specs.kernels.GemmCurve`): ``min(s, g)`` groups fill one wave count
    together and each round of ``s`` groups pays ``latency``; ``host_issue`` > 0: each
    round takes at least that long, the host's time to issue it (the time is then
    ``max(device time, rounds host_issue)``: a device faster than the host's loop waits for
    it, a slower one runs the queued kernels back to back).

    ``uneven_rows``: the groups' row counts vary (MoE experts under routing; ``m`` is then
    their mean, for the FLOPs and bytes); each group's row tiles are the expected ``ceil``
    of its count (:class:`~deepflow.hardware.grouped_tiles.UnevenRows`) instead of
    ``ceil(m / tm)``. ``None`` (every measured shape, the fit): equal groups."""
    m = np.maximum(np.asarray(m, dtype=np.float64), 1.0)
    n = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    k = np.maximum(np.asarray(k, dtype=np.float64), 1.0)
    g = np.asarray(groups, dtype=np.float64)
    streams = np.asarray(group_streams, dtype=np.float64)
    if (streams > 0).any():
        per_group = streams > 0
        together = np.where(per_group, np.minimum(np.maximum(streams, 1.0), g), g)
        rounds = np.where(per_group, np.ceil(g / np.maximum(streams, 1.0)), 1.0)
    else:
        together, rounds = g, 1.0
    tm_all = np.asarray(tile_m, dtype=np.float64)
    tn_all = np.asarray(tile_n, dtype=np.float64)
    # F / (q_tile q_k) = 2 g (k + k_fill) (padded m) (padded n): the part common to all tiles
    scale = (2.0 * g) * (k + k_fill) / (np.asarray(peak, dtype=np.float64) * eta)
    wave_loss = np.asarray(wave_loss, dtype=np.float64)
    # shapes as the candidates see them: with a last axis where the candidates lie along one
    sides = (m, n, np.asarray(together), wave_loss)
    broadcast = False
    per_shape = False  # each shape its own tile efficiencies (else one per candidate)
    if tm_all.ndim and tm_all.shape[-1] > 1:
        eff = tile_efficiency(tm_all, tn_all, intensity)
        per_shape = eff.ndim > 1
        broadcast = max(a.size for a in sides) <= BROADCAST_CANDIDATES_MAX
        if broadcast:
            # a few shapes (one strategy): all candidates at once along a last axis, the
            # loop's arithmetic element for element
            sides = tuple(a[..., None] for a in sides)
            candidates = [(tm_all, tn_all, eff)]
            if uneven_rows is not None:  # its arrays against the candidate axis too
                uneven_rows = uneven_rows.with_last_axis()
        else:
            # a loop over the (few) candidates on whole arrays; a candidate axis broadcast
            # against a large batch costs more than the loop
            width = tm_all.shape[-1]
            candidates = [(tm_all[..., c], tn_all[..., c], eff[..., c]) for c in range(width)]
    else:
        tm1 = tm_all[..., 0] if tm_all.ndim else tm_all
        tn1 = tn_all[..., 0] if tn_all.ndim else tn_all
        candidates = [(tm1, tn1, 1.0)]
    m_c, n_c, together_c, wave_c = sides
    padded: dict[tuple[int, float], np.ndarray] = {}  # a side's padding, shared by candidates

    def padded_side(side: int, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        if side == 0 and uneven_rows is not None:  # uneven groups: the expected padding
            return uneven_rows.tiles(t) * t
        return np.ceil(x / t) * t

    def pad(side: int, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        if t.ndim:
            return padded_side(side, x, t)
        key = (side, float(t))
        if key not in padded:
            padded[key] = padded_side(side, x, t)
        return padded[key]

    best = None  # least (padded area) / (q_wave e_tile) over the candidates
    for tm, tn, e in candidates:
        area = pad(0, m_c, tm) * pad(1, n_c, tn)
        tiles = area * (together_c / (tm * tn))
        full = np.ceil(tiles / units) * units
        q_wave = (1.0 - wave_c) + wave_c * (tiles / full)
        cost = area / (q_wave * e) if per_shape else area / q_wave * (1.0 / e)
        if broadcast:
            cost = cost.min(axis=-1)
        best = cost if best is None else np.minimum(best, cost)
    compute = scale * best
    memory = ((m * k + k * n) * in_bytes + m * n * out_bytes) * g / bandwidth
    time = np.maximum(compute, memory)
    hidden = np.asarray(overlap, dtype=np.float64)
    if (hidden < 1.0).any():
        time = time + (1.0 - hidden) * np.minimum(compute, memory)
    time = time + latency * rounds
    host = np.asarray(host_issue, dtype=np.float64)
    if (host > 0.0).any():
        time = np.maximum(time, host * rounds)
    return time, compute, memory


BROADCAST_CANDIDATES_MAX = 64
"""Largest shape count for which :func:`gemm_terms` evaluates the candidate tiles along a
broadcast last axis rather than one candidate at a time (the same arithmetic per element):
the GEMMs of one strategy's layer on a leading axis (a dozen to a few dozen) take one
broadcast, a batch of strategies the loop. Measured on the development machine with the
A100 table's six candidates: the broadcast takes 58-64 us from 3 to 48 shapes, the loop
78-107 us; at 400 shapes they are even (101 and 107 us)."""


def gemm_kernel_time(
    m: object,
    n: object,
    k: object,
    acc: AcceleratorSpec,
    peak: object,
    out_bytes: object = 2.0,
    groups: object = 1,
    dtype: object = None,
    eta_scale: object = 1.0,
    uneven_rows: UnevenRows | None = None,
    mn_major: object = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(time, compute, memory)`` of ``groups`` GEMMs ``[m, k] x [k, n]`` on ``acc`` at
    dense rate ``peak`` (FLOP/s) and precision ``dtype`` (code, array of codes, name or
    :class:`Precision`); one launch of several GEMMs (``groups > 1``) uses the grouped
    curve. ``eta_scale`` multiplies the curve's peak-achievable fraction ``eta`` (the
    co-design point's hierarchical-roofline factor per strategy,
    :func:`deepflow.codesign.point.evaluate_generated`); 1 leaves the curve as it is.
    ``uneven_rows``: the groups' row counts, when they vary around ``m``
    (:func:`gemm_terms`; ``None``: equal groups). ``mn_major``: both operands are MN-major
    (a weight-gradient GEMM ``dY^T X``; :func:`operands_factor`)."""
    t = kernel_table(acc)
    code = precision_code(dtype)
    if isinstance(code, np.ndarray) and code.ndim and code.size:
        first = code.flat[0]
        if bool((code == first).all()):  # one precision for the batch: scalar parameters
            code = int(first)
    g = np.asarray(groups, dtype=np.float64)
    single, grouped = t.gemm, t.grouped
    pick = g > 1
    mixed = bool(pick.any())  # once per call: every parameter takes the same branch

    def param(name: str) -> np.ndarray:
        a = single.row(code, name) if type(code) is int else getattr(single, name)[code]
        if not mixed:
            return a
        if name in ("tile_m", "tile_n"):  # candidate axis last
            return np.where(pick[..., None], getattr(grouped, name)[code], a)
        return np.where(pick, getattr(grouped, name)[code], a)

    eta = param("eta") * eta_scale
    if np.asarray(mn_major).any():
        eta = eta * operands_factor(mn_major, param("mn_major"))
    return gemm_terms(
        m,
        n,
        k,
        g,
        peak,
        t.memory_bandwidth,
        t.compute_units,
        eta,
        param("tile_m"),
        param("tile_n"),
        param("wave_loss"),
        param("k_fill"),
        param("latency"),
        OPERAND_BYTES[code],
        out_bytes,
        param("group_streams") if mixed else 0.0,
        param("intensity"),
        uneven_rows,
        overlap=param("overlap"),
        host_issue=param("host_issue") if mixed else 0.0,
    )


LAYOUT_PRECISIONS = ("tf32",)
"""Precisions whose GEMM kernels run slower when both operands are MN-major, and whose
curves fit :attr:`GemmCurve.mn_major_fraction`. Hopper's tensor cores (``wgmma``) read
shared-memory operands of 16-bit types in either major order but 32-bit (tf32) ones only
K-major: CUTLASS's SM90 collective builder sends a tf32 GEMM with an MN-major operand to the
register-sourced mainloop (``is_use_rmem_A`` in
include/cutlass/gemm/collective/builders/sm90_common.inl: ``!IsInputSizeTwoBytes &&
!IsLayoutAkBk``); with one MN-major operand it swaps the operands so that the MN-major one
is read through registers (``is_swapAB``), with both it also transposes ``B`` in shared
memory with the consumer warps (``is_warpspecialized_transpose_B`` in
include/cutlass/gemm/collective/builders/sm90_gmma_builder.inl), work the K-major kernel
does not do. The H200 file shows it: its large tf32 weight-gradient GEMMs (both operands
MN-major) run at 204-249 TFLOP/s, the forward GEMMs of the same layers (both K-major) at
300-410, while fp16 and bf16 run at one rate in every layout (``python
bench/kernel_fit_report.py``, the table by operand layout). fp32 runs on the CUDA cores (no ``wgmma``: its layouts time alike in the file), and
fp8 GEMMs are measured K-major only (cuBLASLt's fp8 kernels are "TN")."""


def operands_factor(mn_major: object, fraction: object) -> np.ndarray:
    """The factor on ``eta`` of a GEMM by its operand layout: ``fraction``
    (:attr:`GemmCurve.mn_major_fraction`, :data:`LAYOUT_PRECISIONS`) where both operands
    are MN-major, else 1."""
    return np.where(np.asarray(mn_major, dtype=bool), fraction, 1.0)


def attention_flops(
    batch: object, heads: object, seq_q: object, seq_kv: object, qk_dim: object, v_dim: object
) -> np.ndarray:
    """Forward FLOPs of attention without masking: ``2 b h s_q s_kv (d_qk + d_v)`` (the
    score product ``Q K^T`` and the context product ``P V``)."""
    return (
        2.0
        * np.asarray(batch, dtype=np.float64)
        * heads
        * np.asarray(seq_q, dtype=np.float64)
        * seq_kv
        * (np.asarray(qk_dim, dtype=np.float64) + v_dim)
    )


def attention_terms(
    flops_fwd: object,
    query_tiles: object,
    peak: object,
    units: float,
    forward_fraction: object,
    backward_fraction: object,
    latency: object,
) -> tuple[np.ndarray, np.ndarray]:
    """``(t_fwd, t_bwd)`` of the attention curve (module docstring) from raw parameters."""
    tiles = np.maximum(np.asarray(query_tiles, dtype=np.float64), 1.0)
    q_wave = tiles / (np.ceil(tiles / units) * units)
    rate = np.asarray(peak, dtype=np.float64) * q_wave
    f = np.asarray(flops_fwd, dtype=np.float64)
    fwd = f / (rate * forward_fraction) + latency
    bwd = ATTENTION_BACKWARD_FLOPS * f / (rate * backward_fraction) + latency
    return fwd, bwd


def attention_time(
    batch: object,
    heads: object,
    seq_q: object,
    seq_kv: object,
    qk_dim: object,
    v_dim: object,
    causal: object,
    acc: AcceleratorSpec,
    peak: object,
    dtype: object = None,
    kernel: str = "default",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(t_fwd, t_bwd, flops_fwd)`` of fused (flash) attention on ``acc``; the FLOPs are
    those executed (causal: half the unmasked count). ``kernel`` ``"flash-attention-2"``
    takes the chip's FlashAttention-2 curve (``KernelParams.flash_attention_2``) where it
    has one, ``"default"`` its attention curve."""
    t = kernel_table(acc)
    code = precision_code(dtype)
    full = attention_flops(batch, heads, seq_q, seq_kv, qk_dim, v_dim)
    flops = np.where(causal, 0.5 * full, full)
    fa2 = kernel == "flash-attention-2"
    tile_q = (t.fa2_tile_q if fa2 else t.attn_tile_q)[code]
    tiles = np.asarray(batch, dtype=np.float64) * heads * np.ceil(seq_q / tile_q)
    pairs = [
        (q, v, f[code], b[code]) for q, v, f, b in (t.fa2_head_dims if fa2 else t.attn_head_dims)
    ]
    c_fwd, c_bwd = head_dim_factors(pairs, qk_dim, v_dim)
    fwd, bwd = attention_terms(
        flops,
        tiles,
        peak,
        t.compute_units,
        (t.fa2_forward if fa2 else t.attn_forward)[code] * c_fwd,
        (t.fa2_backward if fa2 else t.attn_backward)[code] * c_bwd,
        (t.fa2_latency if fa2 else t.attn_latency)[code],
    )
    return fwd, bwd, flops


def stream_time(bytes_moved: object, acc: AcceleratorSpec, kernels: object = 1) -> np.ndarray:
    """Time of ``kernels`` streaming kernels moving ``bytes_moved`` bytes in all."""
    t = kernel_table(acc)
    moved = np.asarray(bytes_moved, dtype=np.float64)
    overhead = np.asarray(kernels, dtype=np.float64) * t.memory_latency
    return np.where(moved > 0, stream_terms(moved, t.memory_bandwidth, 1.0, overhead), 0.0)


# --- the fit -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GemmSample:
    """One measured GEMM: ``groups`` GEMMs ``m x n x k`` took ``time_s``."""

    m: float
    n: float
    k: float
    time_s: float
    groups: float = 1.0
    out_bytes: float = 2.0
    family: str = ""
    mn_major: bool = False  # both operands MN-major (GEMM_LAYOUTS "tn")
    host_loop: tuple[int, int] = (0, 0)  # (warm-up, timed) calls of a host-timed loop


@dataclass(frozen=True)
class AttentionSample:
    """One measured fused attention (``backward``: forward + backward time, as in a
    calibration file's attention record)."""

    batch: float
    heads: float
    seq: float
    qk_dim: float
    v_dim: float
    causal: bool
    backward: bool
    time_s: float
    family: str = ""


@dataclass(frozen=True)
class Device:
    """What the fit needs to know of the measured device."""

    peak: float  # dense FLOP/s at the fitted precision
    memory_bandwidth: float  # data-sheet bytes/s
    compute_units: int
    memory_fraction: float  # achievable fraction of the bandwidth (memory curve)


def _log_error(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.mean(np.abs(np.log(pred / meas)), axis=-1)


def _refine(
    objective: Any,
    bounds: Sequence[tuple[float, float]],
    logs: Sequence[bool],
    rounds: int = 6,
    points: int = 9,
    reach: float = 3.0,
) -> tuple[np.ndarray, float]:
    """Deterministic coarse-to-fine grid search: evaluate ``objective`` on a grid of
    ``points`` points per parameter (log-spaced where ``logs``), then shrink each range to
    ``reach`` grid steps either side of the best point and repeat. ``objective`` takes
    arrays of parameter values (one per parameter, broadcast against each other) and returns
    the loss per point. With 9 points and ``reach`` 3 a range keeps 6 of its 8 steps per
    round; with 7 points and ``reach`` 3 (the main GEMM fit, :func:`_fit_terms`) it keeps
    all 6 and narrows only where the best point lies within three steps of an edge, so
    that fit searches a fixed 7-point grid in the parameters whose best lies inside."""
    lo = np.array([math.log(b[0]) if lg else b[0] for b, lg in zip(bounds, logs, strict=True)])
    hi = np.array([math.log(b[1]) if lg else b[1] for b, lg in zip(bounds, logs, strict=True)])
    best = (lo + hi) / 2.0
    loss = math.inf
    dims = len(bounds)
    for _ in range(rounds):
        # a fixed parameter (equal bounds) is one grid point, not ``points`` copies of it
        axes = [np.linspace(lo[i], hi[i], points if hi[i] > lo[i] else 1) for i in range(dims)]
        grid = np.meshgrid(*axes, indexing="ij")
        values = [np.exp(g) if logs[i] else g for i, g in enumerate(grid)]
        losses = objective(*[v.reshape(-1, 1) for v in values])
        i = int(np.argmin(losses))
        if losses[i] < loss:
            loss = float(losses[i])
            best = np.array([g.reshape(-1)[i] for g in grid])
        step = (hi - lo) / (points - 1.0)
        lo = np.maximum(best - reach * step, lo)
        hi = np.minimum(best + reach * step, hi)
    return np.array([math.exp(b) if lg else b for b, lg in zip(best, logs, strict=True)]), loss


def fit_gemm_curve(
    samples: Sequence[GemmSample],
    device: Device,
    dtype: str,
    fixed_latency: float | None = None,
    fixed_wave_loss: float | None = None,
    group_streams: int = 0,
    tiles: Sequence[tuple[int, int]] = (),
    fixed_intensity: float | None = None,
    fit_overlap: bool = False,
    fit_layout: bool = False,
    fixed_overlap: float = 1.0,
    staged_overlap: bool = False,
) -> GemmCurve:
    """Fit ``eta``, ``k_fill``, ``t_0``, ``w`` and the tile of the GEMM curve to ``samples``
    (least mean absolute log error of time; the tile among :data:`TILE_CANDIDATES`).

    ``tiles``: a candidate tile set (:data:`GEMM_TILE_SET`; ``GemmCurve.tiles``): the
    kernel runs the fastest candidate, and instead of one tile the fit chooses the operand
    intensity ``h`` among :data:`OPERAND_INTENSITY_GRID` (``fixed_intensity``: held at that
    value; with one or two samples and none given, 0);
    ``eta`` is the reference tile's fraction (the candidate of highest intensity).

    ``fixed_latency`` / ``fixed_wave_loss`` hold ``t_0`` / ``w`` at a given value instead of
    fitting them: a table of a few shapes cannot separate the latency, the wave and the
    K-fill terms (each makes the small shapes slower), so the caller supplies values measured
    elsewhere (:func:`deepflow.hardware.calibration.fit_kernel_params`). With one or two
    samples only ``eta`` is fitted (``k_fill`` 0, ``t_0`` ``fixed_latency`` or 0, ``w``
    ``fixed_wave_loss`` or 1): too few points for more parameters. ``group_streams`` is how
    the measured library launches a grouped GEMM's groups (``GemmCurve.group_streams``; a
    property of the library's code, :func:`deepflow.hardware.calibration.group_launch`,
    not fitted). ``fit_overlap`` fits the overlap ``o`` of the compute and memory terms in
    the same grid as the other terms (grouped curves; ``GemmCurve.overlap``); it needs three
    or more samples. Otherwise ``o`` is ``fixed_overlap``, or, with ``staged_overlap``
    (dense tables), :func:`_fit_staged`'s.

    Samples timed by a host loop (``GemmSample.host_loop``) are fitted in stages as well
    (:func:`_fit_staged`): the curve's terms are those of the sustained clock, and the
    curve records the loop's boost factor and window (:mod:`deepflow.hardware.clock_boost`).

    ``fit_layout`` (a precision of :data:`LAYOUT_PRECISIONS`): the curve is fitted to the
    samples with a K-major operand, then ``GemmCurve.mn_major_fraction`` alone to those
    whose two operands are MN-major (``GemmSample.mn_major``; :func:`fit_operands_factor`);
    without samples of both kinds the fraction stays 1."""
    if not samples:
        raise ValueError("fit_gemm_curve needs at least one sample")
    if fit_layout:
        crossed = [s for s in samples if s.mn_major]
        straight = [s for s in samples if not s.mn_major]
        if crossed and straight:
            base = fit_gemm_curve(
                straight,
                device,
                dtype,
                fixed_latency,
                fixed_wave_loss,
                group_streams,
                tiles,
                fixed_intensity,
                fit_overlap,
                fixed_overlap=fixed_overlap,
                staged_overlap=staged_overlap,
            )
            factor = fit_operands_factor(crossed, base, device, dtype)
            return base.model_copy(update={"mn_major_fraction": factor})
    args = (device, dtype, fixed_latency, fixed_wave_loss, group_streams, tiles, fixed_intensity)
    looped = any(s.host_loop[1] > 0 for s in samples)
    if len(samples) >= 3 and not fit_overlap and (staged_overlap or looped):
        return _fit_staged(samples, args, fixed_overlap, staged_overlap, looped)
    meas = np.array([s.time_s for s in samples])
    return _fit_terms(samples, meas, *args, fit_overlap, fixed_overlap)


BOOST_BOUNDS = ((1.0, 2.0), (1e-3, 0.5))
"""Search ranges of the clock boost factor and of its window in seconds
(:func:`_fit_staged`): up to twice the sustained clock, 1 ms to 0.5 s."""

FIRST_STAGE_ROUNDS = 3
"""Refinement rounds of the first stage of :func:`_fit_staged` (the main fit's are 6): its
terms only hold the second stage's search, and the third stage refits them all."""

SCALE_BOUNDS = (0.5, 2.0)
"""Search range of the second stage's factor on the first stage's ``eta``
(:func:`_fit_staged`): a first stage fitted to boosted and sustained times alike lies
between the two clocks."""

STAGE_ROUNDS = 10
"""Refinement rounds of the second stage of :func:`_fit_staged`."""

STAGE_POINTS = 7
"""Grid points per parameter of the second stage of :func:`_fit_staged` (four parameters:
2,401 points a round)."""

STAGE_REACH = 2.0
"""Grid steps kept either side of the best point per round in the second stage of
:func:`_fit_staged` (:func:`_refine`): 6 steps narrow to 4, a final step of 0.4 % of each
range after :data:`STAGE_ROUNDS` rounds."""


def _fit_staged(
    samples: Sequence[GemmSample],
    args: tuple,
    fixed_overlap: float,
    fit_overlap: bool,
    looped: bool,
) -> GemmCurve:
    """The GEMM fit in three stages, for terms that a sixth and seventh grid dimension would
    make seven to fifty times slower to fit: (1) every term of :func:`_fit_terms` with the
    overlap at ``fixed_overlap`` and the measured times as they are; (2) those terms held
    but ``eta`` (a factor on it, :data:`SCALE_BOUNDS`), the overlap (``fit_overlap``) and,
    for samples timed by a host loop (``looped``), the clock boost factor and window
    (:func:`~deepflow.hardware.clock_boost.host_loop_time`), least mean absolute log error
    of the measured times (:func:`_refine`); (3) every term
    of :func:`_fit_terms` again, the overlap at stage 2's, on the sustained-clock times
    of the samples (:func:`~deepflow.hardware.clock_boost.sustained_time` of each
    measured time). The curve carries stage 2's overlap, boost and window."""
    device, dtype = args[0], args[1]
    meas = np.array([s.time_s for s in samples])
    loops = np.array([s.host_loop for s in samples], dtype=np.float64)
    warmup, timed = loops[:, 0], loops[:, 1]
    first = _fit_terms(samples, meas, *args, False, fixed_overlap, rounds=FIRST_STAGE_ROUNDS)

    def objective(scale, overlap, boost, window):
        eta = first.peak_fraction * scale
        kernel = _predict(first, samples, device, dtype, eta, overlap=overlap, harness=False)
        return _log_error(host_loop_time(kernel, boost, window, warmup, timed), meas)

    (b_lo, b_hi), (w_lo, w_hi) = BOOST_BOUNDS if looped else ((1.0, 1.0), (1.0, 1.0))
    x, _ = _refine(
        objective,
        [SCALE_BOUNDS, (0.0, 1.0) if fit_overlap else (fixed_overlap, fixed_overlap),
         (b_lo, b_hi), (w_lo, w_hi)],
        [True, False, False, True],
        rounds=STAGE_ROUNDS,
        points=STAGE_POINTS,
        reach=STAGE_REACH,
    )  # fmt: skip
    overlap, boost, window = float(x[1]), float(x[2]), float(x[3]) if looped else 0.0
    sustained = sustained_time(meas, boost, window, warmup, timed)
    curve = _fit_terms(samples, sustained, *args, False, overlap, reach=STAGE_REACH)
    return curve.model_copy(
        update={
            "overlap": round(overlap, 3),
            "clock_boost": round(boost, 4),
            "boost_window_s": float(f"{window:.3g}"),
        }
    )


def _fit_terms(
    samples: Sequence[GemmSample],
    meas: np.ndarray,
    device: Device,
    dtype: str,
    fixed_latency: float | None,
    fixed_wave_loss: float | None,
    group_streams: int,
    tiles: Sequence[tuple[int, int]],
    fixed_intensity: float | None,
    fit_overlap: bool,
    fixed_overlap: float,
    rounds: int = 6,
    reach: float = 3.0,
) -> GemmCurve:
    """The grid fit of :func:`fit_gemm_curve` to kernel times ``meas`` (one per sample),
    ``rounds`` refinements of the grid (:func:`_refine`)."""
    code = PRECISION_NAMES.index(dtype)
    m = np.array([s.m for s in samples])
    n = np.array([s.n for s in samples])
    k = np.array([s.k for s in samples])
    g = np.array([s.groups for s in samples])
    ob = np.array([s.out_bytes for s in samples])
    bw = device.memory_bandwidth * device.memory_fraction
    few = len(samples) < 3
    best: tuple[float, GemmCurve] | None = None
    streams = group_streams
    if tiles:
        tile_set = tuple((int(a), int(b)) for a, b in tiles)
        ref = max(tile_set, key=lambda t: t[0] * t[1] / (t[0] + t[1]))
        set_m = np.array([float(a) for a, _ in tile_set])
        set_n = np.array([float(b) for _, b in tile_set])
        configs = [
            (set_m, set_n, h, {"tile_m": ref[0], "tile_n": ref[1], "tiles": tile_set,
                               "operand_intensity": h})
            for h in (
                (fixed_intensity,)
                if fixed_intensity is not None
                else (0.0,) if few else OPERAND_INTENSITY_GRID
            )
        ]  # fmt: skip
    else:
        configs = [(tm, tn, 0.0, {"tile_m": tm, "tile_n": tn}) for tm, tn in TILE_CANDIDATES]
    for tm, tn, h, shape in configs:

        def objective(
            eta,
            k_fill,
            latency,
            wave_loss,
            overlap=fixed_overlap,
            tm=tm,
            tn=tn,
            streams=streams,
            h=h,
        ):
            pred, _, _ = gemm_terms(
                m,
                n,
                k,
                g,
                device.peak,
                bw,
                device.compute_units,
                eta,
                tm,
                tn,
                wave_loss,
                k_fill,
                latency,
                OPERAND_BYTES[code],
                ob,
                streams,
                h,
                overlap=overlap,
            )
            return _log_error(pred, meas)

        if few:
            lat = fixed_latency or 0.0
            w = 1.0 if fixed_wave_loss is None else fixed_wave_loss
            x, loss = _refine(
                lambda eta, _o=objective, _lat=lat, _w=w: _o(eta, 0.0, _lat, _w),
                [(0.05, 1.0)],
                [False],
            )
            curve = GemmCurve(
                peak_fraction=float(x[0]),
                **shape,
                wave_loss=w,
                latency_s=lat,
                group_streams=streams,
                overlap=fixed_overlap,
            )
        else:
            lat_bounds = (
                (fixed_latency * 0.999 + 1e-9, fixed_latency + 1e-9)
                if fixed_latency is not None
                else (1e-7, 2e-4)
            )
            wave_bounds = (
                (fixed_wave_loss, fixed_wave_loss) if fixed_wave_loss is not None else (0.0, 1.0)
            )
            overlap_bounds = (0.0, 1.0) if fit_overlap else (fixed_overlap, fixed_overlap)
            x, loss = _refine(
                objective,
                [(0.05, 1.0), (1.0, 8192.0), lat_bounds, wave_bounds, overlap_bounds],
                [False, True, True, False, False],
                rounds=rounds,
                points=7,
                reach=reach,
            )
            curve = GemmCurve(
                peak_fraction=float(x[0]),
                **shape,
                wave_loss=float(x[3]),
                k_fill=float(x[1]),
                latency_s=float(x[2]),
                group_streams=streams,
                overlap=float(x[4]),
            )
        if best is None or loss < best[0] - 1e-12:
            best = (loss, curve)
    assert best is not None
    return _rounded_gemm(best[1])


def _rounded_gemm(c: GemmCurve) -> GemmCurve:
    return GemmCurve(
        peak_fraction=round(c.peak_fraction, 4),
        tile_m=c.tile_m,
        tile_n=c.tile_n,
        wave_loss=round(c.wave_loss, 3),
        k_fill=round(c.k_fill, 1),
        latency_s=float(f"{c.latency_s:.3g}"),
        group_streams=c.group_streams,
        tiles=c.tiles,
        operand_intensity=c.operand_intensity,
        overlap=round(c.overlap, 3),
        mn_major_fraction=c.mn_major_fraction,
        host_issue_s=c.host_issue_s,
        clock_boost=c.clock_boost,
        boost_window_s=c.boost_window_s,
    )


OPERANDS_FACTOR_ROUNDS = 12
"""Refinement rounds of :func:`fit_operands_factor` (log grid over 0.2-1: a final step of
0.8 % of the factor)."""

HOST_LOOP_ROUNDS = 18
"""Refinement rounds of :func:`fit_host_loop_curve` (log grid over 0.1 us - 1 ms: a final
step of 0.9 % of the host issue time)."""


def fit_operands_factor(
    samples: Sequence[GemmSample], curve: GemmCurve, device: Device, dtype: str
) -> float:
    """``GemmCurve.mn_major_fraction``: the factor on ``curve``'s ``eta`` that fits
    ``samples`` (GEMMs with both operands MN-major) best, the other terms held (least mean
    absolute log error over 0.2-1)."""
    meas = np.array([s.time_s for s in samples])

    def objective(factor):
        return _log_error(
            _predict(curve, samples, device, dtype, curve.peak_fraction * factor), meas
        )

    x, _ = _refine(objective, [(0.2, 1.0)], [True], rounds=OPERANDS_FACTOR_ROUNDS)
    return round(float(x[0]), 4)


PEAK_FRACTION_ROUNDS = 24
"""Refinement rounds of :func:`fit_peak_fraction` (log grid over 0.05-1: a final step under
0.1 % of the fraction)."""


def fit_peak_fraction(
    samples: Sequence[GemmSample], base: GemmCurve, device: Device, dtype: str
) -> float:
    """The peak fraction that makes ``base`` match ``samples`` best, the other terms held
    (least mean absolute log error over 0.05-1, :func:`_refine`; one sample: matched
    exactly), at the sustained clock: ``base``'s kernel times against, for samples timed by
    a host loop, the sustained time of each measured time at ``base``'s clock boost and
    window (:func:`~deepflow.hardware.clock_boost.sustained_time`). A search, not a ratio
    of times: the latency and the unhidden output traffic (``overlap`` < 1) do not scale
    with ``1 / eta``."""
    loops = np.array([s.host_loop for s in samples], dtype=np.float64).reshape(-1, 2)
    meas = sustained_time(
        np.array([s.time_s for s in samples]),
        base.clock_boost,
        base.boost_window_s,
        loops[:, 0],
        loops[:, 1],
    )

    def objective(eta):
        return _log_error(_predict(base, samples, device, dtype, eta, harness=False), meas)

    x, _ = _refine(objective, [(0.05, 1.0)], [True], rounds=PEAK_FRACTION_ROUNDS)
    return round(float(x[0]), 4)


def fit_host_loop_curve(
    samples: Sequence[GemmSample], dense: GemmCurve, device: Device, dtype: str
) -> GemmCurve:
    """The curve of a grouped GEMM that a host loop issues as one dense GEMM per group on
    one stream (PyTorch's ``_grouped_mm_fallback``): ``dense``'s terms per group
    (``group_streams`` 1: each group its own waves and latency) and the host's issue time
    per group, ``host_issue_s``, fitted to ``samples`` (least mean absolute log error,
    :func:`gemm_terms`: ``t = max(device time, g host_issue_s)``).

    The fallback (aten/src/ATen/native/GroupedMMUtils.h, ``_grouped_mm_fallback``, as
    shipped in PyTorch 2.11.0, git 70d99e9, the version of the H200 file) copies
    the group offsets to the host (``offs.value().cpu()``, a synchronization) and then, per
    group, slices the operands and calls ``at::mm_out``: a dense cuBLAS GEMM of the group's
    shape, the dense curve's kernel, issued by the host one after the other."""
    meas = np.array([s.time_s for s in samples])
    loop = dense.model_copy(update={"group_streams": 1, "overlap": 1.0})

    def objective(host):
        return _log_error(
            _predict(loop, samples, device, dtype, loop.peak_fraction, host_issue=host), meas
        )

    x, _ = _refine(objective, [(1e-7, 1e-3)], [True], rounds=HOST_LOOP_ROUNDS)
    return loop.model_copy(update={"host_issue_s": float(f"{float(x[0]):.3g}")})


def _predict(
    curve: GemmCurve,
    samples: Sequence[GemmSample],
    device: Device,
    dtype: str,
    eta: object,
    host_issue: object = None,
    overlap: object = None,
    harness: bool = True,
) -> np.ndarray:
    """Times of ``samples`` under ``curve`` with peak fraction ``eta`` (an array broadcasts
    against the samples: a grid of trial values) and, where given, ``host_issue`` and
    ``overlap``. ``harness``: a sample timed by a host loop (``GemmSample.host_loop``) is
    predicted as that loop measures it at the curve's clock boost and window
    (:func:`~deepflow.hardware.clock_boost.host_loop_time`); else the kernel time at the
    sustained clock."""
    code = PRECISION_NAMES.index(dtype)
    crossed = np.array([s.mn_major for s in samples])
    t, _, _ = gemm_terms(
        np.array([s.m for s in samples]),
        np.array([s.n for s in samples]),
        np.array([s.k for s in samples]),
        np.array([s.groups for s in samples]),
        device.peak,
        device.memory_bandwidth * device.memory_fraction,
        device.compute_units,
        np.asarray(eta) * operands_factor(crossed, curve.mn_major_fraction),
        np.array([float(a) for a, _ in curve.candidate_tiles()]),
        np.array([float(b) for _, b in curve.candidate_tiles()]),
        curve.wave_loss,
        curve.k_fill,
        curve.latency_s,
        OPERAND_BYTES[code],
        np.array([s.out_bytes for s in samples]),
        curve.group_streams,
        curve.operand_intensity,
        overlap=curve.overlap if overlap is None else overlap,
        host_issue=curve.host_issue_s if host_issue is None else host_issue,
    )
    if not harness or not any(s.host_loop[1] > 0 for s in samples):
        return t
    loops = np.array([s.host_loop for s in samples], dtype=np.float64)
    return host_loop_time(t, curve.clock_boost, curve.boost_window_s, loops[:, 0], loops[:, 1])


def predict_gemm(
    curve: GemmCurve,
    samples: Sequence[GemmSample],
    device: Device,
    dtype: str,
    harness: bool = True,
):
    """Predicted times of ``samples`` under ``curve`` (the fit's own evaluation): as
    measured, a sample timed by a host loop at the clock of that loop; ``harness`` false:
    every sample's kernel time at the sustained clock (:func:`_predict`)."""
    return _predict(curve, samples, device, dtype, curve.peak_fraction, harness=harness)


def _attention_inputs(samples: Sequence[AttentionSample], tile_q: float):
    full = attention_flops(
        np.array([s.batch for s in samples]),
        np.array([s.heads for s in samples]),
        np.array([s.seq for s in samples]),
        np.array([s.seq for s in samples]),
        np.array([s.qk_dim for s in samples]),
        np.array([s.v_dim for s in samples]),
    )
    flops = np.where([s.causal for s in samples], 0.5 * full, full)
    tiles = np.array([s.batch * s.heads * math.ceil(s.seq / tile_q) for s in samples])
    return flops, tiles


def predict_attention(
    curve: AttentionCurve, samples: Sequence[AttentionSample], device: Device
) -> np.ndarray:
    """Predicted times of ``samples`` (forward, or forward + backward) under ``curve``."""
    flops, tiles = _attention_inputs(samples, curve.tile_q)
    c_fwd, c_bwd = head_dim_factors(
        [(f.qk_dim, f.v_dim, f.forward, f.backward) for f in curve.head_dims],
        np.array([s.qk_dim for s in samples]),
        np.array([s.v_dim for s in samples]),
    )
    fwd, bwd = attention_terms(
        flops,
        tiles,
        device.peak,
        device.compute_units,
        curve.forward_fraction * c_fwd,
        curve.backward_fraction * c_bwd,
        curve.latency_s,
    )
    return np.where([s.backward for s in samples], fwd + bwd, fwd)


REFERENCE_HEAD_DIMS = 256.0
"""``d_qk + d_v`` of the reference head-dimension pair, 128/128: the head dimensions of the
Llama, GPT-3 and Qwen families, which most attention tables measure."""


FACTOR_ROUNDS = 12
"""Refinement rounds of the one-parameter head-dimension factor fits (log grid over
0.2-4: a final step under 1.5 % of the factor)."""


def _reference_pair(samples: Sequence[AttentionSample]) -> tuple[float, float]:
    """The measured head-dimension pair of ``samples`` nearest ``d_qk + d_v =``
    :data:`REFERENCE_HEAD_DIMS` (ties: the one with more forward records, then the smaller
    ``d_qk``). Chosen by width, not by count, so that leaving records out (cross-validation)
    does not move the reference."""
    count: dict[tuple[float, float], int] = {}
    for s in samples:
        key = (s.qk_dim, s.v_dim)
        count[key] = count.get(key, 0) + (0 if s.backward else 1)
    return max(count, key=lambda p: (-abs(p[0] + p[1] - REFERENCE_HEAD_DIMS), count[p], -p[0]))


def fit_attention_curve(
    samples: Sequence[AttentionSample],
    device: Device,
    backward_ratio: float | None = None,
    latency_s: float = 0.0,
) -> AttentionCurve:
    """Fit the attention curve to ``samples`` (module docstring): :func:`_fit_attention_reference`
    on the samples whose head dimensions are no wider (``d_qk + d_v``) than the reference
    pair's (:func:`_reference_pair`); then per wider pair the forward factor on its forward
    samples and the backward factor on its forward + backward samples, the other terms held
    (a pair without backward samples takes its forward factor; one without forward samples,
    forward factor 1)."""
    ref = _reference_pair(samples)
    width = ref[0] + ref[1]
    base = _fit_attention_reference(
        [s for s in samples if s.qk_dim + s.v_dim <= width], device, backward_ratio, latency_s
    )
    factors = []
    for pair in sorted({(s.qk_dim, s.v_dim) for s in samples if s.qk_dim + s.v_dim > width}):
        mine = [s for s in samples if (s.qk_dim, s.v_dim) == pair]
        fwd_s = [s for s in mine if not s.backward]
        bwd_s = [s for s in mine if s.backward]
        c_fwd = 1.0
        if fwd_s:
            flops, tiles = _attention_inputs(fwd_s, base.tile_q)
            meas = np.array([s.time_s for s in fwd_s])

            def objective(c, flops=flops, tiles=tiles, meas=meas):
                pred, _ = attention_terms(
                    flops,
                    tiles,
                    device.peak,
                    device.compute_units,
                    base.forward_fraction * c,
                    1.0,
                    base.latency_s,
                )
                return _log_error(pred, meas)

            c_fwd = float(_refine(objective, [(0.2, 4.0)], [True], rounds=FACTOR_ROUNDS)[0][0])
        c_bwd = c_fwd
        if bwd_s:
            flops, tiles = _attention_inputs(bwd_s, base.tile_q)
            meas = np.array([s.time_s for s in bwd_s])

            def objective_b(c, flops=flops, tiles=tiles, meas=meas, c_fwd=c_fwd):
                fwd, bwd = attention_terms(
                    flops,
                    tiles,
                    device.peak,
                    device.compute_units,
                    base.forward_fraction * c_fwd,
                    base.backward_fraction * c,
                    base.latency_s,
                )
                return _log_error(fwd + bwd, meas)

            c_bwd = float(_refine(objective_b, [(0.2, 4.0)], [True], rounds=FACTOR_ROUNDS)[0][0])
        factors.append(
            HeadDimFactor(
                qk_dim=int(pair[0]),
                v_dim=int(pair[1]),
                forward=round(c_fwd, 4),
                backward=round(c_bwd, 4),
            )
        )
    return base.model_copy(update={"head_dims": factors})


def _fit_attention_reference(
    samples: Sequence[AttentionSample],
    device: Device,
    backward_ratio: float | None = None,
    latency_s: float = 0.0,
) -> AttentionCurve:
    """Fit the attention curve to ``samples`` of one head-dimension pair: the forward and backward fractions, the
    latency and the query tile (64, 128 or 256). With fewer than three forward samples the
    latency is ``latency_s`` and the tile 128; without backward samples the backward
    fraction is ``backward_ratio`` times the forward one (a ratio from another chip)."""
    fwd_s = [s for s in samples if not s.backward]
    bwd_s = [s for s in samples if s.backward]
    if not fwd_s:
        raise ValueError("fit_attention_curve needs at least one forward sample")
    few = len(fwd_s) < 3
    best: tuple[float, AttentionCurve] | None = None
    for tile_q in (128,) if few else (64, 128, 256):
        flops, tiles = _attention_inputs(fwd_s, tile_q)
        meas = np.array([s.time_s for s in fwd_s])

        def objective(frac, lat, flops=flops, tiles=tiles, meas=meas):
            pred, _ = attention_terms(
                flops, tiles, device.peak, device.compute_units, frac, 1.0, lat
            )
            return _log_error(pred, meas)

        if few:
            x, loss = _refine(lambda f, _o=objective: _o(f, latency_s), [(0.05, 1.25)], [False])
            frac, lat = float(x[0]), latency_s
        else:
            x, loss = _refine(objective, [(0.05, 1.25), (1e-7, 3e-4)], [False, True])
            frac, lat = float(x[0]), float(x[1])
        if best is None or loss < best[0] - 1e-12:
            best = (
                loss,
                AttentionCurve(
                    forward_fraction=frac, backward_fraction=frac, tile_q=tile_q, latency_s=lat
                ),
            )
    assert best is not None
    curve = best[1]
    if bwd_s:
        flops, tiles = _attention_inputs(bwd_s, curve.tile_q)
        meas = np.array([s.time_s for s in bwd_s])

        def objective_b(frac):
            fwd, bwd = attention_terms(
                flops,
                tiles,
                device.peak,
                device.compute_units,
                curve.forward_fraction,
                frac,
                curve.latency_s,
            )
            return _log_error(fwd + bwd, meas)

        x, _ = _refine(objective_b, [(0.05, 1.25)], [False])
        backward = float(x[0])
    else:
        backward = curve.forward_fraction * (backward_ratio or 1.0)
    return AttentionCurve(
        forward_fraction=round(min(curve.forward_fraction, 1.25), 4),
        backward_fraction=round(min(backward, 1.25), 4),
        tile_q=curve.tile_q,
        latency_s=float(f"{curve.latency_s:.3g}"),
    )


def fit_memory_curve(
    bandwidths: Iterable[float], datasheet_bandwidth: float, latency_s: float
) -> MemoryCurve:
    """The memory curve from measured streaming bandwidths (bytes/s) of large transfers
    (the latency negligible): their geometric mean as a fraction of the data-sheet
    bandwidth (least mean absolute log error of time is the median; the geometric mean is
    used for its stability with five STREAM kernels)."""
    bw = np.array(list(bandwidths), dtype=np.float64)
    if bw.size == 0 or np.any(bw <= 0):
        raise ValueError("fit_memory_curve needs positive bandwidths")
    fraction = float(np.exp(np.mean(np.log(bw)))) / datasheet_bandwidth
    return MemoryCurve(fraction=round(fraction, 4), latency_s=latency_s)


STREAM_LATENCY_SIZES = 4
"""A streaming table fits its own latency when it measures at least this many sizes
spanning :data:`STREAM_LATENCY_SPAN` or more (the small sizes then measure the latency
floor); otherwise the latency is the accelerator's launch overhead and only the fraction
is fitted."""
STREAM_LATENCY_SPAN = 8.0


def stream_terms(
    bytes_moved: object,
    bandwidth: float,
    fraction: object,
    latency: object,
    host_floor: object = 0.0,
):
    """Time of a streaming kernel, ``bytes / (BW mu) + t_0`` (the memory curve of the module
    docstring), from raw parameters: the one definition the evaluators and the fit share.
    ``host_floor`` > 0: at least that (``MemoryCurve.host_floor_s``)."""
    t = np.asarray(bytes_moved, dtype=np.float64) / (bandwidth * fraction) + latency
    floor = np.asarray(host_floor, dtype=np.float64)
    return np.maximum(t, floor) if (floor > 0).any() else t


def fit_eager_stream_curve(
    bytes_moved: Sequence[float],
    times: Sequence[float],
    datasheet_bandwidth: float,
    latency_s: float,
) -> MemoryCurve:
    """Fit ``t = max(t_host, bytes / (BW mu) + t_0)`` to the measured times of one eager
    operator (forward, or forward + backward) at several sizes: ``t_host`` and ``mu`` (least
    mean absolute log error, :func:`_refine`), ``t_0`` the memory curve's kernel latency.

    ``deepflow calibrate`` measured the element-wise operators in eager PyTorch: a
    composite operator (RMS norm, SwiGLU) and every autograd backward cost the host tens to
    hundreds of microseconds of dispatch, more than the device needs at small sizes. Where
    the host is slower, the device waits for it and the events time the host: the H200
    file's ``add`` forward + backward takes 101-181 us from 12 MB to 402 MB (the backward of
    ``add`` runs no kernel: the time is ``torch.autograd.grad``'s), and 190 us at 805 MB where
    the forward kernel outlasts the host. One sized, one floor: the ``max`` of the two.
    (The calibrate timer now keeps the device busy while the host issues the call,
    :mod:`deepflow.hardware.calibrate.timing`, so a new file measures the device; the floor
    then fits near zero.)"""
    b = np.asarray(bytes_moved, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if b.size == 0 or np.any(b <= 0) or np.any(t <= 0):
        raise ValueError("fit_eager_stream_curve needs positive bytes and times")

    def objective(floor, mu):
        return _log_error(stream_terms(b, datasheet_bandwidth, mu, latency_s, floor), t)

    # 20 rounds: a final grid step under 1 % of the floor and of the fraction
    x, _ = _refine(objective, [(1e-7, 1e-2), (0.02, 1.0)], [True, False], rounds=20)
    return MemoryCurve(
        fraction=float(f"{float(x[1]):.4g}"),
        latency_s=latency_s,
        host_floor_s=float(f"{x[0]:.3g}"),
    )


def stream_fits_latency(bytes_moved: Sequence[float]) -> bool:
    """Whether a streaming table of these sizes fits its own latency (:data:`STREAM_LATENCY_SIZES`
    sizes spanning :data:`STREAM_LATENCY_SPAN` or more)."""
    sizes = np.unique(np.asarray(bytes_moved, dtype=np.float64))
    return bool(sizes.size >= STREAM_LATENCY_SIZES and sizes[-1] >= STREAM_LATENCY_SPAN * sizes[0])


def fit_stream_curve(
    bytes_moved: Sequence[float],
    times: Sequence[float],
    datasheet_bandwidth: float,
    launch_latency: float,
) -> MemoryCurve:
    """Fit ``t = bytes / (BW mu) + t_0`` to measured streaming kernels, in two stages that
    keep the two terms apart:

    * ``t_0``: with :data:`STREAM_LATENCY_SIZES` sizes spanning :data:`STREAM_LATENCY_SPAN`
      or more, the latency floor: the fastest kernel's time less its bytes at the
      bandwidth of the second stage (iterated once); otherwise ``launch_latency``;
    * ``mu``: the geometric mean of ``bytes / (t - t_0)`` over the kernels that take at
      least :data:`STREAM_BANDWIDTH_SPAN` latencies (the bandwidth-bound ones; all kernels
      where none does), over the data-sheet bandwidth.

    One latency and one bandwidth do not describe the ramp between them (a kernel of a few
    MiB reaches neither): the fit serves the large kernels of a training step and the
    launch floor, and the error report shows the ramp apart (``memory.latency``)."""
    b = np.asarray(bytes_moved, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if b.size == 0 or np.any(b <= 0) or np.any(t <= 0):
        raise ValueError("fit_stream_curve needs positive bytes and times")
    fit_latency = stream_fits_latency(b)

    def bandwidth(t0: float) -> float:
        busy = t - t0
        keep = busy >= (STREAM_BANDWIDTH_SPAN - 1.0) * t0
        if not np.any(keep):
            keep = busy > 0
        if not np.any(keep):  # every kernel faster than the latency (a CPU run's tiny sizes)
            keep, busy = np.ones_like(t, dtype=bool), t
        return float(np.exp(np.mean(np.log(b[keep] / busy[keep]))))

    t0 = launch_latency
    if fit_latency:
        i = int(np.argmin(t))
        t0 = float(t[i])
        for _ in range(2):
            t0 = max(float(t[i] - b[i] / bandwidth(t0)), 0.05 * float(t[i]))
    fraction = bandwidth(t0) / datasheet_bandwidth
    # four significant digits: a CPU run of the calibrate mechanics streams at 1e-5 of an
    # accelerator's data sheet, which four decimals would round to 0
    return MemoryCurve(fraction=float(f"{min(fraction, 1.25):.4g}"), latency_s=float(f"{t0:.3g}"))


STREAM_BANDWIDTH_SPAN = 10.0
"""Streaming kernels taking at least this many latencies set the bandwidth of the fit."""


LOSO_MAX_SHAPES = 40
"""Tables with more shapes than this are cross-validated in :data:`FOLDS` folds of shapes
(shape ``i`` of the sorted list in fold ``i mod FOLDS``) instead of one shape at a time: the
same held-out discipline at a tenth of the fits (a 500-shape table would need 500 fits)."""
FOLDS = 10


def leave_one_out(samples: Sequence[Any], fit: Any, predict: Any) -> np.ndarray:
    """Relative errors ``predicted / measured - 1`` of each sample under the curve fitted
    without its shape (samples with the same ``key`` are left out together; above
    :data:`LOSO_MAX_SHAPES` shapes, :data:`FOLDS` folds of shapes). ``samples`` is a sequence
    of ``(key, sample)``; ``fit(list_of_samples)`` returns a curve and
    ``predict(curve, list_of_samples)`` times."""
    keys = sorted({key for key, _ in samples}, key=str)
    fold = {key: i for i, key in enumerate(keys)}
    if len(keys) > LOSO_MAX_SHAPES:
        fold = {key: i % FOLDS for i, key in enumerate(keys)}
    errors = np.empty(len(samples))
    for held in sorted(set(fold.values())):
        train = [s for kk, s in samples if fold[kk] != held]
        test_idx = [i for i, (kk, _) in enumerate(samples) if fold[kk] == held]
        curve = fit(train)
        pred = predict(curve, [samples[i][1] for i in test_idx])
        for j, i in enumerate(test_idx):
            errors[i] = pred[j] / samples[i][1].time_s - 1.0
    return errors
