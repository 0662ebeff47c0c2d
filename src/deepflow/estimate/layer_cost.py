"""Cost of one transformer layer for one micro-batch on one rank, for a batch of strategies.

Composition inside a layer follows Megatron-LM: tensor-parallel collectives are on the
critical path (two per layer in each direction; Shoeybi et al. 2019, sec. 3, Fig. 4; with
sequence parallelism each all-reduce becomes a reduce-scatter + all-gather pair,
Korthikanti et al. 2022, sec. 4.2.2); expert-parallel all-to-alls are on the critical path
(dispatch and combine; Lepikhin et al. 2020, GShard, sec. 3.2); ring-attention exchanges
overlap the attention computation (Liu et al. 2023, arXiv 2310.01889, sec. 3).

Saved activations generalize Korthikanti et al. 2022, Table 2 (``34 s b h + 5 a s^2 b``
bytes per layer for GPT) operator by operator, so that GQA, SwiGLU, MLA, MoE and flash
attention follow from the same rules.

Recomputation (Korthikanti et al. 2022, sec. 5; Megatron-Core's ``recompute_granularity``):

* ``full``: a layer keeps only its input and reruns its whole forward pass, collectives
  included, before its backward pass; with ``recompute_layers = k`` only the first ``k``
  layers of each pipeline model chunk do (Megatron's block method,
  ``megatron/core/recompute.py``), the others keep everything. The layer's cost is the
  mix of the two over the ``L / (pp vpp)`` layers of a chunk of the even split;
* ``selective``: the chosen modules (:mod:`deepflow.workload.recompute`) drop their saved
  tensors and rerun their forward; the dense MLP's checkpoint reruns its tensor-parallel
  reduction (``linear_fc2``), the MoE layer's its dispatch and combine all-to-alls too
  (``moe/moe_layer.py``).

Under ``precision: fp8`` only Transformer Engine's linear layers run in FP8: the attention
core (``DotProductAttention``; FP8 only with ``fp8_dot_product_attention``, off by default,
``transformer_config.py``), the MoE router (``router_gating_linear``) and the LM head
(``tensor_parallel.ColumnParallelLinear`` in ``models/gpt/gpt_model.py``) run at the 16-bit
rate, :attr:`~deepflow.estimate.context.Env.peak_high`.

Grouped-query attention with fewer key/value heads than tensor-parallel ranks runs as
Megatron-Core does (``transformer/attention.py``, ``get_query_key_value_tensors``): the QKV
weight stays split over tp (no replicated parameters, hence no extra gradient reduction),
each rank all-gathers the QKV output over tp (reduce-scatter of its gradient in backward)
and keeps its ``heads / tp`` query heads and the one key/value head they share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property, lru_cache
from typing import TypeVar

import numpy as np

from deepflow.estimate.context import Env
from deepflow.estimate.fp8 import quantization_time
from deepflow.hardware.grouped_tiles import UnevenRows
from deepflow.hardware.kernels import attention_time
from deepflow.hardware.roofline import gemm_time, memory_time
from deepflow.network.collectives import Algorithm, Collective, collective_time, p2p_time
from deepflow.network.deepep import dispatch_time
from deepflow.parallel import routing
from deepflow.parallel.batch import ALGORITHMS
from deepflow.parallel.experts import alltoall_bytes
from deepflow.specs.framework import FRAMEWORKS
from deepflow.specs.strategy import RecomputeModule
from deepflow.workload.operators import (
    AttentionCore,
    Bias,
    Elementwise,
    Gemm,
    LayerTemplate,
    Scope,
    Shard,
    Traffic,
)
from deepflow.workload.recompute import MODULES, module_masks
from deepflow.workload.transformer import layer_template

T = TypeVar("T")

_ZERO = 0.0  # the terms of a kernel no strategy of a batch runs (np.where takes none)
SELECTIVE, FULL = 1, 2  # codes of Recompute.SELECTIVE / FULL in the batch
# longest key sequence Megatron's fused causal softmax kernel takes (Megatron-LM and
# Megatron-DeepSpeed ``megatron/model/fused_softmax.py``, ``is_kernel_available``)
FUSED_SOFTMAX_MAX_SEQ = 4096.0
_MLP_BIT = 1 << MODULES.index(RecomputeModule.MLP)
_MOE_BIT = 1 << MODULES.index(RecomputeModule.MOE)


LAYER_TIME_PARTS = ("compute", "recompute", "tp_comm", "cp_comm", "ep_comm", "host_overhead")
"""The parts of the step's breakdown a layer's own time falls into (its data-parallel
part, ZeRO-3's per-unit collectives, depends on the stage: the evaluator adds it)."""


STAGE_SUMS = (
    "weight_flops",
    "all_flops",
    "params",
    "saved_activations",
    "saved_floor",
    "layer_backward",
    "layer_forward",
    "expert_params",
    "layer_params",
)
"""The quantities a pipeline stage sums over the layers and edges it holds, one row each of
a cost's ``stage_sums`` (:class:`LayerCost`, :class:`~deepflow.estimate.edges.EdgeCost`):
the weight-gradient GEMMs' FLOPs, all FLOPs (forward, backward and recomputation), the
parameters, the saved activations and their floor, the transformer layers' own backward
and forward time, their expert parameters and their parameters (zero for an edge)."""


def _kept(value: T) -> T:
    """``value``, made read-only where it is an array: a sum kept on its object
    (:class:`LayerCost`) is shared by every later reader."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    return value


@dataclass(frozen=True)
class LayerCost:
    """Per layer, per micro-batch, per rank (arrays over strategies). Times in seconds.

    ``forward``/``backward`` include exposed communication; ``backward`` includes the
    weight-gradient GEMMs, whose time is also given alone as ``weight_grad`` (the part a
    zero-bubble schedule defers). ``recompute`` is the extra forward work in backward and
    ``recompute_tp``/``_cp``/``_ep`` the collectives it reruns. ``saved_activations`` is
    what a micro-batch keeps after the forward pass; ``recompute_live`` what recomputation
    brings back for the duration of one layer's backward. ``saved_floor`` and
    ``live_floor`` are the least values these two take under any recompute setting (mode,
    modules, layers) with every other knob unchanged: ``saved`` is ``f x + (1 - f) a``
    (full, ``f`` in ``(0, 1]``, ``x`` the layer input, ``a`` all saved bytes), ``a - d_S``
    (selective, ``d_S`` the bytes module set ``S`` drops, at most ``d_all``, the bytes
    every module drops) or ``a`` (none), each at least ``min(x, a - d_all)``; ``live`` is
    ``a - x`` (full), ``d_S >= 0`` (selective) or 0 (none), each at least ``min(0, a - x)``.
    The search's memory lower bound reads them (:func:`deepflow.estimate.evaluate.evaluate`,
    ``memory_floor_zeros``).

    The sums (``forward``, ``backward``, ``host_excess``, ``recompute_comm``) are computed
    once per object, on first use, and kept read-only: the fields are not changed after
    construction (the memoized costs of :mod:`deepflow.estimate.memo` are read-only).
    """

    forward_compute: np.ndarray
    backward_compute: np.ndarray
    weight_grad: np.ndarray
    recompute: np.ndarray
    tp_comm_forward: np.ndarray
    tp_comm_backward: np.ndarray
    cp_comm_forward: np.ndarray
    cp_comm_backward: np.ndarray
    ep_comm_forward: np.ndarray
    ep_comm_backward: np.ndarray
    recompute_tp: np.ndarray
    recompute_cp: np.ndarray
    recompute_ep: np.ndarray
    host_excess_forward: np.ndarray  # host issue time beyond the device time, forward
    host_excess_backward: np.ndarray  # the same for backward and recomputation
    saved_activations: np.ndarray  # bytes kept per micro-batch after forward, by recompute mode
    full_activations: np.ndarray  # bytes a layer saves without recomputation
    recompute_live: np.ndarray  # bytes recomputation re-creates during one layer's backward
    saved_floor: np.ndarray  # least saved_activations under any recompute setting
    live_floor: np.ndarray  # least recompute_live under any recompute setting
    params: np.ndarray  # local parameters (non-expert)
    expert_params: np.ndarray  # local expert parameters
    forward_flops: np.ndarray  # matmul FLOPs of the forward pass on this rank
    weight_flops: np.ndarray  # FLOPs of the weight-gradient GEMMs (= forward GEMM FLOPs)
    recompute_flops: np.ndarray

    @cached_property
    def time_parts(self) -> np.ndarray:
        """The layer's time per micro-batch by part of the step's breakdown, one row each
        in :data:`LAYER_TIME_PARTS` order (part, strategy): computed once per object."""
        return _kept(
            np.stack(
                [
                    self.forward_compute + self.backward_compute,
                    self.recompute,
                    self.tp_comm_forward + self.tp_comm_backward + self.recompute_tp,
                    self.cp_comm_forward + self.cp_comm_backward + self.recompute_cp,
                    self.ep_comm_forward + self.ep_comm_backward + self.recompute_ep,
                    self.host_excess,
                ]
            )
        )

    @cached_property
    def stage_sums(self) -> np.ndarray:
        """The layer's rows of :data:`STAGE_SUMS` (quantity, strategy): computed once per
        object. All FLOPs are the forward's three times (forward, input and weight
        gradients) plus the recomputation's."""
        return _kept(
            np.stack(
                [
                    self.weight_flops,
                    3.0 * self.forward_flops + self.recompute_flops,
                    self.params,
                    self.saved_activations,
                    self.saved_floor,
                    self.backward,
                    self.forward,
                    self.expert_params,
                    self.params,
                ]
            )
        )

    @cached_property
    def recompute_comm(self) -> np.ndarray:
        return _kept(self.recompute_tp + self.recompute_cp + self.recompute_ep)

    @cached_property
    def host_excess(self) -> np.ndarray:
        return _kept(self.host_excess_forward + self.host_excess_backward)

    @cached_property
    def forward(self) -> np.ndarray:
        return _kept(
            self.forward_compute
            + self.tp_comm_forward
            + self.cp_comm_forward
            + self.ep_comm_forward
            + self.host_excess_forward
        )

    @cached_property
    def backward(self) -> np.ndarray:
        return _kept(
            self.backward_compute
            + self.recompute
            + self.tp_comm_backward
            + self.cp_comm_backward
            + self.ep_comm_backward
            + self.recompute_comm
            + self.host_excess_backward
        )


