"""DeepEP-style expert-parallel dispatch and combine: bytes as DeepEP counts them, and
times from its measured bandwidths.

DeepEP (github.com/deepseek-ai/DeepEP) sends each token once to every *rank* that holds
one of its experts (not once per expert, as an NCCL all-to-all of the permuted tokens
does), and across nodes once to every *node*, then forwards it over NVLink ("normal"
kernels with NVLink and RDMA forwarding, ``docs/legacy.md``). Its benchmarks count
(``tests/test_intranode.py`` and ``tests/test_internode.py``, "For later tuning"):

* NVLink: ``dispatch_bf16_nvl_recv_bytes = recv_x.numel() * 2``, the tokens a rank
  receives from every rank of the group, itself included; combine sends the same;
* RDMA: ``dispatch_bf16_rdma_send_bytes = num_rdma_token_sent * hidden * 2``, the tokens a
  rank sends to other nodes; combine receives the same;
* FP8 dispatch: ``fp8_factor = (1 + 4 / 128) / 2`` of the BF16 bytes (one fp32 scale per
  128 values).

The benchmark routes random scores (``scores = randn().abs() + 1``): internode, limited to
``num_topk_groups`` nodes (the nodes with the highest expert score), then the top-``k``
experts of those nodes; intranode, the top-``k`` of all experts. With symmetric random
scores the ``k`` experts are a uniform ``k``-subset of the allowed experts, so the expected
counts follow from the hypergeometric miss probability ``C(A - a, k) / C(A, k)`` of a
rank (node) holding ``a`` of the ``A`` allowed experts (:func:`hit_probability`), except
that a node chosen among fewer groups than nodes is chosen for its best expert and so is
hit (tests/network/test_deepep.py checks both against the benchmark's routing, 2 %).

Times: ``bytes / bandwidth`` with the bandwidth of each kernel family, architecture and
link fitted from DeepEP's published table by ``scripts/fit_deepep.py`` (geometric mean of
the measured "bottleneck bandwidth" over EP sizes: the measured rates vary by up to 15 %
with EP size and are taken flat), written to ``network/data/deepep.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from math import comb

import yaml

__all__ = [
    "FP8_BYTES",
    "DeepEPTraffic",
    "deepep_bandwidth",
    "deepep_time",
    "deepep_traffic",
    "hit_probability",
]

FP8_BYTES = 1.0 + 4.0 / 128.0
"""Bytes per value of DeepEP's FP8 dispatch: e4m3 values plus an fp32 scale per 128."""


def hit_probability(allowed: int, held: int, top_k: int) -> float:
    """Probability that a uniform ``top_k``-subset of ``allowed`` experts contains at least
    one of ``held`` given ones: ``1 - C(allowed - held, k) / C(allowed, k)``."""
    if held <= 0:
        return 0.0
    if top_k > allowed - held:
        return 1.0
    return 1.0 - comb(allowed - held, top_k) / comb(allowed, top_k)


@dataclass(frozen=True)
class DeepEPTraffic:
    """Expected bytes per rank of one dispatch (or combine): ``nvl`` received over the
    node's NVLink from every rank (itself included), ``rdma`` sent to other nodes."""

    nvl: float
    rdma: float


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
    """Expected bytes per rank as DeepEP's benchmarks count them (module docstring):
    ``tokens`` per rank, ``elem`` bytes per value (:data:`FP8_BYTES` for FP8 dispatch,
    2 for BF16 combine)."""
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
    token_bytes = hidden * elem
    # a rank receives from every rank of the group the tokens routed to it
    nvl = ep * tokens * p_rank * token_bytes
    rdma = tokens * (nodes - 1) * p_node * token_bytes
    return DeepEPTraffic(nvl, rdma)


@cache
def _fits() -> dict[str, dict[str, float]]:
    text = resources.files("deepflow.network").joinpath("data/deepep.yaml").read_text()
    return yaml.safe_load(text)["bandwidth_gbps"]


def deepep_bandwidth(family: str, link: str) -> float:
    """Fitted bandwidth in bytes/s of a kernel ``family`` (``v1-normal-h800``,
    ``v2-sm90``, ``v2-sm100``) on ``link`` (``nvlink`` or ``rdma``)."""
    return _fits()[family][link] * 1e9


def deepep_time(traffic: DeepEPTraffic, family: str, internode: bool) -> float:
    """Time of one dispatch or combine: the bottleneck link's bytes over its fitted
    bandwidth (RDMA across nodes, NVLink inside one)."""
    if internode:
        return traffic.rdma / deepep_bandwidth(family, "rdma")
    return traffic.nvl / deepep_bandwidth(family, "nvlink")
