"""Sharded data parallelism: the one definition of who holds which state and what moves.

Every consumer (the closed-form estimator, the simulator's lowering, the ASTRA-sim export)
takes its data-parallel memory terms and collectives from here, so that a volume is
written once. Arrays broadcast over a batch of strategies.

**Groups.** Gradients of the non-expert weights are reduced over the data-parallel ranks
*and* the context-parallel ranks, which hold the same weights and see other tokens
(Megatron-Core ``parallel_state.get_data_parallel_group(with_context_parallel=True)``; its
distributed optimizer shards over that group). Expert parallelism is carved out of the same
``tp x cp x dp`` ranks of a stage, refolded as ``expert_tp x ep x expert-dp``
(Megatron-Core's MoE parallel folding, :mod:`deepflow.parallel.experts`: the expert
data-parallel size is ``tp * cp * dp / (ep * expert_tp)``, ``dp * cp / ep`` when
``expert_tp = tp``). State is sharded over a *shard group* of
``shard_degree`` consecutive ranks of that group (default: all of it) and replicated across
the ``replicas = dp * cp / shard_degree`` shard groups: hybrid sharding (PyTorch FSDP
``ShardingStrategy.HYBRID_SHARD``, FSDP2 ``fully_shard(mesh=2-D)``; Megatron-Core
``num_distributed_optimizer_instances``).

**What is sharded** (Rajbhandari et al. 2020, ZeRO, sec. 5): ``zero >= 1`` the optimizer
state, ``>= 2`` the gradients, ``3`` the parameters too (PyTorch FSDP FULL_SHARD, DeepSpeed
ZeRO-3, Megatron-FSDP ``optim_grads_params``).

**What moves, per step** (sizes are full buffers, as :func:`~deepflow.network.collectives.
collective_time` takes them: the gathered output of an all-gather, the input of a
reduce-scatter):

* ``zero`` 0: all-reduce of the gradients over ``dp x cp`` (PyTorch DDP, Megatron DDP).
* ``zero`` 1 and 2: reduce-scatter of the gradients over the shard group, all-reduce of the
  ``1/shard`` slice over the replicas, all-gather of the updated *parameters* in the
  parameter precision (Megatron-Core ``DistributedOptimizer``: the gathered buffer is the
  16-bit ``param_data``; ``overlap_param_gather`` dispatches the gathers at the start of the
  next step's forward pass, bucket by bucket).
* ``zero`` 3, per unit (a transformer layer: PyTorch FSDP's ``transformer_auto_wrap_policy``,
  DeepSpeed's per-module gathers) and per micro-batch: an all-gather of the unit's
  parameters before its forward and again before its backward (unless
  ``reshard_after_forward`` is false: FSDP ``SHARD_GRAD_OP``, FSDP2
  ``reshard_after_forward=False``), then a reduce-scatter of its gradients, and with
  replicas an all-reduce of the gradient shard (Zhao et al. 2023, PyTorch FSDP, VLDB,
  sec. 3.2-3.3 and 4.2). Gathers run in the parameter precision
  (``MixedPrecision.param_dtype``), reductions in the gradient precision
  (``reduce_dtype``; Megatron's ``grad_reduce_in_fp32``): ``param_bytes`` and
  ``grad_bytes`` here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from deepflow.network.collectives import collective_time
from deepflow.network.hierarchy import (
    GroupPlacement,
    Hierarchy,
    one_element,
    one_float,
    place_group,
    read_only,
    scalar_placement,
)
from deepflow.network.ops import Algorithm, Collective
from deepflow.network.programs import ProgramAlgorithm
from deepflow.network.xp import asarray, f64, select
from deepflow.parallel.experts import ExpertGroups
from deepflow.specs.identity import IdentityCache

__all__ = [
    "DataParallelGroups",
    "SyncCollective",
    "data_parallel_groups",
    "inner_subgroup",
    "outer_subgroup",
    "sharded_state",
    "step_sync",
    "sync_time",
    "unit_backward",
    "unit_buffers",
    "unit_forward",
]


def inner_subgroup(parent: GroupPlacement, size: object) -> GroupPlacement:
    """The first ``size`` consecutive members of ``parent`` (a contiguous block of its
    ranks): as many of them share a scale-up domain as the parent packs into one."""
    n = np.asarray(size, dtype=np.float64)
    m = np.minimum(n, parent.members_per_domain)
    return GroupPlacement(n, m, np.ceil(n / np.maximum(m, 1.0)))


def outer_subgroup(parent: GroupPlacement, inner: object) -> GroupPlacement:
    """Members of ``parent`` ``inner`` positions apart (one per block of ``inner``)."""
    i = np.asarray(inner, dtype=np.float64)
    n = parent.size / np.maximum(i, 1.0)
    m = np.minimum(n, np.maximum(1.0, np.floor(parent.members_per_domain / np.maximum(i, 1.0))))
    return GroupPlacement(n, m, np.ceil(n / np.maximum(m, 1.0)))


@dataclass(frozen=True)
class DataParallelGroups:
    """The communicators of sharded data parallelism (arrays over strategies).

    ``grad``: all ``dp x cp`` ranks; ``shard`` and ``replica``: its shard groups and the
    groups of equal shards across them. ``expert_*``: the same for expert weights, over the
    ``dp x cp / ep`` ranks that hold the same experts. ``ep``: the expert-parallel group
    (innermost ``ep`` ranks of ``dp x cp``).
    """

    grad: GroupPlacement
    shard: GroupPlacement
    replica: GroupPlacement
    ep: GroupPlacement
    expert_grad: GroupPlacement
    expert_shard: GroupPlacement
    expert_replica: GroupPlacement

    @property
    def shard_size(self) -> np.ndarray:
        return self.shard.size

    @property
    def expert_shard_size(self) -> np.ndarray:
        return self.expert_shard.size


def data_parallel_groups(
    dp: object,
    cp: object,
    ep: object,
    shard_degree: object,
    stride_dp: object,
    stride_cp: object,
    scale_up_size: int,
    experts: ExpertGroups | None = None,
) -> DataParallelGroups:
    """Place the data-parallel communicators of each strategy.

    ``experts`` (:func:`deepflow.parallel.experts.expert_groups`) gives the folded
    expert-parallel and expert-data-parallel groups; without it expert parallelism takes
    the innermost ``ep`` ranks of ``dp x cp`` (``expert_tp = tp``).

    ``shard_degree`` 0 means the whole ``dp x cp`` group. The ``dp x cp`` group packs the
    members of both axes that share a scale-up domain (exact when the axes nest, as the mesh
    order makes them). With replicas, the expert state is sharded over ``dp x cp / ep /
    replicas`` ranks when that divides, else over all ``dp x cp / ep`` (no expert replicas).
    """
    dp_a = np.asarray(dp, dtype=np.float64)
    cp_a = np.asarray(cp, dtype=np.float64)
    ep_a = np.asarray(ep, dtype=np.float64)
    p_dp = place_group(dp_a, stride_dp, scale_up_size)
    p_cp = place_group(cp_a, stride_cp, scale_up_size)
    n = dp_a * cp_a
    m = np.minimum(n, p_dp.members_per_domain * p_cp.members_per_domain)
    grad = GroupPlacement(n, m, np.ceil(n / m))
    sd = np.asarray(shard_degree, dtype=np.float64)
    shard_n = np.where(sd > 0, np.minimum(sd, n), n)
    shard = inner_subgroup(grad, shard_n)
    replica = outer_subgroup(grad, shard_n)
    if experts is None:
        ep_group = inner_subgroup(grad, ep_a)
        expert_grad = outer_subgroup(grad, ep_a)
    else:
        ep_group, expert_grad = experts.ep, experts.edp
    reps = replica.size
    edp = expert_grad.size
    expert_reps = np.where(np.mod(edp, reps) == 0, reps, 1.0)
    expert_shard = inner_subgroup(expert_grad, edp / expert_reps)
    expert_replica = outer_subgroup(expert_grad, edp / expert_reps)
    return DataParallelGroups(
        grad, shard, replica, ep_group, expert_grad, expert_shard, expert_replica
    )


def sharded_state(
    params: object, expert_params: object, zero: object, level: int, groups: DataParallelGroups
) -> np.ndarray:
    """Elements of a state kept per rank: ``params`` (non-expert) and ``expert_params``
    divided over their shard groups where ``zero >= level`` (1: optimizer state, 2:
    gradients, 3: parameters)."""
    on = asarray(zero) >= level
    p = select(on, asarray(params) / groups.shard_size, params)
    e = select(on, asarray(expert_params) / groups.expert_shard_size, expert_params)
    return p + e


@dataclass(frozen=True)
class SyncCollective:
    """One data-parallel collective: ``op`` on ``size`` bytes over the group named
    ``group`` (an attribute of :class:`DataParallelGroups`); ``phase`` says where it runs:
    ``"backward"`` (hidden behind the backward pass, bucket by bucket), ``"forward"``
    (before a unit's forward, or at the start of the next step's forward),
    ``"after_backward"`` (after the backward pass, before the optimizer)."""

    op: Collective
    size: np.ndarray
    group: str
    phase: str
    label: str


def step_sync(
    params: object,
    expert_params: object,
    zero: object,
    groups: DataParallelGroups,
    param_bytes: object,
    grad_bytes: object,
) -> tuple[SyncCollective, ...]:
    """Collectives at the end of a step for ZeRO 0-2 over a stage's ``params`` and
    ``expert_params`` (elements on this rank); sizes are zero where they do not apply
    (``zero`` 3 reduces per unit, :func:`unit_backward`)."""
    z = asarray(zero)
    p, e, gb, pb = f64(params), f64(expert_params), f64(grad_bytes), f64(param_bytes)
    plain = z == 0
    sharded = (z == 1) | (z == 2)
    out = []
    for elems, shard, (grad_ar, grad_rs, replica_ar, param_ag) in (
        (p, groups.shard, _STEP_SYNC_NAMES[""]),
        (e, groups.expert_shard, _STEP_SYNC_NAMES["expert_"]),
    ):
        grad = elems * gb
        out += [
            SyncCollective(Collective.ALL_REDUCE, select(plain, grad, 0.0), *grad_ar),
            SyncCollective(Collective.REDUCE_SCATTER, select(sharded, grad, 0.0), *grad_rs),
            SyncCollective(
                Collective.ALL_REDUCE, select(sharded, grad / shard.size, 0.0), *replica_ar
            ),
            SyncCollective(Collective.ALL_GATHER, select(sharded, elems * pb, 0.0), *param_ag),
        ]
    return tuple(out)


_STEP_SYNC_NAMES = {
    prefix: (
        (f"{prefix}grad", "backward", f"{prefix}grad all-reduce"),
        (f"{prefix}shard", "backward", f"{prefix}grad reduce-scatter"),
        (f"{prefix}replica", "backward", f"{prefix}grad replica all-reduce"),
        (f"{prefix}shard", "forward", f"{prefix}param all-gather"),
    )
    for prefix in ("", "expert_")
}
"""Group, phase and label of :func:`step_sync`'s four collectives, of the dense parameters
(prefix ``""``) and of the experts' (``"expert_"``)."""


