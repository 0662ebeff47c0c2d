"""Routing load imbalance: the one definition of the busiest expert-parallel rank's load.

``model.moe.routing`` states how the router was balanced; ``model.moe.imbalance``, when
stated, overrides what follows from it:

* ``forced``: Megatron-Core's ``--moe-router-force-load-balancing`` (the benchmarking mode
  of the Megatron-MoE-ModelZoo GB200/GB300 and "forced balance" rows) replaces the router
  logits by standard-normal noise (``moe/moe_utils.py``, ``RandomSTE.forward``:
  ``logits.clone().normal_()``, applied by ``apply_random_logits`` in
  ``moe/router.py``), so every expert expects the same tokens: imbalance 1.
* ``aux_loss``: a learned top-k router kept balanced by an auxiliary load-balancing loss
  (Switch Transformer / GShard; Megatron-Core ``--moe-router-load-balancing-type aux_loss``).
* ``aux_free``: a learned router balanced by the expert-bias update of Wang et al. 2024
  (DeepSeek-V3's auxiliary-loss-free balancing).

For the learned routers the per-expert imbalance is the measured ``MaxVio`` of Wang et al.
2024 (arXiv 2408.15664, Table 2; ``parallel/data/routing.yaml`` with its source): the
busiest of ``E_s = 64`` experts carries ``1 + v`` times the mean. It maps to ranks by a
stated statistical model, not a bound:

    expert loads     L_i = m (1 + c Z_i),  Z_i iid standard normal (expert popularity
                     independent of the expert's index, hence of its rank)
    measured MaxVio  v = c z(E_s),  z(n) = E[max of n iid N(0, 1)]  =>  c = v / z(E_s)
    rank loads       the ``E_loc = E / ep`` experts of a rank (Megatron-Core places experts
                     contiguously, ``local_expert_indices`` in ``moe/moe_layer.py``) sum to
                     R_j = E_loc m (1 + c W_j / sqrt(E_loc)),  W_j iid N(0, 1)
    imbalance        E[max_j R_j] / mean R = 1 + c z(ep) / sqrt(E_loc)
                     = 1 + v z(ep) / (z(E_s) sqrt(E / ep))

(the deviations are taken from the sample mean, as MaxVio is, so the loads' fixed total
costs nothing: ``E[max_i Z_i - mean Z] = z(n)``). Assumptions: the per-expert spread ``c``
of the measured 64-expert, top-6 model carries over to the scenario's router at the same
balancing method; the validation-set ("global") MaxVio is used where a step sees one
micro-batch's routing, whose expected maximum is at least the global one (``E[max] >=
max E``, the maximum being convex), so this is a lower estimate of the learned routing's
imbalance. ``ep = 1`` gives 1 (one rank holds every expert); ``ep = E`` gives
``1 + v z(E) / z(E_s)``, the measured ``1 + v`` at ``E = E_s``.

Within a rank the experts' rows differ too, and a grouped GEMM pads each to whole tiles:
:func:`expert_row_spread` gives one expert's spread in a micro-batch (the popularity ``c``
above and the binomial sampling of the micro-batch's tokens), which
:func:`deepflow.hardware.grouped_tiles.expected_row_tiles` turns into expected tiles. The
rank-level imbalance above leaves the sampling term out (small next to ``c`` for learned
routers; it is what makes one rank busier under forced balance).
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

from deepflow.hardware.grouped_tiles import UnevenRows
from deepflow.specs.model import MoESpec, Routing

__all__ = [
    "busiest_rank_imbalance",
    "expected_normal_max",
    "expert_load",
    "expert_row_spread",
    "expert_spread",
    "rank_imbalance",
    "routing_imbalance",
    "uneven_rows",
]

_GRID = np.linspace(-12.0, 12.0, 24001)
_PHI = np.exp(-0.5 * _GRID**2) / math.sqrt(2.0 * math.pi)
_CDF = 0.5 * (1.0 + np.array([math.erf(x / math.sqrt(2.0)) for x in _GRID]))


@cache
def expected_normal_max(n: int) -> float:
    """``E[max of n iid N(0, 1)]``: ``integral x n phi(x) Phi(x)^(n-1) dx`` (0 for n = 1;
    1/sqrt(pi) for n = 2), summed on a 0.001 grid over ``[-12, 12]``."""
    if n < 1:
        raise ValueError(f"n={n} must be at least 1")
    if n == 1:
        return 0.0
    return float(np.sum(_GRID * n * _PHI * _CDF ** (n - 1)) * (_GRID[1] - _GRID[0]))


@cache
def _measured() -> dict[str, Any]:
    text = resources.files("deepflow.parallel").joinpath("data/routing.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def rank_imbalance(
    maxvio: float, measured_experts: int, num_experts: int, ep: object
) -> np.ndarray:
    """Expected busiest-rank load over the mean, ``1 + v z(ep) / (z(E_s) sqrt(E / ep))``
    (module docstring), for a per-expert ``MaxVio`` ``maxvio`` measured over
    ``measured_experts`` experts, a layer of ``num_experts`` experts over ``ep`` ranks
    (array over strategies)."""
    ep_arr = np.asarray(ep, dtype=np.int64)
    values, inverse = np.unique(ep_arr, return_inverse=True)
    z_ep = np.array([expected_normal_max(int(max(v, 1))) for v in values])[inverse]
    local = np.maximum(num_experts / ep_arr.astype(np.float64), 1.0)
    spread = maxvio / expected_normal_max(measured_experts)
    return (1.0 + spread * z_ep.reshape(ep_arr.shape) / np.sqrt(local)).astype(np.float64)


def routing_imbalance(routing: Routing, num_experts: int, ep: object) -> np.ndarray | float:
    """Default busiest-rank imbalance of ``routing`` (1.0 for forced balance; the measured
    MaxVio of ``parallel/data/routing.yaml`` through :func:`rank_imbalance` otherwise)."""
    if routing is Routing.FORCED:
        return 1.0
    row = _measured()[routing.value]
    return rank_imbalance(float(row["value"]), int(row["num_experts"]), num_experts, ep)


def expert_spread(routing: Routing) -> float:
    """Spread ``c`` of the experts' expected loads around their mean (the module
    docstring's ``L_i = m (1 + c Z_i)``): ``v / z(E_s)`` of the routing's measured MaxVio;
    0 for forced balance, whose random logits give every expert the same expected load."""
    if routing is Routing.FORCED:
        return 0.0
    row = _measured()[routing.value]
    return float(row["value"]) / expected_normal_max(int(row["num_experts"]))


def expert_row_spread(moe: MoESpec, rows: object) -> np.ndarray:
    """Standard deviation of one expert's routed rows in one micro-batch whose experts
    expect ``rows`` rows each on average (array over strategies): the experts' popularity
    spread ``c rows`` (:func:`expert_spread`) and the sampling of the micro-batch's tokens,
    independent of it:

        sigma = sqrt((c rows)^2 + rows (1 - k / E))

    The sampling term: each of the ``N`` tokens routed over the experts picks ``k`` distinct
    ones among ``E``, expert ``i`` with probability ``p_i``, so its count is binomial with
    variance ``N p_i (1 - p_i)``, ``rows (1 - k / E)`` at ``p_i = k / E`` (exact under forced
    balance, whose random logits make every ``k``-subset equally likely: Megatron-Core
    ``RandomSTE`` in ``moe/moe_utils.py``). Experts padded to capacity all carry the
    capacity: 0. This is the spread :func:`deepflow.hardware.grouped_tiles.
    expected_row_tiles` turns into the grouped GEMMs' padded row tiles."""
    r = np.maximum(np.asarray(rows, dtype=np.float64), 0.0)
    if moe.pad_to_capacity:
        return np.zeros_like(r)
    c = expert_spread(moe.routing)
    p = moe.top_k / moe.num_experts
    return np.sqrt((c * r) ** 2 + r * (1.0 - p))


