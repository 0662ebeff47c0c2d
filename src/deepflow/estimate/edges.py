"""The work only the first and last pipeline stages do: embedding, LM head, loss.

Megatron-LM places the (vocab-parallel) embedding on the first stage and the final norm,
LM head and cross-entropy on the last (Narayanan et al. 2021, sec. 2.2; vocab-parallel
embedding and loss: Shoeybi et al. 2019, sec. 3). These make the first and last stages
heavier than the others (uneven stages).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from deepflow.estimate.context import Env
from deepflow.estimate.layer_cost import (
    LayerCost,
    _kept,
    autocast_cast_time,
    elementwise_cost,
    layer_costs,
    select_by_framework,
    stacked_gemm_times,
    tp_pair_time,
)
from deepflow.hardware.roofline import memory_time
from deepflow.network.collectives import Collective, collective_time
from deepflow.specs.framework import (
    DEFAULT_FRAMEWORK,
    FRAMEWORKS,
    LossImpl,
    MicrobatchLoop,
    framework_profile,
)
from deepflow.workload.transformer import final_norm, parameter_count

EDGE_TIME_PARTS = ("compute", "tp_comm", "dp_comm", "host_overhead")
"""The parts of the step's breakdown an embedding's or a head's time falls into."""


@dataclass(frozen=True)
class EdgeCost:
    """Per micro-batch on one rank of the first (embedding) or last (head) stage."""

    forward_compute: np.ndarray
    backward_compute: np.ndarray
    weight_grad: np.ndarray
    tp_comm_forward: np.ndarray
    tp_comm_backward: np.ndarray
    saved_activations: np.ndarray
    params: np.ndarray
    forward_flops: np.ndarray
    # bytes live besides the saved ones at the stage's memory peak, for one micro-batch at
    # a time (the loss's gradients at the start of its backward pass)
    transient_activations: np.ndarray
    # host issue time beyond the device time, forward and backward (the layers' rule,
    # :func:`host_excess`), with the training loop's own per-micro-batch host time
    host_excess_forward: np.ndarray
    host_excess_backward: np.ndarray
    # the per-micro-batch all-reduce of the loss over the data-parallel group
    dp_comm_forward: np.ndarray
    # the least saved_activations under any recompute setting, the other knobs unchanged
    # (only the multi-token-prediction modules' layers recompute; LayerCost.saved_floor)
    saved_floor: np.ndarray

    @cached_property
    def time_parts(self) -> np.ndarray:
        """The edge's time per micro-batch by part of the step's breakdown, one row each
        in :data:`EDGE_TIME_PARTS` order (part, strategy): computed once per object (the
        fields are not changed after construction; memoized costs are read-only)."""
        return _kept(
            np.stack(
                [
                    self.forward_compute + self.backward_compute,
                    self.tp_comm_forward + self.tp_comm_backward,
                    self.dp_comm_forward,
                    self.host_excess,
                ]
            )
        )

    @cached_property
    def stage_sums(self) -> np.ndarray:
        """The edge's rows of :data:`~deepflow.estimate.layer_cost.STAGE_SUMS` (quantity,
        strategy), computed once per object: its GEMM FLOPs (the LM head's; none for the
        embedding lookup) count as weight-gradient FLOPs once and as all FLOPs three
        times (forward, input and weight gradients); the layers' own rows are zero."""
        zero = np.zeros_like(self.params)
        return _kept(
            np.stack(
                [
                    self.forward_flops,
                    3.0 * self.forward_flops,
                    self.params,
                    self.saved_activations,
                    self.saved_floor,
                    zero,
                    zero,
                    zero,
                    zero,
                ]
            )
        )

    @property
    def forward(self) -> np.ndarray:
        return (
            self.forward_compute
            + self.tp_comm_forward
            + self.dp_comm_forward
            + self.host_excess_forward
        )

    @property
    def backward(self) -> np.ndarray:
        return self.backward_compute + self.tp_comm_backward + self.host_excess_backward

    @property
    def host_excess(self) -> np.ndarray:
        return self.host_excess_forward + self.host_excess_backward