def unit_forward(
    params: object, expert_params: object, zero: object, param_bytes: object
) -> tuple[SyncCollective, ...]:
    """ZeRO-3 collectives before one unit's forward pass (one micro-batch)."""
    on = np.asarray(zero) >= 3
    pb = np.asarray(param_bytes, dtype=np.float64)
    return (
        SyncCollective(
            Collective.ALL_GATHER,
            np.where(on, np.asarray(params) * pb, 0.0),
            "shard",
            "forward",
            "param all-gather",
        ),
        SyncCollective(
            Collective.ALL_GATHER,
            np.where(on, np.asarray(expert_params) * pb, 0.0),
            "expert_shard",
            "forward",
            "expert param all-gather",
        ),
    )


def unit_backward(
    params: object,
    expert_params: object,
    zero: object,
    reshard_after_forward: object,
    groups: DataParallelGroups,
    param_bytes: object,
    grad_bytes: object,
) -> tuple[SyncCollective, ...]:
    """ZeRO-3 collectives of one unit's backward pass (one micro-batch): the parameter
    gather again (when resharded after forward), the gradient reduce-scatter, and with
    replicas the all-reduce of the gradient shard."""
    on = np.asarray(zero) >= 3
    regather = on & np.asarray(reshard_after_forward, dtype=bool)
    pb = np.asarray(param_bytes, dtype=np.float64)
    gb = np.asarray(grad_bytes, dtype=np.float64)
    p = np.asarray(params, dtype=np.float64)
    e = np.asarray(expert_params, dtype=np.float64)
    return (
        SyncCollective(
            Collective.ALL_GATHER, np.where(regather, p * pb, 0.0), "shard", "backward",
            "param all-gather",
        ),
        SyncCollective(
            Collective.ALL_GATHER, np.where(regather, e * pb, 0.0), "expert_shard",
            "backward", "expert param all-gather",
        ),
        SyncCollective(
            Collective.REDUCE_SCATTER, np.where(on, p * gb, 0.0), "shard", "backward",
            "grad reduce-scatter",
        ),
        SyncCollective(
            Collective.REDUCE_SCATTER, np.where(on, e * gb, 0.0), "expert_shard", "backward",
            "expert grad reduce-scatter",
        ),
        SyncCollective(
            Collective.ALL_REDUCE, np.where(on, p * gb / groups.shard.size, 0.0), "replica",
            "backward", "grad replica all-reduce",
        ),
        SyncCollective(
            Collective.ALL_REDUCE,
            np.where(on, e * gb / groups.expert_shard.size, 0.0),
            "expert_replica",
            "backward",
            "expert grad replica all-reduce",
        ),
    )  # fmt: skip