def _algorithm(env: Env) -> Algorithm:
    # a batch shares one algorithm in practice; "auto" resolves to ring here
    code = int(env.batch.algorithm[0]) if len(env.batch) else 0
    return Algorithm.TREE if ALGORITHMS[code] == "tree" else Algorithm.RING


def tp_pair_time(env: Env, size: np.ndarray) -> np.ndarray:
    """One tensor-parallel reduction of ``size`` bytes: all-reduce, or reduce-scatter plus
    all-gather under sequence parallelism. ``env.algorithms["tp"]``, when given, replaces
    the batch's algorithm (a program costs the collectives it implements; the others use
    the ring, :func:`~deepflow.network.collectives.program_time`)."""
    algo = env.algorithms.get("tp") or _algorithm(env)
    sp = env.batch.sequence_parallel
    ar = pair = _ZERO  # each costed only where a strategy of the batch runs it
    if not sp.all():
        ar = collective_time(Collective.ALL_REDUCE, size, env.tp_group, env.hierarchy, algo)
    if sp.any():
        rs = collective_time(Collective.REDUCE_SCATTER, size, env.tp_group, env.hierarchy, algo)
        ag = collective_time(Collective.ALL_GATHER, size, env.tp_group, env.hierarchy, algo)
        pair = rs + ag
    return np.where(sp, pair, ar)


def expert_load(env: Env) -> np.ndarray | float:
    """Busiest rank's routed tokens over the mean, per strategy (the routing's imbalance at
    the strategy's ``ep``, capped by the capacity: :func:`deepflow.parallel.routing.
    expert_load`; 1 for a dense model)."""
    if env.model.moe is None:
        return 1.0
    return routing.expert_load(env.model.moe, env.batch.ep)


