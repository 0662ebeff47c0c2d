"""The closed-form evaluator: a model, a system and a batch of strategies -> step times.

Composition of one optimizer step (all arrays over strategies):

    step = m max_i T_i                      (steady pipeline, m micro-batches)
         + bubble                           (schedule fill and drain, :mod:`pipeline`)
         + exposed data-parallel sync       (gradient reduction not hidden by backward)
         + optimizer                        (Adam, memory-bound)

where ``T_i`` is stage ``i``'s time per micro-batch: its layers' forward and backward
(with recomputation and the exposed tensor-, context- and expert-parallel communication),
the embedding on the first stage, the LM head and loss on the last, and the pipeline
point-to-point transfers. Which layers a stage holds is the pipeline split
(:func:`deepflow.parallel.pipeline_split.pipeline_split`), the same for the simulator. The breakdown of the step into these parts sums to the step
time exactly (the critical stage's parts, times ``m``, plus the rest).

Link contention is not modelled: each collective takes its closed-form time as if it had its
links to itself, so the exposed data-parallel sync assumes the gradient all-reduce runs at
full bandwidth under the backward pass even when the expert all-to-alls or pipeline sends
of that backward cross the same NICs. The simulator's ``--contention`` mode
(:mod:`deepflow.sim.contention`) shares the ports; ``tests/sim/test_contention.py`` bounds
the gap (1-8 % on Mixtral 8x7B with the expert group across nodes, under 1 % where the
expert group stays in a node).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache, partial
from operator import itemgetter

import numpy as np

from deepflow.errors import ConfigError
from deepflow.estimate.context import Env, system_constants
from deepflow.estimate.edges import EDGE_TIME_PARTS, EdgeCost, embedding_cost, head_cost
from deepflow.estimate.fp8 import gather_bytes, weight_extra_bytes
from deepflow.estimate.layer_cost import LAYER_TIME_PARTS, STAGE_SUMS, LayerCost, layer_costs
from deepflow.estimate.memo import ArgsMemo, Codes, Memo
from deepflow.estimate.pipeline import in_flight, pipeline_time
from deepflow.hardware.roofline import memory_time
from deepflow.network.collectives import Algorithm, p2p_time
from deepflow.network.hierarchy import GroupPlacement, Hierarchy
from deepflow.network.programs import ProgramAlgorithm
from deepflow.network.xp import maximum, minimum, select
from deepflow.parallel.batch import SCHEDULES, StrategyBatch
from deepflow.parallel.feasibility import RULES, Context, structural_violations
from deepflow.parallel.pipeline_split import pipeline_split
from deepflow.parallel.sharding import (
    DataParallelGroups,
    scalar_groups,
    sharded_state,
    step_sync,
    sync_time,
    unit_backward,
    unit_buffers,
    unit_forward,
)
from deepflow.specs.accelerator import AcceleratorSpec
from deepflow.specs.framework import FRAMEWORKS, framework_profile
from deepflow.specs.identity import IdentityCache
from deepflow.specs.model import ModelSpec
from deepflow.specs.system import SystemSpec
from deepflow.workload.transformer import model_flops_per_step, parameter_count

BREAKDOWN_KEYS = (
    "compute",
    "recompute",
    "tp_comm",
    "cp_comm",
    "ep_comm",
    "pp_comm",
    "dp_comm",
    "host_overhead",
    "pipeline_bubble",
    "optimizer",
)
MEMORY_KEYS = ("weights", "gradients", "optimizer_state", "activations", "buffers")
# the parts of a pipeline stage's time per micro-batch: all but the step-level ones
STAGE_PARTS = tuple(k for k in BREAKDOWN_KEYS if k not in ("pipeline_bubble", "optimizer"))
# rows of STAGE_PARTS that the layers' own parts, their data-parallel part, the pipeline
# transfers and the embedding's and head's parts fill
_LAYER_ROWS = [STAGE_PARTS.index(k) for k in LAYER_TIME_PARTS]
_DP_ROW = STAGE_PARTS.index("dp_comm")
_PP_ROW = STAGE_PARTS.index("pp_comm")
_EDGE_ROWS = [STAGE_PARTS.index(k) for k in EDGE_TIME_PARTS]
# a cost's table (:func:`_stage_table`): the STAGE_PARTS rows, then the STAGE_SUMS rows,
# then the forward time
_SUMS = slice(len(STAGE_PARTS), len(STAGE_PARTS) + len(STAGE_SUMS))
_FORWARD_ROW = _SUMS.stop
_TABLE_ROWS = _FORWARD_ROW + 1

# Bytes per parameter in mixed precision with Adam: 16-bit weights and gradients, fp32
# master weights and two fp32 moments (Rajbhandari et al. 2020, ZeRO, sec. 3.1: 2 + 2 + 12).
# In fp32 training there is no master copy: 4 + 4 + 8.
OPTIMIZER_STATE_BYTES = {2: 12.0, 4: 8.0}
# Optimizer step traffic per parameter, mixed precision with fp32 master weights and loss
# scaling (Micikevicius et al. 2018, sec. 3; Megatron-LM's mixed-precision optimizer): copy
# 16-bit gradients to fp32 (2 + 4), unscale and check for inf (4 + 4), gradient norm for
# clipping (4), clip (4 + 4), fused Adam (read master, m, v, grad 16; write master, m, v 12;
# Kingma & Ba 2015, Algorithm 1), copy master to 16-bit weights (4 + 2): 60 bytes.
# fp32 training: grad norm (4), clip (4 + 4), Adam (16 + 12): 40 bytes.
OPTIMIZER_TRAFFIC_BYTES = {2: 60.0, 4: 40.0}
# Gradient bucket of PyTorch DDP (``bucket_cap_mb=25``, Li et al. 2020, PyTorch
# Distributed, sec. 3.2.3): the last bucket cannot overlap the backward pass.
GRAD_BUCKET_BYTES = 25e6
OOM_RULE = len(RULES)
_FIRST = itemgetter(0)
ALGORITHM_AXES = ("tp", "dp", "ep")
"""Mesh axes whose collectives can take an algorithm other than the built-in one."""


def part_costs(env: Env) -> tuple[LayerCost, LayerCost, EdgeCost, EdgeCost]:
    """The dense and MoE layer costs and the embedding and head costs of ``env``."""
    dense, moe = layer_costs(env)
    return dense, moe, embedding_cost(env), head_cost(env, (dense, moe))


def edge_costs(env: Env) -> tuple[EdgeCost, EdgeCost]:
    """The embedding and head costs of ``env`` (:func:`part_costs`' last two)."""
    return embedding_cost(env), head_cost(env)


LAYER_COSTS = Memo(layer_costs)
EDGE_COSTS = Memo(edge_costs)


class PartCosts:
    """:func:`part_costs` for one-strategy evaluations (``deepflow.predict`` in a loop),
    reusing the costs of earlier calls that read the same inputs
    (:mod:`deepflow.estimate.memo`): the layer costs and the edge costs are kept apart, so
    that an input only the edges read (the data-parallel group of the loss all-reduce, say)
    does not enter the key of the layers, the bulk of the work. ``hits`` and ``misses``
    are the layers' memo's; :meth:`clear` empties both."""

    def __call__(
        self, env: Env, seen: Codes | None = None
    ) -> tuple[LayerCost, LayerCost, EdgeCost, EdgeCost]:
        """The part costs of ``env``; ``seen``: the codes of ``env``'s paths, shared with
        other memos of the same call (:meth:`Memo.key`)."""
        if len(env.batch) != 1:
            return part_costs(env)
        seen = {} if seen is None else seen  # a path both memos read is looked up once
        return (*LAYER_COSTS(env, seen), *EDGE_COSTS(env, seen))

    @property
    def hits(self) -> int:
        return LAYER_COSTS.hits

    @property
    def misses(self) -> int:
        return LAYER_COSTS.misses

    def clear(self) -> None:
        LAYER_COSTS.clear()
        EDGE_COSTS.clear()


PART_COSTS = PartCosts()
"""One-strategy evaluations reuse the part costs of earlier calls (:class:`PartCosts`)."""


@dataclass(frozen=True)
class BatchResult:
    """Evaluation of a strategy batch (arrays of length ``len(batch)``)."""

    model: ModelSpec
    system: SystemSpec
    global_batch_size: int
    batch: StrategyBatch
    step_time: np.ndarray
    feasible: np.ndarray
    violation: np.ndarray  # index into RULES, OOM_RULE for out of memory, -1 if feasible
    breakdown: dict[str, np.ndarray]
    memory: dict[str, np.ndarray]
    peak_memory: np.ndarray
    peak_stage: np.ndarray
    critical_stage: np.ndarray  # the pipeline stage with the longest time per micro-batch
    model_flops: float
    hardware_flops: np.ndarray
    micro_batches: np.ndarray
    # with memory_floor_zeros: a lower bound on the peak memory over the strategy's ZeRO,
    # recompute and schedule alternatives (evaluate's docstring); None otherwise
    memory_floor: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def peak_flops(self) -> np.ndarray:
        # the accelerator's dense peak per precision code, kept per system object
        return system_constants(self.system)[1][self.batch.precision]

    @property
    def mfu(self) -> np.ndarray:
        return _utilization(self.model_flops, self._peak_time())

    @property
    def hfu(self) -> np.ndarray:
        return _utilization(self.hardware_flops, self._peak_time())

    @property
    def tokens_per_s(self) -> np.ndarray:
        return _per_second(self.global_batch_size * self.model.seq_len, self.step_time)

    def _peak_time(self, i: int | None = None) -> object:
        """The step time times every accelerator's dense peak at the strategy's precision
        (FLOPs the step could have run), of every strategy or of element ``i``."""
        step, peak = self.step_time, self.peak_flops
        if i is not None:
            step, peak = step[i], peak[i]
        return step * self.system.num_accelerators * peak

    def rates(self, i: int) -> tuple[object, object, object]:
        """``(tokens_per_s, mfu, hfu)`` of element ``i`` as NumPy scalars (the properties'
        arithmetic on one number, :mod:`deepflow.network.xp`)."""
        peak_time = self._peak_time(i)
        return (
            _per_second(self.global_batch_size * self.model.seq_len, self.step_time[i]),
            _utilization(self.model_flops, peak_time),
            _utilization(self.hardware_flops[i], peak_time),
        )


def _per_second(amount: object, step_time: object) -> object:
    """``amount / step_time`` per second of step, 0 where the step time is not positive."""
    return select(step_time > 0, amount / maximum(step_time, 1e-300), 0.0)


def _utilization(flops: object, peak_time: object) -> object:
    """``flops`` over the FLOPs the step could have run (:meth:`BatchResult._peak_time`),
    0 where that is not positive: MFU of the model's FLOPs, HFU of the hardware's."""
    return select(peak_time > 0, flops / maximum(peak_time, 1e-300), 0.0)


@cache
def _step_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per framework (index in :data:`FRAMEWORKS`): its ``step.optimizer_traffic`` (NaN
    where it gives none) and whether it makes the gradients in backward."""
    traffic, late = [], []
    for name in FRAMEWORKS:
        step = framework_profile(name).step
        given = step is not None and step.optimizer_traffic is not None
        traffic.append(step.optimizer_traffic if given else np.nan)  # type: ignore[union-attr]
        late.append(step is not None and step.gradients_in_backward)
    return np.array(traffic, dtype=np.float64), np.array(late, dtype=bool)


def optimizer_traffic(env: Env) -> np.ndarray:
    """Bytes per parameter the optimizer step moves (gradient clipping and the update), per
    strategy: its framework profile's ``step.optimizer_traffic`` where it gives one, else
    :data:`OPTIMIZER_TRAFFIC_BYTES` by activation width. Used by the estimator and the
    simulator's lowering."""
    default = np.where(env.elem > 2, OPTIMIZER_TRAFFIC_BYTES[4], OPTIMIZER_TRAFFIC_BYTES[2])
    own = _step_tables()[0][env.batch.framework]
    return np.where(np.isnan(own), default, own)


def _step_flags(env: Env) -> np.ndarray:
    """Per strategy: its framework makes the gradients during backward (``set_to_none``,
    :class:`~deepflow.specs.framework.StepImpl`)."""
    return _step_tables()[1][env.batch.framework]


@dataclass(frozen=True)
class StepInputs:
    """Per-strategy inputs of the step that read the environment only (arrays over
    strategies): bytes per parameter of the optimizer state (:data:`OPTIMIZER_STATE_BYTES`)
    and of the optimizer step's traffic (:func:`optimizer_traffic`), whether the framework
    makes the gradients in backward, the FP8 weight copies' extra bytes per parameter and
    the parameter all-gather's bytes per parameter (:mod:`deepflow.estimate.fp8`), the
    bytes of one micro-batch's hidden states and their pipeline send time."""

    opt_state: np.ndarray
    opt_traffic: np.ndarray
    late: np.ndarray
    fp8_extra: np.ndarray
    gather_w: np.ndarray
    hidden_bytes: np.ndarray
    p2p: np.ndarray


def step_inputs(env: Env) -> StepInputs:
    """The :class:`StepInputs` of ``env``."""
    b, elem = env.batch, env.elem
    hidden_bytes = env.tokens * env.model.hidden_size * elem
    return StepInputs(
        opt_state=np.where(elem > 2, OPTIMIZER_STATE_BYTES[4], OPTIMIZER_STATE_BYTES[2]),
        opt_traffic=optimizer_traffic(env),
        late=_step_flags(env),
        fp8_extra=weight_extra_bytes(env),
        # the parameter all-gather's bytes (FP8 with fp8_param_gather)
        gather_w=gather_bytes(env),
        hidden_bytes=hidden_bytes,
        p2p=np.where(
            b.pp > 1, p2p_time(hidden_bytes / b.tp, env.pp_crosses_domain, env.hierarchy), 0.0
        ),
    )


STEP_INPUTS = Memo(step_inputs)
"""One strategy's :func:`step_inputs`, kept by what it read (:mod:`deepflow.estimate.memo`)."""


def _dp_algorithm(env: Env) -> Algorithm | ProgramAlgorithm:
    return env.algorithms.get("dp", Algorithm.RING)


def zero3_unit_comm(env: Env, cost: LayerCost) -> tuple[np.ndarray, np.ndarray]:
    """ZeRO-3 / FSDP communication of one unit (a layer) and micro-batch, forward and
    backward, before any overlap (zero where ZeRO < 3; volumes from
    :mod:`deepflow.parallel.sharding`)."""
    b, groups, algo = env.batch, env.dp_groups, _dp_algorithm(env)
    if not (b.zero >= 3).any():  # no strategy gathers per unit: the times below are zeros
        return np.zeros(len(b)), np.zeros(len(b))
    fwd = sync_time(
        unit_forward(cost.params, cost.expert_params, b.zero, env.elem),
        groups, env.hierarchy, algo,
    )  # fmt: skip
    bwd = sync_time(
        unit_backward(
            cost.params, cost.expert_params, b.zero, b.reshard_after_forward, groups,
            env.elem, env.grad_bytes,
        ),
        groups, env.hierarchy, algo,
    )  # fmt: skip
    return fwd, bwd


def zero3_exposed(env: Env, cost: LayerCost) -> tuple[np.ndarray, np.ndarray]:
    """Exposed ZeRO-3 / FSDP communication of one layer and micro-batch, forward and
    backward (zero where ZeRO < 3).

    Each unit's gathers (and, in backward, the reduce-scatter of the unit before it) are
    prefetched under the unit's own compute (Zhao et al. 2023, PyTorch FSDP, sec. 3.3:
    ``forward_prefetch``, ``BACKWARD_PRE``): only the part longer than the unit shows.
    Without ``overlap_param_gather`` nothing is hidden.
    """
    if not (env.batch.zero >= 3).any():  # nothing gathered per unit: nothing exposed
        return np.zeros(len(env.batch)), np.zeros(len(env.batch))
    fwd_comm, bwd_comm = zero3_unit_comm(env, cost)
    hidden = np.where(env.batch.overlap_param_gather, 1.0, 0.0)
    fwd = np.maximum(0.0, fwd_comm - hidden * cost.forward)
    bwd = np.maximum(0.0, bwd_comm - hidden * cost.backward)
    return fwd, bwd


def zero3_edges(env: Env, costs: tuple[LayerCost, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The ZeRO-3 communication no prefetch can hide, per pass over a chunk of layers and
    micro-batch: the first unit's gather in forward (nothing runs before it) and, in
    backward, the first gather and the last unit's reduce-scatter. In a chain of units
    of compute ``c`` and communication ``g`` the per-unit rule counts ``max(0, g - c)``
    per unit; the chain takes ``min(g, c)`` more (the first transfer, or the last compute,
    that nothing overlaps). Taken for the larger of the layer kinds in ``costs``."""
    hidden = env.batch.overlap_param_gather
    fwd = np.zeros(len(env.batch))
    bwd = np.zeros(len(env.batch))
    if not (env.batch.zero >= 3).any():  # nothing gathered per unit: nothing exposed
        return fwd, bwd
    for cost in costs:
        f_comm, b_comm = zero3_unit_comm(env, cost)
        fwd = np.maximum(fwd, np.where(hidden, np.minimum(f_comm, cost.forward), 0.0))
        bwd = np.maximum(bwd, np.where(hidden, np.minimum(b_comm, cost.backward), 0.0))
    return fwd, bwd


def param_gather_exposed(
    overlap_param_gather: np.ndarray,
    gather: np.ndarray,
    stage_forward: np.ndarray,
    bucket: np.ndarray,
) -> np.ndarray:
    """Exposed time of the ZeRO-1/2 parameter all-gather after the optimizer step.

    With ``overlap_param_gather`` Megatron-Core's distributed optimizer launches the gather
    of each bucket at the start of the next step's forward and waits for a bucket just
    before its first layer runs (``megatron/core/distributed/param_and_grad_buffer.py``,
    ``start_param_sync``/``finish_param_sync``), so the gathers hide under the first
    micro-batch's forward pass of the stage, except the first bucket. Without it the
    gather runs after the optimizer step, in full. ``overlap_param_gather`` is the
    strategies' flag (the batch's array, or one strategy's NumPy scalar).
    """
    overlapped = maximum(gather - stage_forward, bucket)
    return select(overlap_param_gather, minimum(gather, overlapped), gather)


def _stage_state(
    zero: np.ndarray,
    params: np.ndarray,
    expert: np.ndarray,
    fp8_dense: np.ndarray | None,
    groups: DataParallelGroups,
    param_bytes: np.ndarray,
    fp8_extra: np.ndarray,
    grad_bytes: np.ndarray,
    opt_bytes: np.ndarray,
    largest_layer: np.ndarray,
    reshard_after_forward: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bytes of weights, gradients, optimizer state and ZeRO-3 unit buffers of every
    pipeline stage (axis 0) at ZeRO stage ``zero`` (per strategy), from the stage's
    ``params`` and ``expert`` parameters (one definition for the estimate and its memory
    floor; the buffers every strategy holds are the caller's)."""
    weights = sharded_state(params, expert, zero, 3, groups) * param_bytes
    # FP8 weight copies of the transformer layers' linear weights (estimate/fp8.py; the
    # norms' few parameters are counted with them, embedding and head stay 16-bit)
    if fp8_dense is not None:
        weights = weights + sharded_state(fp8_dense, expert, zero, 3, groups) * fp8_extra
    grads = sharded_state(params, expert, zero, 2, groups) * grad_bytes
    opt = sharded_state(params, expert, zero, 1, groups) * opt_bytes
    buffers = unit_buffers(
        largest_layer,
        params + expert,
        zero,
        reshard_after_forward,
        groups,
        param_bytes,
        grad_bytes,
    )
    return weights, grads, opt, buffers


def _peak_phase(
    weights: np.ndarray, grads: np.ndarray, acts: np.ndarray, late: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, gradients and activations at a stage's memory peak. Gradients made in
    backward (``late``: ``set_to_none``) replace the saved activations and the 16-bit
    weight copies as these are freed: the peak is the larger of the two phases, start of
    backward (weights + activations) or optimizer step (gradients), so the peak's sum of
    the three is ``max(weights + acts, grads)`` there and ``weights + acts + grads``
    otherwise, nondecreasing in each of them."""
    forward_phase = weights + acts >= grads
    weights = np.where(late & ~forward_phase, 0.0, weights)
    acts = np.where(late & ~forward_phase, 0.0, acts)
    grads = np.where(late & forward_phase, 0.0, grads)
    return weights, grads, acts


def _stage_sum(
    combined: np.ndarray | None,
    counts: Sequence[np.ndarray],
    tables: Sequence[np.ndarray],
    idx: object,
    name: str,
) -> np.ndarray:
    """The stage sum ``name`` of :data:`~deepflow.estimate.layer_cost.STAGE_SUMS`, (stage,
    strategy): its row of ``combined`` (every row's :func:`_stage_combination`, one
    strategy) or, without it, that row's combination alone."""
    row = _SUMS.start + STAGE_SUMS.index(name)
    if combined is not None:
        return combined[row]
    return _stage_combination(counts, tables, idx, row)


def _on_stage(values: np.ndarray, stage: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Each strategy's values on its own pipeline stage: ``values[..., stage[j], j]`` for
    every strategy ``j`` (stages on the second-to-last axis, strategies on the last); for
    one strategy by a basic index (a view, without an index array's gather)."""
    if len(cols) == 1:
        return values[..., int(stage[0]), :]
    return values[..., stage, cols]


@lru_cache(maxsize=4096)
def _split_arrays(
    model: ModelSpec, pp: int, vpp: int, stage_layers: tuple[int, ...] | None
) -> tuple[np.ndarray, ...]:
    """The pipeline split of ``model`` as read-only arrays over the stages: dense and MoE
    layers per stage, the stage indices (a column), whether each stage holds the
    embedding and the loss (columns of 0/1), and whether it holds any layer (a column);
    the same for every strategy with that split, so one-strategy calls reuse them."""
    split = pipeline_split(model, pp, vpp, stage_layers)
    n_dense, n_moe = np.array(split.dense, float), np.array(split.moe, float)
    stages = np.arange(pp)[:, None]
    first = (stages == split.embedding_stage).astype(float)
    last = (stages == split.loss_stage).astype(float)
    holds_layers = (n_dense + n_moe)[:, None] > 0
    out = (n_dense, n_moe, stages, first, last, holds_layers)
    for a in out:
        a.flags.writeable = False
    return out


@lru_cache(maxsize=4096)
def _in_flight_one(pp: int, *columns: tuple[np.dtype, object]) -> np.ndarray:
    """:func:`~deepflow.estimate.pipeline.in_flight` of every stage of one strategy (a
    read-only column) from its micro-batches, vpp and schedule, each given as (dtype,
    value): the same for every strategy with these inputs."""
    m, vpp, schedule = (np.array([value], dtype=dtype) for dtype, value in columns)
    out = in_flight(np.arange(pp)[:, None], pp, m, vpp, schedule)
    out.flags.writeable = False
    return out


def _take_groups(groups: DataParallelGroups, idx: np.ndarray) -> DataParallelGroups:
    """The groups of the strategies at ``idx``."""
    return DataParallelGroups(
        *(
            GroupPlacement(
                np.broadcast_to(g.size, (len(groups.grad.size),))[idx],
                np.broadcast_to(g.members_per_domain, (len(groups.grad.size),))[idx],
                np.broadcast_to(g.domains, (len(groups.grad.size),))[idx],
            )
            for g in (
                groups.grad, groups.shard, groups.replica, groups.ep, groups.expert_grad,
                groups.expert_shard, groups.expert_replica,
            )
        )
    )  # fmt: skip


def step_times(
    params: np.ndarray,
    expert: np.ndarray,
    zero: np.ndarray,
    groups: DataParallelGroups,
    gather_bytes: np.ndarray,
    grad_bytes: np.ndarray,
    hierarchy: Hierarchy,
    algorithm: Algorithm | ProgramAlgorithm,
    traffic: np.ndarray,
    accelerator: AcceleratorSpec,
) -> tuple[object, object, np.ndarray]:
    """The step-level terms of a stage holding ``params`` and ``expert`` parameters (per
    strategy): the time of the data-parallel collectives run under the backward pass and
    of the parameter all-gather run before the next forward
    (:func:`~deepflow.parallel.sharding.step_sync`), and the optimizer step's time, its
    state kept on the rank (sharded at ZeRO >= 1) times ``traffic`` bytes per parameter
    (:func:`optimizer_traffic`), memory-bound. For one strategy the collectives' lines run
    on NumPy scalars (:func:`~deepflow.parallel.sharding.scalar_groups`) and the two
    times are scalars."""
    sync = (params, expert, zero, groups, gather_bytes, grad_bytes)
    if len(params) == 1:
        sync = (*(_FIRST(a) for a in (params, expert, zero)), scalar_groups(groups),
                _FIRST(gather_bytes), _FIRST(grad_bytes))  # fmt: skip
    colls = step_sync(*sync)
    return (
        sync_time(colls, sync[3], hierarchy, algorithm, phase="backward"),
        sync_time(colls, sync[3], hierarchy, algorithm, phase="forward"),
        memory_time(sharded_state(params, expert, zero, 1, groups) * traffic, accelerator, 4),
    )


STAGE_STATE = ArgsMemo(_stage_state)
"""One strategy's :func:`_stage_state` by its arguments (the same for every micro-batch
size, recomputation and schedule of a mesh and split)."""
STEP_TIMES = ArgsMemo(step_times)
"""One strategy's :func:`step_times` by their arguments (the same for every micro-batch
size, recomputation and schedule of a mesh and split)."""


def clear_memos() -> None:
    """Empty every memo of the one-strategy evaluation: the part costs
    (:data:`PART_COSTS`) and step inputs (:data:`STEP_INPUTS`), kept by what they read,
    and the stage state and step-level times (:data:`STAGE_STATE`, :data:`STEP_TIMES`),
    kept by their arguments. The codes their keys are made of stay
    (:func:`~deepflow.estimate.memo.clear_codes` empties them)."""
    PART_COSTS.clear()
    for memo in (STEP_INPUTS, STAGE_STATE, STEP_TIMES):
        memo.clear()


def _stage_table(cost: LayerCost | EdgeCost) -> np.ndarray:
    """What one layer or edge adds to the stage that holds it, (row, strategy), rows in
    this order: ``cost.time_parts`` as rows of :data:`STAGE_PARTS` (zero in the
    parts the cost has none of: a layer's data-parallel and pipeline parts, which the
    evaluator adds by stage; an embedding's or head's parts outside EDGE_TIME_PARTS), its
    rows of :data:`~deepflow.estimate.layer_cost.STAGE_SUMS`, and its forward time."""
    rows = _LAYER_ROWS if isinstance(cost, LayerCost) else _EDGE_ROWS
    out = np.zeros((_TABLE_ROWS, cost.time_parts.shape[1]))
    out[rows] = cost.time_parts
    out[_SUMS] = cost.stage_sums
    out[_FORWARD_ROW] = cost.forward
    out.flags.writeable = False
    return out


_STAGE_TABLE = IdentityCache(_stage_table, maxsize=512)
""":func:`_stage_table` of a memoized cost (one-strategy calls), kept per cost object."""


def _with_unit_comm(table: np.ndarray, dp: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """A layer's :func:`_stage_table` with its per-unit data-parallel time ``dp`` (ZeRO-3's
    gathers and reduce-scatters, forward and backward) in the ``dp_comm`` row and the
    forward part of it, ``forward``, added to its forward time."""
    out = table.copy()
    out[_DP_ROW] = dp
    out[_FORWARD_ROW] = table[_FORWARD_ROW] + forward
    return out


def _stage_combination(
    coefficients: Sequence[np.ndarray],
    tables: Sequence[np.ndarray],
    idx: object,
    rows: slice | int = slice(None),
) -> np.ndarray:
    """Per stage, ``sum_k c_k t_k`` over the kinds of what a stage holds (dense layers,
    MoE layers, the ZeRO-3 chain ends where any, embedding, head, in that order):
    ``coefficients`` their counts per stage (columns over the stages) and ``tables`` their
    :func:`_stage_table` rows (strategies ``idx``). With a slice of rows, (row, stage,
    strategy); with one row, (stage, strategy). The one definition of a stage's time
    parts, sums and forward time from its layers and edges."""
    total = None
    for count, table in zip(coefficients, tables, strict=True):
        # one row first: NumPy would move the axis of an integer index and an index array
        # apart by a new axis to the front
        term = count * (table[rows, None, idx] if type(rows) is slice else table[rows][None, idx])
        total = term if total is None else total + term
    return total  # type: ignore[return-value]


class _BySplit:
    """The per-strategy outputs of :func:`evaluate`'s groups of strategies with one
    pipeline split: with one group (always, for one strategy) the group's arrays as they
    are; with several, each output an array over the batch (strategies on its last axis)
    that every group fills at its indices (the groups partition the batch)."""

    def __init__(self, n: int, groups: int) -> None:
        self.n = n
        self.single = groups == 1
        self.arrays: dict[str, np.ndarray] = {}

    def put(self, idx: object, **values: np.ndarray) -> None:
        if self.single:
            self.arrays.update(values)
            return
        for name, value in values.items():
            array = self.arrays.get(name)
            if array is None:
                array = self.arrays[name] = np.empty((*value.shape[:-1], self.n), value.dtype)
            array[..., idx] = value

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


def evaluate(
    model: ModelSpec,
    system: SystemSpec,
    global_batch_size: int,
    batch: StrategyBatch,
    algorithms: Mapping[str, Algorithm | ProgramAlgorithm] | None = None,
    matmul_scale: np.ndarray | None = None,
    memory_floor_zeros: Sequence[int] | None = None,
) -> BatchResult:
    """Evaluate every strategy of ``batch`` for ``model`` on ``system`` (vectorized).

    ``algorithms`` optionally maps a mesh axis to the algorithm of its collectives, in place
    of the batch's built-in one: ``"tp"`` (the tensor-parallel all-reduces, or
    reduce-scatter and all-gather pairs), ``"dp"`` (the data-parallel gradient sync and
    the ZeRO-3 gathers) and ``"ep"`` (the expert all-to-alls). Context and pipeline
    parallelism move data point to point, so they take no collective algorithm.

    With ``memory_floor_zeros`` (ZeRO stages), ``result.memory_floor`` holds for each
    strategy a lower bound on the peak memory of every strategy that differs from it only
    in the ZeRO stage (one of ``memory_floor_zeros``), the recompute setting (mode, modules,
    layers) and the pipeline schedule. Proof: a stage's peak is ``opt + buffers + P(weights,
    grads, acts)`` with ``P`` the sum of the three or ``max(weights + acts, grads)``
    (:func:`_peak_phase`), nondecreasing in each term; the peak memory is its largest
    stage's. Weights, gradients, optimizer state and buffers depend on the ZeRO stage
    only (:func:`_stage_state`, called for both). Activations are ``flight x per_mb + live
    + last x transient``, all terms non-negative but ``live``: ``flight`` (pipeline
    ``in_flight``) is at least its least over every schedule, ``per_mb`` (the stage's
    saved bytes per micro-batch) at least the sum of the layers' and edges'
    ``saved_floor`` and ``live`` at least the layers' ``live_floor``
    (:class:`~deepflow.estimate.layer_cost.LayerCost`), whatever the recompute setting;
    ``transient`` reads none of these knobs. So for a strategy at ZeRO stage ``z`` every
    stage's peak is at least the same sum with the activations at their floor, the largest
    stage's too, and the least of these over ``z`` in ``memory_floor_zeros`` bounds them
    all. ``tests/search/test_prune.py`` checks it on random strategies.
    """
    for axis in algorithms or {}:
        if axis not in ALGORITHM_AXES:
            raise ConfigError(
                f"axis {axis!r} runs no collective in the estimator; algorithms can be given "
                f"for {', '.join(ALGORITHM_AXES)}",
                f"strategy.collective_algorithms.{axis}",
            )
    n = len(batch)
    env = Env.build(model, system, batch, global_batch_size, algorithms, matmul_scale)
    ctx = Context(model, system, global_batch_size)
    violation = structural_violations(ctx, batch)
    if n == 1:  # the memos of one-strategy calls share the codes of env's paths
        seen: Codes = {}
        dense, moe, emb, head = PART_COSTS(env, seen)
        inputs = STEP_INPUTS(env, seen)
    else:
        dense, moe, emb, head = PART_COSTS(env)
        inputs = step_inputs(env)
    b = batch
    m = env.micro_batches
    w_bytes = env.elem
    opt_state, opt_traffic, grads_in_backward = inputs.opt_state, inputs.opt_traffic, inputs.late
    dpg = env.dp_groups
    fp8_extra, gather_w = inputs.fp8_extra, inputs.gather_w
    fp8_any = bool(fp8_extra.any())
    hidden_bytes, p2p = inputs.hidden_bytes, inputs.p2p

    final_norm_params = float(parameter_count(model).final_norm)
    # what each kind of unit adds to a stage (:func:`_stage_table`, (row, strategy); kept
    # per memoized cost for one strategy): dense layers, MoE layers, embedding, head
    table_of = _STAGE_TABLE if n == 1 else _stage_table
    tables = [table_of(c) for c in (dense, moe, emb, head)]
    if (b.zero >= 3).any():
        # the layers' data-parallel part (ZeRO-3's per-unit collectives, exposed) and the
        # ends of a pass's ZeRO-3 chain, a kind of its own counted once per chunk of layers
        z3_dense = zero3_exposed(env, dense)
        z3_moe = z3_dense if moe is dense else zero3_exposed(env, moe)  # dense: one layer kind
        z3_edge = sum(zero3_edges(env, (dense, moe) if model.moe is not None else (dense,)))
        tables[0] = _with_unit_comm(tables[0], z3_dense[0] + z3_dense[1], z3_dense[0])
        tables[1] = (
            tables[0]
            if moe is dense
            else _with_unit_comm(tables[1], z3_moe[0] + z3_moe[1], z3_moe[0])
        )
        ends = np.zeros_like(tables[0])
        ends[_DP_ROW] = z3_edge
        tables.insert(2, ends)
    # what recomputation re-creates for the backward pass of one layer at a time
    live_extra = np.maximum(dense.recompute_live, moe.recompute_live)
    floor_zeros = None if memory_floor_zeros is None else sorted(set(memory_floor_zeros))
    if floor_zeros is not None:
        live_floor = np.maximum(dense.live_floor, moe.live_floor)
    zero = b.zero

    # strategies with the same pipeline split are evaluated together, stages on axis 0
    groups: dict[tuple[int, int, tuple[int, ...] | None], list[int]] = defaultdict(list)
    for i, key in enumerate(zip(b.pp.tolist(), b.vpp.tolist(), b.stage_layers, strict=True)):
        groups[key].append(i)
    out = _BySplit(n, len(groups))  # what each split's group gives, per strategy
    for (pp, vpp, stage_layers), members in groups.items():
        # one split (always, for one strategy): all of the batch, in order, as a view
        idx = slice(None) if len(groups) == 1 else np.array(members)
        # the per-strategy values of the group; for one strategy, its values as NumPy
        # scalars (:mod:`deepflow.network.xp`): the same IEEE arithmetic below, without
        # the array machinery of each operation on one number
        at = _FIRST if n == 1 else itemgetter(idx)
        n_dense, n_moe, stages, first, last, holds_layers = _split_arrays(
            model, pp, vpp, stage_layers
        )
        # per stage, what its layers and edges add up to (:func:`_stage_combination`):
        # the time parts, (part, stage, strategy) in STAGE_PARTS order, the pipeline
        # transfers set apart (the same on every stage), the STAGE_SUMS quantities and the
        # forward part of the stage's time (1F1B's span on uneven stages needs it). One
        # strategy: every row in one broadcast; a batch: the parts at once and each other
        # row on its own (no (row, stage, strategy) temporaries of every row)
        counts = [n_dense[:, None], n_moe[:, None], first, last]
        if len(tables) == 5:  # the ZeRO-3 chain's ends, on each stage with layers
            counts.insert(2, vpp * holds_layers)
        every = None
        if n == 1:
            every = _stage_combination(counts, tables, idx)
            parts, forward = every[: len(STAGE_PARTS)], every[_FORWARD_ROW]
        else:
            parts = _stage_combination(counts, tables, idx, slice(len(STAGE_PARTS)))
            forward = _stage_combination(counts, tables, idx, _FORWARD_ROW)
        parts[_PP_ROW] = 2.0 * vpp * at(p2p)
        forward = forward + vpp * at(p2p)
        stage_time = parts[0]
        for row in parts[1:]:
            stage_time = stage_time + row

        # the STAGE_SUMS quantities by name, (stage, strategy)
        summed = partial(_stage_sum, every, counts, tables, idx)

        # zero-bubble defers the weight-gradient work W into the bubble. Its share of the
        # stage is taken by FLOPs (weight-gradient GEMMs over all the stage's FLOPs), which
        # does not depend on peak rates or bandwidths, so the deferred time scales with the
        # stage time and the step stays monotone in them
        w_flops, all_flops = summed("weight_flops"), summed("all_flops")
        wgrad = stage_time * np.where(all_flops > 0, w_flops / np.maximum(all_flops, 1.0), 0.0)
        params, per_mb, expert = (
            summed("params"),
            summed("saved_activations"),
            summed("expert_params"),
        )
        s_steady, s_bubble = pipeline_time(
            stage_time, wgrad, at(m), at(b.vpp).astype(float), at(b.schedule), forward
        )
        critical = np.argmax(stage_time, axis=0)
        cols = np.arange(len(members))
        out.put(
            idx,
            steady=s_steady,
            bubble=s_bubble,
            critical_stage=critical,
            crit=at(m) * _on_stage(parts, critical, cols),  # the critical stage's parts
        )

        # memory per stage
        # tied embeddings: the LM head uses the embedding table; a stage that holds both
        # holds the table once (Megatron-Core ``share_embeddings_and_output_weights``; a
        # separate last stage keeps its own copy, Narayanan et al. 2021, sec. 2.2)
        if model.tie_embeddings:
            params = params - first * last * (at(head.params) - final_norm_params)
        sz = at(zero)
        # one pipeline split (always, for one strategy): the groups are those of the batch
        sgroups = dpg if len(groups) == 1 else _take_groups(dpg, idx)
        fp8_dense = summed("layer_params") if fp8_any else None
        largest_layer = np.maximum(at(dense.params), at(moe.params) + at(moe.expert_params))
        base_buffers = np.full(
            (pp, len(members)),
            2.0 * GRAD_BUCKET_BYTES + (2.0 if pp > 1 else 0.0) * at(hidden_bytes),
        )

        # the stage state's inputs but the ZeRO stage (_stage_state's order)
        state_inputs = (
            params, expert, fp8_dense, sgroups, at(w_bytes), at(fp8_extra), at(env.grad_bytes),
            at(opt_state), largest_layer, at(b.reshard_after_forward),
        )  # fmt: skip
        # one strategy: by its arguments (the same for every micro-batch size)
        state = STAGE_STATE if n == 1 else _stage_state
        weights, grads, opt, unit_buf = state(sz, *state_inputs)
        buffers = base_buffers + unit_buf
        if n == 1:  # one strategy: kept per (pp, micro-batches, vpp, schedule)
            flight = _in_flight_one(pp, *((a.dtype, a.item()) for a in (m, b.vpp, b.schedule)))
        else:
            flight = in_flight(stages, pp, at(m), at(b.vpp), at(b.schedule))
        acts = flight * per_mb + at(live_extra) + last * at(head.transient_activations)
        late = at(grads_in_backward)
        if late.any():  # otherwise no phase split (and nothing to compute)
            weights, grads, acts = _peak_phase(weights, grads, acts, late)
        total = weights + grads + opt + acts + buffers
        if floor_zeros is not None:
            # the same terms at their least over zero, recompute and schedule (see the
            # docstring): activations at the least in-flight count and saved bytes
            fewest = np.min(
                [in_flight(stages, pp, at(m), at(b.vpp), s) for s in range(len(SCHEDULES))],
                axis=0,
            )
            per_mb_floor = summed("saved_floor")
            acts_floor = (
                fewest * per_mb_floor + at(live_floor) + last * at(head.transient_activations)
            )
            lowest = np.full(len(members), np.inf)
            for z in floor_zeros:
                zw, zg, zo, zb = _stage_state(
                    np.full(len(members), z, dtype=sz.dtype), *state_inputs
                )
                zb = base_buffers + zb
                zw, zg, za = _peak_phase(zw, zg, acts_floor, late)
                lowest = np.minimum(lowest, np.max(zw + zg + zo + za + zb, axis=0))
            out.put(idx, floor=lowest)
        worst = np.argmax(total, axis=0)
        heaviest = np.argmax(params + expert, axis=0)
        out.put(
            idx,
            peak=_on_stage(total, worst, cols),
            peak_stage=worst,
            # the peak stage's memory, MEMORY_KEYS order
            mem=_on_stage(np.array((weights, grads, opt, acts, buffers)), worst, cols),
            stage_params=_on_stage(params, heaviest, cols),
            stage_expert_params=_on_stage(expert, heaviest, cols),
            stage_backward=_on_stage(summed("layer_backward"), critical, cols),
            stage_forward=_on_stage(summed("layer_forward"), critical, cols),
        )
    steady, bubble, crit, peak, mem = (
        out["steady"],
        out["bubble"],
        out["crit"],
        out["peak"],
        out["mem"],
    )
    stage_params, stage_expert_params = out["stage_params"], out["stage_expert_params"]
    stage_backward, stage_forward = out["stage_backward"], out["stage_forward"]
    floor = None if floor_zeros is None else out["floor"]

    # data-parallel synchronization at the end of the step (ZeRO 0-2; ZeRO-3 reduces per
    # unit): the gradient reduction hides behind the backward pass bucket by bucket
    # (PyTorch DDP, Li et al. 2020, sec. 3.2.3; Megatron-Core ``overlap_grad_reduce``)
    # except the last bucket; ZeRO 1/2 then gather the updated parameters
    # (:func:`param_gather_exposed`). Volumes: :func:`deepflow.parallel.sharding.step_sync`.
    dp_algo = _dp_algorithm(env)
    # one strategy: these terms on NumPy scalars (:mod:`deepflow.network.xp`)
    (s_params, s_expert, s_backward, s_forward, s_gather_w, s_grad_bytes, overlap_grad,
     overlap_gather) = (
        _FIRST(a) if n == 1 else a
        for a in (
            stage_params, stage_expert_params, stage_backward, stage_forward, gather_w,
            env.grad_bytes, b.overlap_grad_reduce, b.overlap_param_gather,
        )
    )  # fmt: skip
    sync, gather, optimizer = (STEP_TIMES if n == 1 else step_times)(
        stage_params, stage_expert_params, zero, dpg, gather_w, env.grad_bytes, env.hierarchy,
        dp_algo, opt_traffic, system.accelerator,
    )  # fmt: skip
    if n == 1:  # a copy: the memo's array is read-only, the result's the caller's
        optimizer = optimizer.copy()
    grad_bytes = (s_params + s_expert) * s_grad_bytes
    last_bucket = sync * minimum(1.0, GRAD_BUCKET_BYTES / maximum(grad_bytes, 1.0))
    overlapped = maximum(sync - s_backward, last_bucket)
    dp_exposed = select(overlap_grad, overlapped, sync)
    param_bytes = (s_params + s_expert) * s_gather_w
    gather_bucket = gather * minimum(1.0, GRAD_BUCKET_BYTES / maximum(param_bytes, 1.0))
    dp_exposed = dp_exposed + param_gather_exposed(overlap_gather, gather, s_forward, gather_bucket)
    crit = dict(zip(STAGE_PARTS, crit, strict=True))
    crit["dp_comm"] = crit["dp_comm"] + dp_exposed

    breakdown = {**crit, "pipeline_bubble": bubble, "optimizer": optimizer}  # BREAKDOWN_KEYS
    step = steady + bubble + dp_exposed + optimizer

    oom = (peak > system.accelerator.memory_capacity) & (violation < 0)
    violation = np.where(oom, OOM_RULE, violation)
    feasible = violation < 0
    flops = model_flops_per_step(model, global_batch_size)
    # hardware FLOPs add the recomputed forward work (Chowdhery et al. 2022, PaLM, app. B);
    # per-rank recompute FLOPs x tp x cp ranks per micro-batch slice = per-token FLOPs
    num_dense = model.num_layers - model.num_moe_layers
    recompute_per_token = (
        (num_dense * dense.recompute_flops + model.num_moe_layers * moe.recompute_flops)
        * b.tp
        * b.cp
        / env.tokens
    )
    hardware = flops + recompute_per_token * global_batch_size * model.seq_len
    return BatchResult(
        model=model,
        system=system,
        global_batch_size=global_batch_size,
        batch=batch,
        step_time=np.where(feasible, step, np.inf),
        feasible=feasible,
        violation=violation,
        breakdown=breakdown,
        memory=dict(zip(MEMORY_KEYS, mem, strict=True)),
        peak_memory=peak,
        memory_floor=floor,
        peak_stage=out["peak_stage"],
        critical_stage=out["critical_stage"],
        model_flops=flops,
        hardware_flops=hardware,
        micro_batches=m,
    )
