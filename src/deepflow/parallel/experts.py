"""Expert-parallel folding: the one definition of the MoE layers' parallel grid.

Megatron-Core builds the MoE layers' communicators from a second rank generator over the
same ranks as the dense layers (``megatron/core/parallel_state.py``,
``initialize_model_parallel``; "MoE parallel folding", Liu et al. 2025, arXiv 2504.14960)::

    expert_tensor_parallel_size  (default: tensor_model_parallel_size)
    expert_data_parallel_size = world // (expert_tp * expert_model_parallel_size * pp)
    RankGenerator(tp=expert_tp, ep=ep, dp=expert_data_parallel_size, pp=pp, order=order)

With the default order ``tp-cp-ep-dp-pp`` the expert grid is ``etp-ep-edp-pp`` innermost
first: the ``tp * cp * dp`` ranks of one pipeline stage are refolded as
``etp x ep x edp``, so an expert-parallel group takes ``ep`` ranks ``etp`` apart. EP 8
with ETP 1 is eight consecutive ranks (one 8-GPU node) whatever ``tp`` and ``cp`` are;
without folding (ETP = TP) it is ``ep`` ranks ``tp`` apart, which spans nodes once
``tp * ep`` exceeds the node.

``ep * etp`` must divide ``tp * cp * dp`` (the ``ValueError`` of ``initialize_model_parallel``
when the world is not divisible by ``etp * ep * pp``): :data:`FOLD_RULE`. The estimator
(:mod:`deepflow.estimate.context`), the sharding of expert state
(:func:`deepflow.parallel.sharding.data_parallel_groups`) and the feasibility rules take
the groups and the degree from here.

Placement on the network: the stage's ranks are consecutive when ``pp`` is the outermost
mesh axis (the default ``axis_order``), so the expert axes get strides ``1``, ``etp`` and
``etp * ep``; with ``pp`` innermost they are ``pp`` times that. Other orders that put
``pp`` between dense axes are placed as if the stage were consecutive (an approximation,
stated here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepflow.network.hierarchy import GroupPlacement, place_group
from deepflow.specs.strategy import FOLD_RULE, folds

__all__ = [
    "FOLD_RULE",
    "ExpertGroups",
    "alltoall_bytes",
    "expert_data_parallel",
    "expert_groups",
    "folds",
]


def expert_data_parallel(tp: object, cp: object, dp: object, ep: object, etp: object) -> np.ndarray:
    """The expert-data-parallel degree ``tp * cp * dp / (ep * etp)`` (float; integral where
    :func:`folds` holds): the ranks that hold the same experts and reduce their
    gradients together (Megatron-Core ``get_expert_data_parallel_group``)."""
    dense = np.asarray(tp, dtype=np.float64) * np.asarray(cp) * np.asarray(dp)
    return dense / (np.asarray(ep, dtype=np.float64) * np.asarray(etp))


@dataclass(frozen=True)
class ExpertGroups:
    """Placed communicators of the MoE layers (arrays over strategies): ``etp`` the
    expert tensor-parallel group, ``ep`` the expert-parallel group (dispatch and combine
    all-to-alls), ``edp`` the expert-data-parallel group (expert gradient reduction and
    distributed-optimizer sharding)."""

    etp: GroupPlacement
    ep: GroupPlacement
    edp: GroupPlacement


def expert_groups(
    tp: object,
    cp: object,
    dp: object,
    pp: object,
    ep: object,
    etp: object,
    stride_pp: object,
    scale_up_size: int,
) -> ExpertGroups:
    """Place the expert grid ``etp-ep-edp`` of each strategy on the hierarchy (module
    docstring): consecutive inside a pipeline stage, ``pp`` apart when ``pp`` is the
    innermost mesh axis (``stride_pp`` 1)."""
    ep_a = np.asarray(ep, dtype=np.float64)
    etp_a = np.asarray(etp, dtype=np.float64)
    base = np.where(np.asarray(stride_pp) == 1, np.asarray(pp, dtype=np.float64), 1.0)
    edp = expert_data_parallel(tp, cp, dp, ep, etp)
    return ExpertGroups(
        etp=place_group(etp_a, base, scale_up_size),
        ep=place_group(ep_a, base * etp_a, scale_up_size),
        edp=place_group(edp, base * etp_a * ep_a, scale_up_size),
    )


def alltoall_bytes(tokens: object, top_k: object, hidden: object, elem: object) -> np.ndarray:
    """Bytes one rank sends in one expert-parallel all-to-all with balanced routing:
    ``top_k`` copies of each of its ``tokens`` (one per routed expert), ``hidden`` values
    of ``elem`` bytes each (GShard, Lepikhin et al. 2020, sec. 3.2; Megatron-Core
    ``MoEAlltoAllTokenDispatcher``: the permuted tokens are ``tokens * top_k`` rows). The
    share addressed to the rank itself stays local; the collective's cost model takes the
    ``(n - 1) / n`` that moves."""
    return (
        np.asarray(tokens, dtype=np.float64)
        * np.asarray(top_k, dtype=np.float64)
        * np.asarray(hidden, dtype=np.float64)
        * np.asarray(elem, dtype=np.float64)
    )
