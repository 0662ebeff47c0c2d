"""DeepEP-style expert-parallel dispatch and combine: bytes as DeepEP moves and counts them,
and times from its measured bandwidths.

DeepEP (github.com/deepseek-ai/DeepEP dd758ca) sends each token once to every *rank* that
holds one of its experts (not once per expert, as an NCCL all-to-all of the permuted tokens
does), and across nodes once to every *node*, then forwards it over NVLink ("normal"
kernels with NVLink and RDMA forwarding, ``docs/legacy.md``). Two byte counts are kept:

*Counted* bytes, as its benchmarks report bandwidth (``tests/legacy/test_internode.py``,
``test_main``, and ``tests/elastic/test_ep.py``; the V2 README's note "the results are
logical bandwidth ... contains local rank traffic"):

* NVLink: ``dispatch_bf16_nvl_recv_bytes = recv_x.numel() * 2``, the tokens a rank
  receives from every rank of the group, itself included; combine sends the same;
* RDMA: ``dispatch_bf16_rdma_send_bytes = num_rdma_token_sent * hidden * 2`` with
  ``num_rdma_token_sent`` the (token, destination node) pairs, the rank's *own node
  included*; combine receives the same;
* FP8 dispatch: ``fp8_factor = (1 + 4 / 128) / 2`` of the BF16 bytes (one fp32 scale per
  128 values).

*Moved* bytes, what crosses each link: the internode dispatch kernel
(``csrc/kernels/legacy/internode.cu``, ``dispatch``, RDMA sender warps) issues
``nvshmemi_ibgda_put_nbi_warp`` only ``if (dst_rdma_rank != rdma_rank)`` and keeps the own
node's tokens local ("Lighter fence for local RDMA rank"), so RDMA carries the tokens sent
to the other ``nodes - 1`` nodes; a token reaches its destination rank through the rank
of the same local index on the destination node (RDMA receiver and NVLink forwarder), so
NVLink carries the tokens from the ``ep - nodes`` sources of another local index (intranode,
``ep - 1``). With EP over ``n`` nodes and every node allowed, a fraction ``(n - 1) / n`` of
a rank's node-sends go over RDMA: DeepEP's counted RDMA bandwidth is ``n / (n - 1)`` times
the link's, which is why its table's RDMA rates move with EP size (43 GB/s at EP 16 and
58 at EP 32 on V1) while the moved-byte rate stays near 44 GB/s.

The benchmark routes random scores (``scores = randn().abs() + 1``): internode, limited to
``num_topk_groups`` nodes (the nodes with the highest expert score), then the top-``k``
experts of those nodes; intranode, the top-``k`` of all experts. With symmetric random
scores the ``k`` experts are a uniform ``k``-subset of the allowed experts, so the expected
counts follow from the hypergeometric miss probability ``C(A - a, k) / C(A, k)`` of a
rank (node) holding ``a`` of the ``A`` allowed experts (:func:`hit_probability`), except
that a node chosen among fewer groups than nodes is chosen for its best expert and so is
hit (tests/network/test_deepep.py checks both against the benchmark's routing, 2 %).

Time (:func:`deepep_time`): the slower link, ``max(rdma / B_rdma, nvl / B_nvl)`` over the
moved bytes, the NVLink forwarding and the RDMA sends running concurrently in one kernel.
``B`` per kernel family and link is fitted from DeepEP's published table by
``scripts/fit_deepep.py`` and written to ``network/data/deepep.yaml``. DeepEP's table has no
NVLink rate for V2 on SM90; that family's time is its RDMA term only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import yaml

__all__ = [
    "FP8_BYTES",
    "DeepEPTraffic",
    "deepep_bandwidth",
    "deepep_families",
    "deepep_link_efficiency",
    "deepep_time",
    "deepep_traffic",
    "dispatch_time",
    "hit_probabilities",
    "hit_probability",
]

FP8_BYTES = 1.0 + 4.0 / 128.0
"""Bytes per value of DeepEP's FP8 dispatch: e4m3 values plus an fp32 scale per 128."""


def hit_probabilities(allowed: object, held: object, top_k: int) -> np.ndarray:
    """Probability that a uniform ``top_k``-subset of ``allowed`` experts contains at least
    one of ``held`` given ones: ``1 - C(allowed - held, k) / C(allowed, k)``, as the
    product ``1 - prod_{i<k} (allowed - held - i) / (allowed - i)`` (arrays broadcast)."""
    a = np.asarray(allowed, dtype=np.float64)
    m = np.asarray(held, dtype=np.float64)
    miss = np.ones(np.broadcast(a, m).shape)
    for i in range(top_k):
        miss = miss * np.maximum(a - m - i, 0.0) / np.maximum(a - i, 1.0)
    return np.where(m > 0, 1.0 - miss, 0.0)


def hit_probability(allowed: int, held: int, top_k: int) -> float:
    """:func:`hit_probabilities` of one rank (node)."""
    return float(hit_probabilities(allowed, held, top_k))


@dataclass(frozen=True)
class DeepEPTraffic:
    """Expected bytes per rank of one dispatch (or combine). Moved: ``nvl`` received over
    the node's NVLink from other ranks, ``rdma`` sent to other nodes. Counted as DeepEP's
    benchmarks report them: ``nvl_counted`` received from every rank (itself included),
    ``rdma_counted`` sent to every selected node (its own included)."""

    nvl: float
    rdma: float
    nvl_counted: float
    rdma_counted: float