def _tokens(
    env: Env, layer: LayerTemplate | None, scope: Scope, factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of an op's GEMMs and how many such GEMMs (local experts) run batched.

    Expert scope: the rank's ``expert_rows`` (its own tokens, all-gathered over the expert
    tensor-parallel group) times ``factor`` (``top_k``) times the expert load, spread over
    its ``num_experts / ep`` local experts (Megatron-Core ``GroupedMLP``/``TEGroupedMLP``:
    one grouped GEMM over ``tokens_per_expert``)."""
    if scope is Scope.EXPERT:
        assert layer is not None, "an expert-scoped op needs its layer"
        local_experts = layer.num_experts / env.batch.ep
        routed = env.expert_rows * factor * expert_load(env)
        return routed / local_experts, local_experts
    return env.tokens * factor, np.ones_like(env.tokens)


def _uneven_rows(env: Env, layer: LayerTemplate, scope: Scope, factor: float) -> UnevenRows | None:
    """The local experts' uneven rows around the mean :func:`_tokens` gives (``None``
    outside the expert scope: equal groups): :func:`deepflow.parallel.routing.uneven_rows`
    at the balanced mean, ``expert_rows x factor / (E / ep)``. The spread is taken at the
    balanced mean, not the busiest rank's, so that the busiest rank's expected tiles grow
    with its load alone (the load moves the mean)."""
    if scope is not Scope.EXPERT or env.model.moe is None:
        return None
    balanced = env.expert_rows * factor / (layer.num_experts / env.batch.ep)
    return routing.uneven_rows(env.model.moe, env.batch.ep, balanced)


def _shard_div(env: Env, shard: Shard, scope: Scope = Scope.TOKEN) -> np.ndarray:
    tp = _tp_of(env, scope)
    if scope is Scope.EXPERT and shard is Shard.SEQUENCE:
        return np.ones_like(tp)  # routed tokens are not sequence-sharded
    if shard in (Shard.COLUMN, Shard.ROW, Shard.TENSOR):
        return tp
    if shard is Shard.SEQUENCE:
        return env.sp_div
    return np.ones_like(tp)


def _tp_of(env: Env, scope: Scope) -> np.ndarray:
    """Tensor-parallel degree that shards an op: ``expert_tp`` for the routed experts
    (Megatron-Core's expert tensor-parallel group), ``tp`` otherwise."""
    return (env.batch.etp if scope is Scope.EXPERT else env.batch.tp).astype(np.float64)


def _stacked_sides(shapes: list[tuple[object, object, object]]) -> list[np.ndarray]:
    """The sides ``m``, ``n``, ``k`` of several GEMMs, each an array with the GEMMs on a
    leading axis (every value broadcast to one shape, as float64), for one call of
    :func:`~deepflow.hardware.roofline.gemm_time` on all of them."""
    values = [side for shape in shapes for side in shape]
    common = np.broadcast_shapes(*{getattr(v, "shape", ()) for v in values})
    stacked = np.empty((len(values), *common))
    for i, value in enumerate(values):
        stacked[i] = value
    stacked = stacked.reshape(len(shapes), 3, *common)
    return [stacked[:, i] for i in range(3)]


def stacked_gemm_times(
    env: Env,
    shapes: list[tuple[object, object, object]],
    mn_major: list[bool],
    peak: object,
    code: object,
    groups: object = 1,
    uneven: UnevenRows | None = None,
) -> list[np.ndarray]:
    """The times of GEMMs ``(m, n, k)`` that share their curve's inputs (rate ``peak``,
    precision ``code``, ``groups``, ``uneven`` rows; ``mn_major`` per GEMM), per strategy:
    one :func:`~deepflow.hardware.roofline.gemm_time` call with the shapes on a leading
    axis (:func:`_stacked_sides`), the same arithmetic element for element as one call per
    GEMM, without the fixed cost per call that one strategy's evaluation would pay per
    GEMM."""
    sides = _stacked_sides(shapes)
    flags = np.array(mn_major).reshape((-1,) + (1,) * (sides[0].ndim - 1))
    acc = env.system.accelerator
    return list(
        gemm_time(*sides, acc, peak, env.elem, groups, code, env.matmul_scale, uneven, flags)
    )


def _gemm_costs(env: Env, layer: LayerTemplate, ops: list[Gemm]) -> list[dict[str, np.ndarray]]:
    """Forward and backward time, saved bytes, parameters, FLOPs and kernels of the GEMM
    ``ops`` of ``layer`` for one micro-batch on one rank, one dict per op.

    The GEMMs of all ops that share their curve's inputs (the same ``low_precision`` and
    scope: rate, precision and groups) are evaluated together
    (:func:`stacked_gemm_times`); forward and data-gradient GEMMs of uneven expert rows
    apart, per token factor."""
    scopes: dict[tuple[Scope, float], tuple[object, ...]] = {}
    shapes: dict[tuple[object, ...], list[tuple[object, object, object]]] = {}
    majors: dict[tuple[object, ...], list[bool]] = {}
    calls: dict[tuple[object, ...], tuple[object, ...]] = {}
    where: list[list[tuple[tuple[object, ...], int]]] = []  # per op and pass: (call, row)
    sides = []
    for op in ops:
        scope = scopes.get((op.scope, op.tokens_factor))
        if scope is None:
            # the local experts' uneven rows, each padded to whole row tiles where rows are
            # the M side (forward, data gradient); the weight gradient's K side is summed
            scope = scopes[op.scope, op.tokens_factor] = (
                _tp_of(env, op.scope),
                *_tokens(env, layer, op.scope, op.tokens_factor),
                _uneven_rows(env, layer, op.scope, op.tokens_factor),
            )
        tp, rows, groups, uneven = scope
        k = op.k / tp if op.shard is Shard.ROW else float(op.k)
        n = op.n / tp if op.shard is Shard.COLUMN else float(op.n)
        # a GEMM the framework runs as separate linear layers (``op.splits``) launches one
        # kernel per layer and pass, each at its own shape's efficiency
        widths = [n * (w / op.n) for w in op.splits] or [n]
        # forward Y = X W, data gradient dX = dY W^T and weight gradient dW = dY^T X per
        # width; the weight gradient reads both operands MN-major (the curve's
        # mn_major_fraction) and is never uneven (its rows are the K side)
        equal = (op.low_precision, op.scope, None)
        tiled = equal if uneven is None else (op.low_precision, op.scope, op.tokens_factor)
        passes = (
            [(tiled, (rows, w, k), False) for w in widths]
            + [(tiled, (rows, k, w), False) for w in widths]
            + [(equal, (k, w, rows), True) for w in widths]
        )  # fmt: skip
        places = []
        for key, shape, major in passes:
            if key not in calls:
                if op.low_precision:
                    peak, code = env.peak, env.batch.precision
                else:  # at the 16-bit rate also under FP8
                    peak, code = env.peak_high, env.precision_high
                calls[key] = (peak, code, groups, None if key is equal else uneven)
                shapes[key], majors[key] = [], []
            places.append((key, len(shapes[key])))
            shapes[key].append(shape)
            majors[key].append(major)
        where.append(places)
        sides.append((tp, rows, groups, k, n, len(widths)))
    times = {
        key: stacked_gemm_times(env, shapes[key], majors[key], *call) for key, call in calls.items()
    }
    eager = ~env.batch.fused_epilogues
    fp8 = bool((env.batch.fp8_recipe >= 0).any())
    return [
        _gemm_part(env, op, side, [times[key][row] for key, row in places], eager, fp8)
        for op, side, places in zip(ops, sides, where, strict=True)
    ]


def _gemm_part(
    env: Env,
    op: Gemm,
    sides: tuple[object, ...],
    times: list[np.ndarray],
    eager: np.ndarray,
    fp8: bool,
) -> dict[str, np.ndarray]:
    """One GEMM op's dict of :func:`_gemm_costs` from its sides and its GEMMs' times
    (forward, data gradient, weight gradient, one per width each); ``eager``: per strategy,
    epilogues not fused; ``fp8``: some strategy of the batch runs FP8."""
    acc = env.system.accelerator
    tp, rows, groups, k, n, count = sides
    fwd = sum(times[:count])  # type: ignore[misc]
    dgrad = sum(times[count : 2 * count])  # type: ignore[misc]
    wgrad = sum(times[2 * count :])  # type: ignore[misc]
    # without fused epilogues, a bias the layer adds itself is a read-write pass over the
    # output (PyTorch's ``linear`` of 2020-2021 on a 3-D input: matmul, then ``add_`` of the
    # bias; Megatron-LM's linear with async communication: ``output + bias``), and every bias
    # gradient a reduction over the output gradient (``grad_output.sum(0)``); the output of
    # a row-parallel GEMM gets its bias after the reduction, sequence-sharded with SP
    own_bias = eager & (op.bias is Bias.OWN)
    bias_add = bias_grad = _ZERO  # no strategy of the batch adds a bias outside the GEMM
    if op.bias is not Bias.NONE and eager.any():
        out_values = rows * groups * n / (env.sp_div if op.shard is Shard.ROW else 1.0)
        bias_add = np.where(own_bias, memory_time(out_values * 2.0 * env.elem, acc), 0.0)
        bias_grad = np.where(eager, memory_time(out_values * env.elem, acc), 0.0)
    # an expert GEMM saves its whole (gathered, routed) input
    seq_saved = op.input_shard is Shard.SEQUENCE and op.scope is not Scope.EXPERT
    saved_rows = rows * groups / (env.sp_div if seq_saved else 1.0)
    params = op.params / np.where(op.shard is Shard.REPLICATED, 1.0, tp)
    if op.scope is Scope.EXPERT:
        params = params / env.batch.ep
    if op.low_precision and fp8:
        # the FP8 recipe's quantization kernels (estimate/fp8.py)
        q_fwd, q_bwd = quantization_time(env, rows * groups, k, n, params)
        fwd, dgrad = fwd + q_fwd, dgrad + q_bwd
    return {
        "fwd": fwd + bias_add,
        "bwd": dgrad + wgrad + bias_grad,
        "wgrad": wgrad,
        "saved": saved_rows * k * env.elem,
        "params": params,
        "flops": 2.0 * rows * groups * k * n,
        "kernels": float(count) + own_bias,  # type: ignore[arg-type]
    }


@dataclass(frozen=True)
class _ElementwiseTable:
    """The constants of a sequence of element-wise ops as columns with the ops on a
    leading axis (:func:`elementwise_costs`): the ops of each scope (their indices, token
    factors, element counts and shards), the traffic of their three passes (forward,
    backward, the separate weight-gradient kernel; pass, op, 1), the saved bytes' factors,
    the parameters and the forward kernels."""

    scopes: tuple[tuple[Scope, tuple[int, ...], np.ndarray, np.ndarray], ...]
    shards: tuple[tuple[Shard, Scope], ...]
    act: np.ndarray
    fp32: np.ndarray | None  # None: no pass moves fp32 values
    kernels: np.ndarray
    cast_act: np.ndarray | None  # None: no pass has cast kernels
    cast_fp32: np.ndarray
    cast_kernels: np.ndarray
    weight_grad: bool  # some op has a separate weight-gradient kernel
    elements: np.ndarray
    saved: np.ndarray
    saved_bytes: np.ndarray
    saved_extra: np.ndarray | None  # None: no op saves fp32 values or masks
    params: np.ndarray
    params_sequence: np.ndarray
    forward_kernels: np.ndarray
    forward_cast_kernels: np.ndarray


@lru_cache(maxsize=256)
def _elementwise_table(ops: tuple[Elementwise, ...]) -> _ElementwiseTable:
    def column(values: list[object], dtype: type = np.float64) -> np.ndarray:
        return np.array(values, dtype=dtype).reshape(len(values), 1)

    # the weight gradient as its own kernel: ``weight_grad_passes`` at the activation width
    traffic = [
        [op.forward for op in ops],
        [op.backward for op in ops],
        [Traffic(op.weight_grad_passes, 0.0, op.kernels) for op in ops],
    ]

    def passes(name: str, dtype: type = np.float64, cast: bool = False) -> np.ndarray:
        # a cast column is zero where a pass has no cast kernels (they do not run)
        return np.array(
            [
                [[getattr(t, name) if (t.cast_kernels or not cast) else 0.0] for t in row]
                for row in traffic
            ],
            dtype=dtype,
        )

    scopes = []
    for scope in dict.fromkeys(op.scope for op in ops):
        index = tuple(i for i, op in enumerate(ops) if op.scope is scope)
        factors = column([ops[i].tokens_factor for i in index])
        elements = column([ops[i].elements for i in index])
        scopes.append((scope, index, factors, elements))
    has_fp32 = any(t.fp32 for row in traffic for t in row)
    has_cast = any(t.cast_kernels for row in traffic for t in row)
    has_extra = any(op.saved_fp32 or op.saved_mask for op in ops)
    return _ElementwiseTable(
        scopes=tuple(scopes),
        shards=tuple((op.shard, op.scope) for op in ops),
        act=passes("act"),
        fp32=passes("fp32") if has_fp32 else None,
        kernels=passes("kernels", np.int64),
        cast_act=passes("cast_act", cast=True) if has_cast else None,
        cast_fp32=passes("cast_fp32", cast=True),
        cast_kernels=passes("cast_kernels", np.int64, cast=True),
        weight_grad=any(op.weight_grad_passes for op in ops),
        elements=column([op.elements for op in ops]),
        saved=column([op.saved / op.elements for op in ops]),
        saved_bytes=column([float(op.saved_bytes) for op in ops]),
        saved_extra=(
            column([op.saved_fp32 * 4.0 + op.saved_mask for op in ops]) if has_extra else None
        ),
        params=column([op.params for op in ops]),
        params_sequence=column([op.shard is Shard.SEQUENCE for op in ops], bool),
        forward_kernels=column([op.forward.kernels for op in ops], np.int64),
        forward_cast_kernels=column([op.forward.cast_kernels for op in ops], np.int64),
    )


def _pass_times(env: Env, values: np.ndarray, table: _ElementwiseTable) -> np.ndarray:
    """Time of the passes of element-wise ops over ``values`` elements (op, strategy), one
    row each of ``table``'s passes (pass, op, strategy): their kernels' bytes at the
    activation width and in fp32; cast kernels only where activations are 16-bit. The
    weight-gradient pass only where it runs somewhere (an op has one and a strategy does
    not fuse epilogues): else two passes."""
    count = 3 if table.weight_grad and not env.batch.fused_epilogues.all() else 2
    act, kernels = table.act[:count], table.kernels[:count]
    nbytes = values * act * env.elem
    if table.fp32 is not None:
        nbytes = nbytes + values * table.fp32[:count] * 4.0
    if table.cast_act is not None:
        cast = env.elem < 4.0
        casts = values * (table.cast_act[:count] * env.elem + table.cast_fp32[:count] * 4.0)
        nbytes = nbytes + np.where(cast, casts, 0.0)
        kernels = kernels + np.where(cast, table.cast_kernels[:count], 0)
    return memory_time(nbytes, env.system.accelerator, kernels)


def elementwise_costs(
    env: Env, ops: tuple[Elementwise, ...], layer: LayerTemplate | None = None
) -> list[dict[str, np.ndarray]]:
    """Forward and backward time, saved bytes and parameters of memory-bound ops for one
    micro-batch on one rank, one dict per op (``layer`` is needed for expert-scoped ops
    only). The ops are evaluated together, on arrays with the ops on a leading axis
    (:class:`_ElementwiseTable`): each line is one op's arithmetic element for element."""
    table = _elementwise_table(ops)
    divs: dict[tuple[Shard, Scope], np.ndarray] = {}
    for key in table.shards:
        if key not in divs:
            divs[key] = _shard_div(env, *key)
    div = np.stack([divs[key] for key in table.shards])
    parts = []
    for scope, index, factors, elements in table.scopes:
        rows, groups = _tokens(env, layer, scope, factors)  # type: ignore[arg-type]
        parts.append(rows * groups * elements / (div if len(index) == len(ops) else div[index,]))
    if len(parts) == 1:
        values = parts[0]
    else:
        values = np.empty(div.shape)
        for (_, index, _, _), part in zip(table.scopes, parts, strict=True):
            values[index,] = part
    times = _pass_times(env, values, table)
    fwd, bwd = times[0], times[1]
    if len(times) == 3:
        # the weight gradient's kernel runs where epilogues are not fused (zero where an
        # op has none)
        bwd = bwd + np.where(env.batch.fused_epilogues, 0.0, times[2])
    width = np.where(table.saved_bytes == 0.0, env.elem, table.saved_bytes)
    saved = values * table.saved * width
    if table.saved_extra is not None:
        saved = saved + values / table.elements * table.saved_extra
    params = table.params / np.where(table.params_sequence, 1.0, div)
    zero = np.zeros_like(fwd)
    kernels = zero + table.forward_kernels + np.where(env.elem < 4.0, table.forward_cast_kernels, 0)
    return [
        {
            "fwd": fwd[i],
            "bwd": bwd[i],
            "wgrad": zero[i],
            "saved": saved[i],
            "params": params[i],
            "flops": zero[i],
            "kernels": kernels[i],
        }
        for i in range(len(ops))
    ]


def elementwise_cost(
    env: Env, op: Elementwise, layer: LayerTemplate | None = None
) -> dict[str, np.ndarray]:
    """Forward and backward time, saved bytes and parameters of a memory-bound op for one
    micro-batch on one rank (``layer`` is needed for expert-scoped ops only):
    :func:`elementwise_costs` of the op alone."""
    return elementwise_costs(env, (op,), layer)[0]


def _autocast_weights(
    env: Env, layer: LayerTemplate, parts: list[dict[str, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward and backward time, and kernels per pass, of casting a layer's GEMM weights
    under ``torch.autocast`` over fp32 parameters (zero unless ``layer.autocast_weights``
    and 16-bit activations). Forward: every linear layer's weight is cast to the
    activation width (read 4 + write ``elem`` bytes per parameter; autocast caches the
    cast of a leaf tensor within one forward pass, ``aten/src/ATen/autocast_mode.cpp``,
    ``cached_cast``); backward: ``ToCopyBackward`` casts the weight's 16-bit gradient to
    fp32 (read ``elem`` + write 4). One kernel each per weight tensor."""
    gemm = [(op, p) for op, p in zip(layer.ops, parts, strict=True) if isinstance(op, Gemm)]
    local = sum((p["params"] for _, p in gemm), np.zeros_like(env.elem))
    # one weight tensor per linear layer: a GEMM run as separate layers casts each
    kernels = float(sum(len(op.splits) or 1 for op, _ in gemm))
    return autocast_cast_time(env, layer.autocast_weights, local, kernels)


def autocast_cast_time(
    env: Env, autocast: bool, params: np.ndarray, kernels: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward and backward time, and kernels per pass, of the ``torch.autocast`` casts of
    ``params`` fp32 weights in ``kernels`` tensors (zero unless ``autocast`` and 16-bit
    activations): read 4 + write ``elem`` bytes per parameter forward, read ``elem`` +
    write 4 backward (:func:`_autocast_weights`)."""
    on = autocast & (env.elem < 4.0)
    if not on.any():  # no strategy casts: zeros, without costing the casts
        zero = np.zeros(np.broadcast_shapes(on.shape, np.shape(params)))
        return zero, zero, np.zeros(on.shape)
    moved = params * (4.0 + env.elem)
    t = np.where(on, memory_time(moved, env.system.accelerator, kernels), 0.0)
    return t, t, np.where(on, kernels, 0.0)


def _attention(env: Env, core: AttentionCore) -> dict[str, np.ndarray]:
    """Attention core: flash (fused, causal tiles skipped) or unfused (score matrix in
    memory, Korthikanti et al. 2022, Table 2), at the 16-bit rate also under FP8."""
    acc = env.system.accelerator
    peak = env.peak_high
    b = env.batch
    tp = b.tp.astype(np.float64)
    mbs = b.micro_batch_size.astype(np.float64)
    s = float(env.model.seq_len)
    sq = s / b.cp
    heads = core.heads / tp
    kv_heads = np.maximum(core.kv_heads / tp, 1.0)
    full_flops = 2.0 * mbs * heads * sq * s * (core.qk_dim + core.v_dim)
    code = env.precision_high
    flash = b.flash_attention
    batch = mbs * heads
    score_values = batch * sq * s
    # each kernel family costed only where a strategy of the batch runs it: the other's
    # terms are zero, and np.where takes them nowhere
    flash_fwd = flash_bwd = flash_flops = unfused_fwd = unfused_bwd = _ZERO
    if flash.any():
        # flash: one fused kernel; causal masking skips half of the tiles (Dao 2022, sec.
        # 3.1); the calibrated attention curve (deepflow.hardware.kernels.attention_time),
        # in 16 bits under FP8 as the matrix rate
        flash_fwd, flash_bwd, flash_flops = attention_time(
            mbs, heads, sq, s, core.qk_dim, core.v_dim, True, acc, peak, code, core.kernel
        )
    if not flash.all():
        # unfused: batched GEMMs for scores and context, softmax and dropout in memory: the
        # forward's score Q K^T and context P V, the backward's dQ = dS K, dK = dS^T Q,
        # dP = dO V^T and dV = P^T dO, in one call with the shapes on a leading axis (the
        # same arithmetic element for element as one call per GEMM)
        qk, v = float(core.qk_dim), float(core.v_dim)
        shapes = [(sq, s, qk), (sq, v, s), (sq, qk, s), (s, qk, sq), (sq, s, v), (s, v, sq)]
        scores, context, d_query, d_key, d_probs, d_value = stacked_gemm_times(
            env, shapes, [False] * 6, peak, code, batch
        )
        # fused scale-mask-softmax, then dropout (read + write + 1-byte mask each way). The
        # causal kernel reads only the scores a row attends to, (s + 1) / 2s of them on
        # average, and writes the whole row (zeros above the diagonal); its backward reads
        # the gradient and the output on the same triangle and writes the whole row
        # (Megatron ``fused_kernels/scaled_upper_triang_masked_softmax.h``,
        # ``scaled_upper_triang_masked_softmax_warp_forward``/``_backward``: loads only
        # where ``element_index < local_seq``, ``local_seq = blockIdx.x + 1``).
        # ``FusedScaleMaskSoftmax`` runs it for 16-bit scores with ``16 < s <= 4096``
        # (``fused_softmax.py``, ``is_kernel_available``); otherwise, and with context
        # parallelism, whole rows are read
        fused_causal = (env.elem < 4.0) & (s > 16.0) & (s <= FUSED_SOFTMAX_MAX_SEQ) & (b.cp == 1)
        read = np.where(fused_causal, (s + 1.0) / (2.0 * s), 1.0)
        soft_fwd = memory_time(
            score_values * ((read + 1.0) * env.elem + 2.0 * env.elem + 1.0), acc, 2
        )
        soft_bwd = memory_time(
            score_values * ((2.0 * read + 1.0) * env.elem + 2.0 * env.elem + 1.0), acc, 2
        )
        unfused_fwd = scores + context + soft_fwd
        unfused_bwd = d_query + d_key + d_probs + d_value + soft_bwd
    fwd = np.where(flash, flash_fwd, unfused_fwd)
    bwd = np.where(flash, flash_bwd, unfused_bwd)
    # saved: Q, K, V (+ fp32 log-sum-exp with flash); unfused adds the 5 a s^2 b term
    qkv = mbs * sq * (heads * core.qk_dim + kv_heads * (core.qk_dim + core.v_dim)) * env.elem
    lse = mbs * sq * heads * 4.0
    scores_saved = score_values * (2.0 * env.elem + 1.0)
    return {
        "fwd": fwd,
        "bwd": bwd,
        "qkv_saved": qkv,
        "score_saved": np.where(flash, lse, scores_saved),
        "flops": np.where(flash, flash_flops, full_flops),
        "kv_bytes": mbs * sq * kv_heads * (core.qk_dim + core.v_dim) * env.elem,
        # flash: one fused kernel; unfused: score GEMM, softmax, dropout, context GEMM and
        # the copy that lays the context out for the output projection
        "kernels": np.where(flash, 1.0, 5.0),
    }


def kv_gather_time(env: Env, core: AttentionCore) -> tuple[np.ndarray, np.ndarray]:
    """Forward all-gather and backward reduce-scatter of the QKV output over tp when tp
    exceeds the key/value heads (Megatron-Core ``attention.py``,
    ``get_query_key_value_tensors``: ``all_gather_last_dim_from_tensor_parallel_region``,
    whose backward reduce-scatters); zero otherwise."""
    tp = env.batch.tp
    width = core.heads * core.qk_dim + core.kv_heads * (core.qk_dim + core.v_dim)
    gathered = tp > core.kv_heads
    if not gathered.any():  # no strategy gathers: zeros, without costing the collectives
        zero = np.zeros(gathered.shape)
        return zero, zero
    size = env.tokens * width * env.elem
    algo = env.algorithms.get("tp") or _algorithm(env)
    ag = collective_time(Collective.ALL_GATHER, size, env.tp_group, env.hierarchy, algo)
    rs = collective_time(Collective.REDUCE_SCATTER, size, env.tp_group, env.hierarchy, algo)
    return np.where(gathered, ag, 0.0), np.where(gathered, rs, 0.0)


def moe_comm_time(
    env: Env, layer: LayerTemplate, tp_one: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One expert-parallel all-to-all (dispatch, or combine: the same bytes back) and the
    MoE layer's tensor-parallel communication, per micro-batch, on the busiest rank.

    All-to-all: each rank sends its routed tokens, ``top_k`` copies of its own tokens
    (:func:`~deepflow.parallel.experts.alltoall_bytes`), over the folded EP group
    (Megatron-Core ``MoEAlltoAllTokenDispatcher.token_dispatch``/``token_combine``:
    ``all_to_all(self.ep_group, ...)``); the busiest rank receives and sends the expert
    load times the mean. Expert tensor parallelism all-gathers the received tokens over
    the expert tp group before the experts and reduce-scatters their output after
    (``gather_from_sequence_parallel_region``/``reduce_scatter_to_sequence_parallel_region``
    with ``group=self.tp_group``, the expert tp group): that replaces the dense MLP's
    tensor-parallel pair under sequence parallelism (required with MoE and tp > 1,
    ``megatron/training/arguments.py``); without it the tp ranks hold the same tokens and
    the layer keeps the dense pair ``tp_one``.

    With ``strategy.moe_dispatcher: deepep`` (Megatron-Core's ``MoEFlexTokenDispatcher``
    with the DeepEP backend, ``fused_a2a.py`` ``fused_dispatch``/``fused_combine``) the
    dispatch and the combine are DeepEP's kernels instead:
    :func:`~deepflow.network.deepep.dispatch_time` of the same tokens over the same EP
    group."""
    b = env.batch
    h = env.model.hidden_size
    load = expert_load(env)
    tokens = env.tokens / env.sp_div
    sent = alltoall_bytes(tokens, layer.top_k, h, env.elem) * load
    a2a = collective_time(
        Collective.ALL_TO_ALL,
        sent,
        env.ep_group,
        env.hierarchy,
        env.algorithms.get("ep", Algorithm.RING),
    )
    if b.deepep.any():
        hier = env.hierarchy
        deepep = dispatch_time(
            tokens,
            h,
            layer.top_k,
            layer.num_experts,
            env.ep_group.size,
            env.ep_group.members_per_domain,
            env.ep_group.domains,
            env.elem,
            hier.scale_up.bandwidth,
            hier.scale_out.bandwidth,
            load,
        )
        a2a = np.where(b.deepep, deepep, a2a)
    gathered = env.expert_rows * layer.top_k * load * h * env.elem
    algo = env.algorithms.get("tp") or _algorithm(env)
    group = env.experts.etp
    ag = collective_time(Collective.ALL_GATHER, gathered, group, env.hierarchy, algo)
    rs = collective_time(Collective.REDUCE_SCATTER, gathered, group, env.hierarchy, algo)
    etp_pair = np.where(b.etp > 1, ag + rs, 0.0)
    mlp_tp = np.where(b.sequence_parallel | (b.tp == 1), etp_pair, tp_one)
    return np.where(b.ep > 1, a2a, 0.0), mlp_tp


def recomputed_fraction(env: Env) -> np.ndarray:
    """Fraction of a stage's layers that full recomputation checkpoints: 1, or
    ``recompute_layers`` over the layers of a pipeline model chunk ``L / (pp vpp)`` of the
    even split (Megatron's block method checkpoints the first ``recompute_layers`` layers of
    each chunk, ``megatron/core/recompute.py``), at most 1."""
    b = env.batch
    k = b.recompute_layers
    if not (k >= 0).any():  # all layers everywhere: the pipeline split is not read
        return np.ones(k.shape)
    per_chunk = env.model.num_layers / (b.pp * b.vpp)
    return np.where(k < 0, 1.0, np.minimum(1.0, np.maximum(k, 0) / per_chunk))


def layer_cost(env: Env, layer: LayerTemplate) -> LayerCost:
    """Cost of ``layer`` for one micro-batch on one rank of each strategy in ``env``."""
    b = env.batch
    ops = layer.ops
    gemms = iter(_gemm_costs(env, layer, [op for op in ops if isinstance(op, Gemm)]))
    others = tuple(op for op in ops if not isinstance(op, Gemm))
    streams = iter(elementwise_costs(env, others, layer) if others else ())  # type: ignore[arg-type]
    parts = [next(gemms) if isinstance(op, Gemm) else next(streams) for op in ops]
    for part, again in zip(parts, layer.saved_again, strict=True):
        if again:  # the same tensor is saved once
            part["saved"] = np.zeros_like(part["saved"])
    attn = _attention(env, layer.attention)
    total = {key: sum(p[key] for p in parts) for key in ("fwd", "bwd", "wgrad", "saved", "flops")}
    expert_params = sum(
        p["params"]
        for op, p in zip(layer.ops, parts, strict=True)
        if isinstance(op, Gemm) and op.scope is Scope.EXPERT
    )
    params = sum(p["params"] for p in parts) - expert_params

    # every micro-batch adds its weight gradients into the accumulation buffers: read the
    # buffer and the new gradient, write the buffer (VirtualFlow, Or et al. 2022, sec. 3:
    # t_acc = |W| bytes / BW_mem; Megatron-LM main_grad accumulation)
    accumulate = memory_time(
        (params + expert_params) * (2.0 * env.grad_bytes + env.elem),
        env.system.accelerator,
        sum(1 for op in layer.ops if op.params),
    )
    cast_fwd, cast_bwd, cast_kernels = _autocast_weights(env, layer, parts)
    if layer.autocast_weights:
        # fp32 parameters under torch.autocast: the weight casts replace the accumulation
        # (AccumulateGrad takes the fp32 gradient the cast backward makes; grad was None)
        accumulate = np.where(env.elem < 4.0, cast_bwd, accumulate)
    fwd_compute = total["fwd"] + attn["fwd"] + cast_fwd
    bwd_compute = total["bwd"] + attn["bwd"] + accumulate
    hidden_bytes = env.tokens * env.model.hidden_size * env.elem
    tp_one = tp_pair_time(env, hidden_bytes)
    kv_ag, kv_rs = kv_gather_time(env, layer.attention)
    # ring attention: cp-1 exchanges of the local K,V block, hidden under the attention
    # compute; backward moves K,V and their gradients (Liu et al. 2023, sec. 3)
    ring = b.cp > 1
    if ring.any():
        cp_steps = b.cp - 1.0
        kv_step = p2p_time(attn["kv_bytes"], env.cp_group.domains > 1, env.hierarchy)
        cp_fwd = np.where(ring, np.maximum(0.0, cp_steps * kv_step - attn["fwd"]), 0.0)
        cp_bwd = np.where(ring, np.maximum(0.0, 2.0 * cp_steps * kv_step - attn["bwd"]), 0.0)
    else:  # no context parallelism in the batch: no exchange
        cp_fwd = cp_bwd = np.zeros(ring.shape)
    if layer.moe:
        ep_one, mlp_tp = moe_comm_time(env, layer, tp_one)
        ep_fwd, ep_bwd = 2.0 * ep_one, 2.0 * ep_one
    else:
        ep_fwd = ep_bwd = np.zeros_like(fwd_compute)
        mlp_tp = tp_one
    tp_fwd = tp_one + mlp_tp + kv_ag
    tp_bwd = tp_one + mlp_tp + kv_rs

    recompute_mode = b.recompute
    full = recompute_mode == FULL
    f = np.where(full, recomputed_fraction(env), 0.0) if full.any() else np.zeros(full.shape)
    sel = _selective(env, layer, parts, attn, mlp_tp, ep_fwd)
    # host issue time: a backward op issues about two kernels per forward kernel (input and
    # weight gradients) plus one gradient accumulation per parameter tensor; collectives
    # issue one kernel each (Paszke et al. 2019, PyTorch, sec. 5.1: eager ops are issued
    # one at a time from the host)
    host = env.system.accelerator.efficiency.host_overhead
    checkpoint = env.system.accelerator.efficiency.checkpoint_host_factor
    compute_kernels = sum(p["kernels"] for p in parts) + attn["kernels"] + cast_kernels
    param_tensors = sum(len(getattr(op, "splits", ())) or 1 for op in layer.ops if op.params)
    comm_kernels = np.where(b.sequence_parallel, 4.0, 2.0) + (2.0 if layer.moe else 0.0)
    comm_kernels = comm_kernels + 2.0 * (b.cp - 1.0) + (b.tp > layer.attention.kv_heads)
    host_fwd = (compute_kernels + comm_kernels) * host
    # selective recomputation issues the rerun modules' kernels again
    host_bwd = (2.0 * compute_kernels + param_tensors + comm_kernels + sel["kernels"]) * host
    gpu_fwd = fwd_compute + tp_fwd + cp_fwd + ep_fwd
    gpu_bwd = bwd_compute + tp_bwd + cp_bwd + ep_bwd + sel["time"] + sel["tp"] + sel["ep"]
    host_excess_forward = np.maximum(0.0, host_fwd - gpu_fwd)
    host_excess_backward = np.maximum(0.0, host_bwd - gpu_bwd) + f * np.maximum(
        0.0, compute_kernels * host * checkpoint - (fwd_compute + tp_fwd)
    )

    all_saved = total["saved"] + attn["qkv_saved"] + attn["score_saved"]
    layer_input = hidden_bytes / env.sp_div
    attn_flops = attn["flops"]
    # full: a checkpointed layer keeps its input, a fraction f of the layers is checkpointed
    saved = f * layer_input + (1.0 - f) * (all_saved - sel["dropped"])
    live = np.where(f > 0, all_saved - layer_input, sel["dropped"])
    # the least of both over every recompute setting (see LayerCost): every module dropped
    saved_floor = np.minimum(layer_input, all_saved - _dropped(None, layer, parts, attn))
    live_floor = np.minimum(0.0, all_saved - layer_input)
    recompute = f * fwd_compute + sel["time"]
    recompute_flops = f * (total["flops"] + attn_flops) + sel["flops"]
    return LayerCost(
        forward_compute=fwd_compute,
        backward_compute=bwd_compute,
        weight_grad=total["wgrad"],
        recompute=recompute,
        tp_comm_forward=tp_fwd,
        tp_comm_backward=tp_bwd,
        cp_comm_forward=cp_fwd,
        cp_comm_backward=cp_bwd,
        ep_comm_forward=ep_fwd,
        ep_comm_backward=ep_bwd,
        recompute_tp=f * tp_fwd + sel["tp"],
        recompute_cp=f * cp_fwd,
        recompute_ep=f * ep_fwd + sel["ep"],
        host_excess_forward=host_excess_forward,
        host_excess_backward=host_excess_backward,
        saved_activations=saved,
        full_activations=all_saved,
        recompute_live=live,
        saved_floor=np.broadcast_to(saved_floor, fwd_compute.shape).astype(np.float64),
        live_floor=np.broadcast_to(live_floor, fwd_compute.shape).astype(np.float64),
        params=np.broadcast_to(params, fwd_compute.shape).astype(np.float64),
        expert_params=np.broadcast_to(
            np.asarray(expert_params, dtype=np.float64), fwd_compute.shape
        ),
        forward_flops=total["flops"] + attn_flops,
        weight_flops=total["flops"],
        recompute_flops=recompute_flops,
    )


def _dropped(
    bits: np.ndarray | None,
    layer: LayerTemplate,
    parts: list[dict[str, np.ndarray]],
    attn: dict[str, np.ndarray],
) -> np.ndarray | float:
    """The saved bytes that selective recomputation of module set ``bits`` (a bitmask over
    :data:`~deepflow.workload.recompute.MODULES`, per strategy; None: every module) drops:
    the saved tensors of the parts its modules checkpoint and of the attention core where
    they cover it."""
    masks = module_masks(layer)
    dropped: np.ndarray | float = 0.0 if bits is None else np.zeros(np.shape(bits))

    def where(mask: int, value: np.ndarray) -> np.ndarray:
        return value if bits is None else np.where((bits & mask) != 0, value, 0.0)

    for part, drop in zip(parts, masks.dropped, strict=True):
        if drop:
            dropped = dropped + where(drop, part["saved"])
    if masks.core_internal_dropped:
        dropped = dropped + where(masks.core_internal_dropped, attn["score_saved"])
    if masks.core_qkv_dropped:
        dropped = dropped + where(masks.core_qkv_dropped, attn["qkv_saved"])
    return dropped


def _selective(
    env: Env,
    layer: LayerTemplate,
    parts: list[dict[str, np.ndarray]],
    attn: dict[str, np.ndarray],
    tp_one: np.ndarray,
    ep_fwd: np.ndarray,
) -> dict[str, np.ndarray]:
    """Selective recomputation of each strategy's modules (``batch.recompute_modules``, a
    bitmask over :data:`~deepflow.workload.recompute.MODULES`, zero unless selective):
    the bytes its checkpoints drop, the forward time, FLOPs and kernels rerun in backward,
    and the tensor- and expert-parallel collectives rerun with them."""
    bits = env.batch.recompute_modules
    masks = module_masks(layer)
    zero = np.zeros_like(tp_one)
    out = {key: zero for key in ("dropped", "time", "flops", "kernels", "tp", "ep")}
    if not bits.any():
        return out

    def on(mask: int) -> np.ndarray:
        return (bits & mask) != 0

    for part, rec in zip(parts, masks.recomputed, strict=True):
        if rec:
            again = on(rec)
            out["time"] = out["time"] + np.where(again, part["fwd"], 0.0)
            out["flops"] = out["flops"] + np.where(again, part["flops"], 0.0)
            out["kernels"] = out["kernels"] + np.where(again, part["kernels"], 0.0)
    if masks.core_recomputed:
        again = on(masks.core_recomputed)
        out["time"] = out["time"] + np.where(again, attn["fwd"], 0.0)
        out["flops"] = out["flops"] + np.where(again, attn["flops"], 0.0)
        out["kernels"] = out["kernels"] + np.where(again, attn["kernels"], 0.0)
    out["dropped"] = _dropped(bits, layer, parts, attn)
    # the dense MLP's checkpoint reruns its row-parallel reduction (one of the layer's two
    # tensor-parallel pairs); the MoE layer's reruns that and its dispatch and combine
    if any(RecomputeModule.MLP in op.modules for op in layer.ops):
        out["tp"] = out["tp"] + np.where(on(_MLP_BIT), tp_one, 0.0)
    if layer.moe:
        moe = on(_MOE_BIT)
        out["tp"] = out["tp"] + np.where(moe, tp_one, 0.0)
        out["ep"] = out["ep"] + np.where(moe, ep_fwd, 0.0)
    return out


def select_by_framework(env: Env, build: Callable[[str], T]) -> T:
    """``build(framework)`` for each framework present in ``env.batch``, merged per
    strategy: the result of a strategy's own framework (a profile changes the layer
    template, so each is costed with its own; one framework costs one call)."""
    codes = np.unique(env.batch.framework)
    if len(codes) == 1:
        return build(FRAMEWORKS[int(codes[0])])
    results = {int(c): build(FRAMEWORKS[int(c)]) for c in codes}
    first = results[int(codes[0])]
    merged = {}
    for f in fields(first):  # type: ignore[arg-type]
        value = getattr(first, f.name)
        if not isinstance(value, np.ndarray):
            merged[f.name] = value
            continue
        out = np.array(np.broadcast_to(value, (len(env.batch),)), dtype=np.float64)
        for code, result in results.items():
            mask = env.batch.framework == code
            out[mask] = np.broadcast_to(getattr(result, f.name), out.shape)[mask]
        merged[f.name] = out
    return type(first)(**merged)


def layer_costs(env: Env) -> tuple[LayerCost, LayerCost]:
    """Cost of a dense and of a mixture-of-experts layer (the dense one again for a dense
    model), each strategy with its framework's layer template; the estimator and the
    simulator's lowering both take them from here."""
    model = env.model

    def dense(framework: str) -> LayerCost:
        return layer_cost(env, layer_template(model, False, framework))

    def moe(framework: str) -> LayerCost:
        return layer_cost(env, layer_template(model, True, framework))

    d = select_by_framework(env, dense)
    return d, (select_by_framework(env, moe) if model.moe is not None else d)