def host_excess(env: Env, kernels: object, device: object) -> np.ndarray:
    """Host issue time of ``kernels`` eager kernels beyond the ``device`` time they take:
    kernels cannot run faster than the host issues them (``efficiency.host_overhead`` per
    kernel, the rule of :func:`~deepflow.estimate.layer_cost.layer_cost`; Paszke et al.
    2019, PyTorch, sec. 5.1)."""
    host = env.system.accelerator.efficiency.host_overhead
    return np.maximum(0.0, np.asarray(kernels, dtype=np.float64) * host - device)


def _loops(env: Env) -> list[tuple[MicrobatchLoop, np.ndarray]]:
    """Each framework's training loop (:class:`~deepflow.specs.framework.MicrobatchLoop`)
    with the strategies it applies to: that framework's with ``pp`` 1."""
    b = env.batch
    out = []
    for code in np.unique(b.framework):
        loop = framework_profile(FRAMEWORKS[int(code)]).microbatch
        if loop is not None:
            out.append((loop, (b.framework == code) & (b.pp == 1)))
    return out


def microbatch_loop_time(env: Env) -> np.ndarray:
    """Idle device time per micro-batch that the training loop's host work causes outside
    the model: after each device synchronization the queue is empty, so the next kernel
    waits for its host issue, and the kernels issued before the first layer (the batch,
    its masks) are each as long as their host issue: ``(device_syncs + host_kernels) x
    host_overhead`` (:class:`~deepflow.specs.framework.MicrobatchLoop`); zero for a
    framework without a loop section."""
    host = env.system.accelerator.efficiency.host_overhead
    out = np.zeros(len(env.batch))
    for loop, mask in _loops(env):
        out = np.where(mask, (loop.device_syncs + loop.host_kernels) * host, out)
    return out


def loss_allreduce_time(env: Env) -> np.ndarray:
    """The per-micro-batch all-reduce of the (one fp32 value) loss over the data-parallel
    group, where the framework's loop averages it for logging (Megatron's
    ``average_losses_across_data_parallel_group``); the compute stream waits for it."""
    out = np.zeros(len(env.batch))
    small = None  # read the groups only where a loop reduces the loss: the memo of the
    # head's cost (:mod:`deepflow.estimate.memo`) then keys on them only for such loops
    for loop, mask in _loops(env):
        if loop.loss_allreduce:
            if small is None:
                small = collective_time(
                    Collective.ALL_REDUCE, 4.0, env.dp_groups.grad, env.hierarchy
                )
            out = np.where(mask, small, out)
    return out