def unit_buffers(
    unit_params: object,
    stage_params: object,
    zero: object,
    reshard_after_forward: object,
    groups: DataParallelGroups,
    param_bytes: object,
    grad_bytes: object,
) -> np.ndarray:
    """Bytes of the unsharded buffers of ZeRO-3 on one rank.

    Two units' gathered parameters are live at once (the one computing and the one
    prefetched: FSDP ``forward_prefetch`` / ``BackwardPrefetch.BACKWARD_PRE``, FSDP2's
    default of one unit ahead; DeepSpeed's prefetch bucket holds at least a layer), plus one
    unit's unsharded gradient before its reduce-scatter. ``unit_params`` is the largest unit
    of the stage. Without resharding after forward, every unit of the stage stays gathered
    from its forward to its backward: the stage's unsharded parameters less the shard.
    """
    on = np.asarray(zero) >= 3
    u = np.asarray(unit_params, dtype=np.float64)
    pb = np.asarray(param_bytes, dtype=np.float64)
    gb = np.asarray(grad_bytes, dtype=np.float64)
    kept = np.where(
        np.asarray(reshard_after_forward, dtype=bool),
        0.0,
        np.asarray(stage_params) * pb * (1.0 - 1.0 / groups.shard_size),
    )
    return np.where(on, u * (2.0 * pb + gb) + kept, 0.0)