def busiest_rank_imbalance(moe: MoESpec, ep: object) -> np.ndarray | float:
    """The busiest rank's routed tokens over the mean before any capacity cap: the stated
    ``imbalance``, else the routing's default (:func:`routing_imbalance`)."""
    if moe.imbalance is not None:
        return moe.imbalance
    return routing_imbalance(moe.routing, moe.num_experts, ep)


def expert_load(moe: MoESpec, ep: object) -> np.ndarray | float:
    """Routed tokens the busiest rank's experts compute, over the balanced mean
    (:meth:`MoESpec.capped_load` of :func:`busiest_rank_imbalance`)."""
    return moe.capped_load(busiest_rank_imbalance(moe, ep))


def uneven_rows(moe: MoESpec, ep: object, balanced: object) -> UnevenRows:
    """One local expert's rows on the busiest rank, for experts that expect ``balanced``
    rows each at balance (arrays over strategies): normal around the rank's imbalance
    times ``balanced``, of spread :func:`expert_row_spread` (at ``balanced``), cut at
    ``capacity_factor x balanced`` when tokens are dropped; exactly the capacity when padded
    to it. The grouped GEMMs pad each to whole tiles
    (:func:`deepflow.hardware.grouped_tiles.expected_row_tiles`)."""
    b = np.asarray(balanced, dtype=np.float64)
    spread = expert_row_spread(moe, b)
    if moe.capacity_factor is None:
        return UnevenRows(b * busiest_rank_imbalance(moe, ep), spread)
    cap = b * moe.capacity_factor
    if moe.pad_to_capacity:
        return UnevenRows(cap, spread)  # spread 0: every expert holds the capacity
    return UnevenRows(b * busiest_rank_imbalance(moe, ep), spread, cap)