def embedding_cost(env: Env) -> EdgeCost:
    """Token (+ learned position) embedding lookup and dropout; the vocab-parallel lookup
    ends in a tensor-parallel reduction of the hidden states."""
    acc = env.system.accelerator
    h = env.model.hidden_size
    values = env.tokens * h / env.sp_div
    passes = 3.0 if env.model.learned_position_embeddings else 2.0
    fwd = memory_time(values * passes * env.elem + values, acc, 2)
    counts = parameter_count(env.model)
    params = counts.embedding / env.batch.tp + counts.position_embedding
    # backward: dropout backward, then a scatter-add of the gradient into the fp32 table
    bwd = memory_time(values * 3.0 * env.elem + env.tokens * h * 4.0 * 2.0, acc, 2)
    # the lookup's gradient is a dense table: PyTorch's embedding backward zero-fills a
    # (rows x h) gradient and adds the tokens' rows into it (aten/src/ATen/native/cuda/
    # Embedding.cu, embedding_dense_backward_cuda: at::zeros({num_weights, ...})), which
    # is then added into the gradient buffer like any weight gradient (read the buffer and
    # the gradient, write the buffer: layer_cost's accumulation; Megatron's main_grad hook
    # param.main_grad.add_(param.grad.data))
    bwd = bwd + memory_time(params * (env.elem + 2.0 * env.grad_bytes + env.elem), acc, 2)
    zero = np.zeros_like(fwd)
    hidden_bytes = env.tokens * h * env.elem
    # the partial lookups are summed over tp: all-reduce, or reduce-scatter with SP (each
    # costed only where a strategy of the batch runs it)
    sp = env.batch.sequence_parallel
    scatter = whole = 0.0
    if sp.any():
        scatter = collective_time(
            Collective.REDUCE_SCATTER, hidden_bytes, env.tp_group, env.hierarchy
        )
    if not sp.all():
        whole = collective_time(Collective.ALL_REDUCE, hidden_bytes, env.tp_group, env.hierarchy)
    reduce = np.where(sp, scatter, whole)
    # kernels: the lookup (at tp > 1 VocabParallelEmbedding.forward also builds the
    # out-of-range mask, lt, ge, or; clones and shifts the ids, clone, sub; zeroes them,
    # and zeroes the masked rows of the output: 7 more and the all-reduce), the position
    # lookup, their sum and the dropout (Megatron-DeepSpeed megatron/mpu/layers.py
    # VocabParallelEmbedding.forward, megatron/model/language_model.py Embedding.forward);
    # backward: dropout, the masked fill (tp > 1), each lookup's dense gradient and its
    # accumulation
    lookups = 2.0 if env.model.learned_position_embeddings else 1.0
    split = env.batch.tp > 1
    fwd_kernels = lookups + 2.0 + np.where(split, 8.0, 0.0)
    bwd_kernels = 1.0 + 2.0 * lookups + np.where(split, 1.0, 0.0)
    # the lookup is the first work of a micro-batch's forward pass: its host issue is
    # exposed where the training loop has just drained the device queue (a framework
    # whose loop synchronizes, :func:`microbatch_loop_time`); elsewhere the host is ahead,
    # issuing it while the device still runs the previous micro-batch
    loop = microbatch_loop_time(env)
    host_fwd = np.where(loop > 0, host_excess(env, fwd_kernels, fwd + reduce) + loop, 0.0)
    host_bwd = host_excess(env, bwd_kernels, bwd)
    return EdgeCost(
        forward_compute=fwd,
        backward_compute=bwd,
        weight_grad=zero,
        tp_comm_forward=reduce,
        tp_comm_backward=zero,
        saved_activations=values,
        params=params.astype(np.float64),
        forward_flops=zero,
        transient_activations=zero,
        host_excess_forward=host_fwd,
        host_excess_backward=host_bwd,
        dp_comm_forward=zero,
        saved_floor=values,
    )