def _one_element(c: SyncCollective, groups: DataParallelGroups) -> bool:
    """True when ``c``'s size and its group are one-element float64 arrays."""
    return one_float(c.size) and one_element(getattr(groups, c.group))


def _scalar(c: SyncCollective, groups: DataParallelGroups) -> bool:
    """True when ``c``'s size and its group are NumPy float64 scalars."""
    g = getattr(groups, c.group)
    return all(type(a) is np.float64 for a in (c.size, g.size, g.members_per_domain, g.domains))


def _scalar_groups_of(groups: DataParallelGroups) -> DataParallelGroups:
    return DataParallelGroups(*(scalar_placement(getattr(groups, n)) for n in _GROUP_NAMES))


_GROUP_NAMES = tuple(f.name for f in fields(DataParallelGroups))
_SCALAR_GROUPS = IdentityCache(_scalar_groups_of, maxsize=256)


def scalar_groups(groups: DataParallelGroups) -> DataParallelGroups:
    """The groups of one strategy (every placement a one-element float64 array) as NumPy
    scalars, so that :func:`step_sync`, :func:`sharded_state` and :func:`sync_time` run
    their lines on one number each (:mod:`deepflow.network.xp`); kept per object where
    its arrays are read-only (the groups kept per mesh, :mod:`deepflow.estimate.context`)."""
    if all([read_only(getattr(groups, n)) for n in _GROUP_NAMES]):
        return _SCALAR_GROUPS(groups)
    return _scalar_groups_of(groups)


def sync_time(
    collectives: tuple[SyncCollective, ...],
    groups: DataParallelGroups,
    hierarchy: Hierarchy,
    algorithm: Algorithm | ProgramAlgorithm = Algorithm.RING,
    phase: str | None = None,
) -> np.ndarray:
    """Summed time of ``collectives`` (those of ``phase`` only, when given), each on its
    group, run one after another on the data-parallel channel.

    For one strategy on the ring the same lines run on NumPy scalars
    (:mod:`deepflow.network.xp`): where every size and group is a float64 scalar
    (:func:`scalar_groups`) the sum is that scalar; where each is a one-element array the
    sum comes back as a one-element array. The same bits either way, without the array
    machinery of each operation."""
    chosen = [c for c in collectives if phase is None or c.phase == phase]
    if algorithm is Algorithm.RING and chosen:
        scalars = all([_scalar(c, groups) for c in chosen])
        if scalars or all([_one_element(c, groups) for c in chosen]):
            total = np.float64(0.0)
            for c in chosen:
                size = c.size if scalars else c.size[0]
                if not size > 0:  # moves nothing
                    continue
                group = getattr(groups, c.group)
                group = group if scalars else scalar_placement(group)
                total = total + collective_time(c.op, size, group, hierarchy, algorithm)
            return total if scalars else np.full(1, total)
    total = np.zeros(())
    for c in chosen:
        group = getattr(groups, c.group)
        moves = np.asarray(c.size > 0)
        if not (bool(moves) if moves.size == 1 else moves.any()):
            # nothing to move anywhere: zeros of the collective's shape (nothing to add where
            # the running total has that shape already)
            inputs = (c.size, group.size, group.members_per_domain, group.domains)
            shapes = {getattr(a, "shape", ()) for a in inputs}
            if not shapes <= {(), total.shape}:
                total = total + np.zeros(np.broadcast(*inputs).shape)
            continue
        t = collective_time(c.op, c.size, group, hierarchy, algorithm)
        total = total + np.where(moves, t, 0.0)
    return total