def deepep_traffic(
    tokens: int,
    hidden: int,
    top_k: int,
    experts: int,
    ep: int,
    per_node: int,
    topk_groups: int,
    elem: float,
) -> DeepEPTraffic:
    """Expected bytes per rank (module docstring): ``tokens`` per rank, ``elem`` bytes per
    value (:data:`FP8_BYTES` for FP8 dispatch, 2 for BF16 combine)."""
    local = min(ep, per_node)
    nodes = max(1, ep // local)
    groups = min(topk_groups, nodes) if nodes > 1 else 1
    allowed = experts * groups // nodes
    selected = groups / nodes  # a node is among the token's groups
    p_rank = selected * hit_probability(allowed, experts // ep, top_k)
    if groups < nodes and top_k >= groups:
        # a node is selected for its best expert, which then ranks among the token's
        # top-k (all but a fraction of a percent of the time: the Monte Carlo test)
        p_node = selected
    else:
        p_node = selected * hit_probability(allowed, experts // nodes, top_k)
    token_bytes = tokens * hidden * elem
    # a rank receives from every rank of the group the tokens routed to it; those from
    # the ``nodes`` sources of its own local index arrive without an NVLink hop
    per_source = p_rank * token_bytes
    return DeepEPTraffic(
        nvl=(ep - nodes) * per_source,
        rdma=(nodes - 1) * p_node * token_bytes,
        nvl_counted=ep * per_source,
        rdma_counted=nodes * p_node * token_bytes if nodes > 1 else 0.0,
    )


@cache
def _table() -> dict[str, dict[str, dict[str, float]]]:
    text = resources.files("deepflow.network").joinpath("data/deepep.yaml").read_text()
    return yaml.safe_load(text)


def _fits() -> dict[str, dict[str, float]]:
    return _table()["bandwidth_gbps"]


def deepep_families() -> tuple[str, ...]:
    """The fitted kernel families."""
    return tuple(_fits())


def deepep_bandwidth(family: str, link: str) -> float | None:
    """Fitted moved-byte bandwidth in bytes/s of a kernel ``family`` (``v1-normal-h800``,
    ``v2-sm90``, ``v2-sm100``) on ``link`` (``nvlink`` or ``rdma``); None where DeepEP's
    table has no row for that link."""
    gbps = _fits()[family].get(link)
    return None if gbps is None else gbps * 1e9


def deepep_time(traffic: DeepEPTraffic, family: str) -> float:
    """Time of one dispatch or combine: the slower link's moved bytes over its fitted
    bandwidth (links without a fitted rate are left out)."""
    t = 0.0
    for moved, link in ((traffic.rdma, "rdma"), (traffic.nvl, "nvlink")):
        bw = deepep_bandwidth(family, link)
        if moved > 0.0 and bw is not None:
            t = max(t, moved / bw)
    return t


STEP_FAMILY = "v1-normal-h800"
"""The kernels a training step runs: Megatron-Core's flex dispatcher with the DeepEP
backend calls ``deep_ep.Buffer.dispatch``/``combine`` (the V1 "normal" kernels;
``megatron/core/transformer/moe/fused_a2a.py``, ``FusedDispatch``/``FusedCombine``)."""


def deepep_link_efficiency(family: str, link: str) -> float:
    """The fitted bandwidth of ``family`` on ``link`` over the benchmark system's nominal
    per-direction rate of that link (``nominal_gbps`` in ``network/data/deepep.yaml``)."""
    return _table()["efficiency"][family][link]


def dispatch_time(
    tokens: object,
    hidden: int,
    top_k: int,
    experts: int,
    ep: object,
    per_domain: object,
    domains: object,
    elem: float,
    scale_up_bandwidth: float,
    scale_out_bandwidth: float,
    load: float | np.ndarray = 1.0,
    family: str = STEP_FAMILY,
) -> np.ndarray:
    """Time of one DeepEP dispatch (or combine, the same bytes back) in a training step,
    per rank (arrays broadcast, for batch evaluation).

    The moved bytes of :func:`deepep_traffic` with every node allowed (no node-limited
    routing) for an EP group of ``ep`` ranks, ``per_domain`` of them in each of ``domains``
    scale-up domains, times the busiest rank's ``load``; each link at the fitted DeepEP
    efficiency (:func:`deepep_link_efficiency`) of the system's per-direction bandwidth;
    the slower link sets the time."""
    n = np.asarray(ep, dtype=np.float64)
    nodes = np.asarray(domains, dtype=np.float64)
    local_experts = experts / n
    p_rank = hit_probabilities(experts, local_experts, top_k)
    p_node = hit_probabilities(experts, local_experts * np.asarray(per_domain), top_k)
    token_bytes = np.asarray(tokens, dtype=np.float64) * hidden * elem * load
    nvl = (n - nodes) * p_rank * token_bytes
    rdma = (nodes - 1.0) * p_node * token_bytes
    b_nvl = deepep_link_efficiency(family, "nvlink") * scale_up_bandwidth
    b_rdma = deepep_link_efficiency(family, "rdma") * scale_out_bandwidth
    return np.maximum(nvl / b_nvl, rdma / b_rdma)