def _loss_pass(
    env: Env, logits: np.ndarray, loss: LossImpl, forward: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Time and number of the loss's forward or backward kernels over ``logits`` values;
    cast kernels run only on 16-bit logits."""
    total = loss.forward_values() if forward else loss.backward_values()
    plain = loss.forward_values(True) if forward else loss.backward_values(True)
    cast = env.elem < 4.0
    per_logit = (
        plain[0] * env.elem
        + plain[1] * 4.0
        + np.where(cast, (total[0] - plain[0]) * env.elem + (total[1] - plain[1]) * 4.0, 0.0)
    )
    kernels = plain[2] + np.where(cast, total[2] - plain[2], 0)
    return memory_time(logits * per_logit, env.system.accelerator, kernels), kernels


def head_cost(env: Env, layers: tuple[LayerCost, LayerCost] | None = None) -> EdgeCost:
    """Final norm, column-parallel LM head and cross-entropy, each strategy with its
    framework's kernels (:func:`framework_head_cost`), and the multi-token-prediction
    modules of a model that has them (:func:`_with_mtp`). ``layers`` are the dense and
    MoE layer costs when the caller has them (:func:`~deepflow.estimate.layer_cost.
    layer_costs`), so that the module's layer is not costed twice."""
    head = select_by_framework(env, lambda framework: framework_head_cost(env, framework))
    if not env.model.mtp_layers:
        return head
    dense, moe = layers if layers is not None else layer_costs(env)
    norm = select_by_framework(
        env, lambda framework: _NormCost(**elementwise_cost(env, final_norm(env.model, framework)))
    )
    return _with_mtp(env, head, norm, moe if env.model.moe is not None else dense)


@dataclass(frozen=True)
class _NormCost:
    fwd: np.ndarray
    bwd: np.ndarray
    wgrad: np.ndarray
    saved: np.ndarray
    params: np.ndarray
    flops: np.ndarray
    kernels: np.ndarray


def framework_head_cost(env: Env, framework: str = DEFAULT_FRAMEWORK) -> EdgeCost:
    """Final norm, column-parallel LM head and cross-entropy as ``framework`` runs them.

    Three all-reduces of one fp32 value per token (max, sum, target logit) run across the
    tensor-parallel group (Shoeybi et al. 2019, sec. 3, "parallel cross-entropy"). The
    memory traffic per logit is the profile's loss kernels
    (:class:`~deepflow.specs.framework.LossImpl`): Megatron's ``_VocabParallelCrossEntropy``
    on fp32 logits, or PyTorch's ``cross_entropy`` on 16-bit or upcast fp32 logits.
    """
    profile = framework_profile(framework)
    loss = profile.loss or framework_profile(DEFAULT_FRAMEWORK).loss
    assert loss is not None, "the default profile describes its loss"
    acc = env.system.accelerator
    tp = env.batch.tp.astype(np.float64)
    h, v = env.model.hidden_size, env.model.vocab_size
    rows = env.tokens
    norm_values = rows * h / env.sp_div
    logits = rows * v / tp
    norm = elementwise_cost(env, final_norm(env.model, framework))
    norm_fwd, norm_bwd = norm["fwd"], norm["bwd"]
    # the output layer is a plain ColumnParallelLinear, not a Transformer Engine layer: it
    # stays in 16 bits under FP8 (Megatron-Core models/gpt/gpt_model.py, output_layer)
    peak, code = env.peak_high, env.precision_high
    # forward, data gradient and weight gradient (both operands MN-major) in one call
    shapes = [(rows, v / tp, h), (rows, h, v / tp), (h, v / tp, rows)]
    head_fwd, dgrad, wgrad = stacked_gemm_times(env, shapes, [False, False, True], peak, code)
    ce_fwd, ce_fwd_kernels = _loss_pass(env, logits, loss, True)
    ce_bwd, ce_bwd_kernels = _loss_pass(env, logits, loss, False)
    small = collective_time(Collective.ALL_REDUCE, rows * 4.0, env.tp_group, env.hierarchy)
    hidden_bytes = env.tokens * h * env.elem
    # the LM head's input is gathered (SP) or its gradient all-reduced (no SP): one half
    # of a tensor-parallel pair each way
    tp_half = 0.5 * tp_pair_time(env, hidden_bytes)
    counts = parameter_count(env.model)
    head_params = (counts.lm_head if counts.lm_head else counts.embedding) / tp
    # fp32 parameters under torch.autocast: the LM head's weight (a tied embedding's too:
    # F.linear casts it, the lookup does not) is cast per forward, its gradient back
    autocast = profile.step is not None and profile.step.autocast_weights
    cast_fwd, cast_bwd, _ = autocast_cast_time(env, autocast, np.asarray(head_params), 1.0)
    # the head's weight gradient is added into the gradient buffer per micro-batch, as the
    # layers' are (layer_cost's accumulation); under autocast the fp32 cast replaces it
    accumulate = np.where(
        autocast & (env.elem < 4.0),
        0.0,
        memory_time(head_params * (2.0 * env.grad_bytes + env.elem), acc, 1),
    )
    forward_compute = norm_fwd + head_fwd + ce_fwd + cast_fwd
    backward_compute = norm_bwd + dgrad + wgrad + ce_bwd + cast_bwd + accumulate
    tp_comm_forward = 3.0 * small + np.where(env.batch.sequence_parallel, tp_half, 0.0)
    loss_reduce = loss_allreduce_time(env)
    # host: the final norm, the LM head GEMM, the loss's kernels and its three all-reduces
    # (called at any tp: _VocabParallelCrossEntropy calls torch.distributed.all_reduce
    # directly), and the loss all-reduce over data parallelism where the loop runs one;
    # backward: the loss's kernels, the norm's, the input- and weight-gradient GEMMs, the
    # gradient accumulation and the input gradient's tp all-reduce (tp > 1)
    fwd_kernels = norm["kernels"] + 1.0 + ce_fwd_kernels + 3.0 + (loss_reduce > 0)
    bwd_kernels = norm["kernels"] + 3.0 + ce_bwd_kernels + (env.batch.tp > 1)
    saved = (
        norm["saved"]
        + norm_values * env.elem
        + logits * (loss.saved_act * env.elem + loss.saved_fp32 * 4.0)
    )
    head = EdgeCost(
        forward_compute=forward_compute,
        backward_compute=backward_compute,
        weight_grad=wgrad,
        tp_comm_forward=tp_comm_forward,
        tp_comm_backward=tp_half,
        host_excess_forward=host_excess(
            env, fwd_kernels, forward_compute + tp_comm_forward + loss_reduce
        ),
        host_excess_backward=host_excess(env, bwd_kernels, backward_compute + tp_half),
        dp_comm_forward=loss_reduce,
        # the final norm's saved tensors, the LM head's input, the loss's saved logits
        saved_activations=saved,
        params=(head_params + counts.final_norm).astype(np.float64),
        forward_flops=2.0 * rows * h * v / tp,
        transient_activations=logits * loss.transient_fp32 * 4.0,
        saved_floor=saved,
    )
    return head


def _with_mtp(env: Env, head: EdgeCost, norm: _NormCost, layer: LayerCost) -> EdgeCost:
    """The last stage's head plus ``model.mtp_layers`` multi-token-prediction modules
    (:attr:`~deepflow.specs.model.ModelSpec.mtp_layers`; Megatron-Core
    ``MultiTokenPredictionBlock`` on the last stage): per module two RMSNorms (the final
    norm's cost each), the column-parallel ``2h -> h`` projection (``eh_proj``), one
    transformer layer with its communication (the MoE layer's expert parameters counted
    with the stage's, sharded over ``ep x expert_tp``), and the shared LM head and loss
    again (the head's cost without its parameters)."""
    d = float(env.model.mtp_layers)
    h = env.model.hidden_size
    tp = env.batch.tp.astype(np.float64)
    rows = env.tokens
    peak, code = env.peak, env.batch.precision
    shapes = [(rows, h / tp, 2 * h), (rows, 2 * h, h / tp), (2 * h, h / tp, rows)]
    proj_fwd, proj_dgrad, proj_wgrad = stacked_gemm_times(
        env, shapes, [False, False, True], peak, code
    )
    module_params = 2.0 * h + 2.0 * h * h / tp + layer.params + layer.expert_params

    def saved(head_saved: np.ndarray, layer_saved: np.ndarray) -> np.ndarray:
        # per module: the head and loss again, a norm, the projection's input, its layer
        return head_saved + d * (
            head_saved + norm.saved + rows * 2.0 * h * env.elem / env.sp_div + layer_saved
        )

    return EdgeCost(
        forward_compute=head.forward_compute
        + d * (head.forward_compute + norm.fwd + proj_fwd + layer.forward_compute),
        backward_compute=head.backward_compute
        + d
        * (
            head.backward_compute
            + norm.bwd
            + proj_dgrad
            + proj_wgrad
            + layer.backward_compute
            + layer.recompute
        ),
        weight_grad=head.weight_grad + d * (head.weight_grad + proj_wgrad + layer.weight_grad),
        tp_comm_forward=head.tp_comm_forward
        + d * (head.tp_comm_forward + layer.forward - layer.forward_compute),
        tp_comm_backward=head.tp_comm_backward
        + d * (head.tp_comm_backward + layer.backward - layer.backward_compute - layer.recompute),
        saved_activations=saved(head.saved_activations, layer.saved_activations),
        params=head.params + d * module_params,
        forward_flops=head.forward_flops
        + d * (head.forward_flops + 2.0 * rows * 2 * h * h / tp + layer.forward_flops),
        transient_activations=head.transient_activations,
        # the modules' heads issue the head's kernels again; one loss is averaged
        host_excess_forward=(1.0 + d) * head.host_excess_forward,
        host_excess_backward=(1.0 + d) * head.host_excess_backward,
        dp_comm_forward=head.dp_comm_forward,
        saved_floor=saved(head.saved_floor, layer.saved_floor),
    )
