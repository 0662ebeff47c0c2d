"""DeepEP dispatch/combine: DeepEP's byte accounting and its measured bandwidths (issue 14)."""

import csv
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.network.deepep import (
    FP8_BYTES,
    deepep_bandwidth,
    deepep_time,
    deepep_traffic,
    hit_probability,
)


def table():
    path = resources.files("deepflow.hardware") / "data/microbenchmarks/deepep/dispatch_combine.csv"
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def family(r):
    if r["deepep_version"].startswith("V1"):
        return "v1-normal-h800" if r["kernel_type"].startswith("normal") else None
    return "v2-sm100" if "SM100" in r["accelerator"] else "v2-sm90"


def errors():
    """Per normal-kernel row: model time / table time - 1, the table time being DeepEP's
    counted bytes of the row's link (as its benchmark counts them) over the measured
    bandwidth."""
    out = {}
    for r in table():
        fam = family(r)
        if fam is None:
            continue
        ep, per_node = int(r["num_ep_ranks"]), int(r["gpus_per_node"])
        elem = FP8_BYTES if r["op_dtype"] == "FP8" else 2.0
        groups = int(r["topk_groups"]) if r["topk_groups"] else ep // per_node
        traffic = deepep_traffic(
            int(r["tokens_per_batch"]), int(r["hidden"]), int(r["topk_experts"]),
            256, ep, per_node, groups, elem,
        )  # fmt: skip
        counted = traffic.rdma_counted if r["link"] == "RDMA" else traffic.nvl_counted
        measured = counted / (float(r["bandwidth_gbps"]) * 1e9)
        out[r["row_id"]] = deepep_time(traffic, fam) / measured - 1.0
    return out


def test_hit_probability_hand_worked():
    # 8 of 256 experts, a rank holding 32: 1 - C(224, 8) / C(256, 8)
    p = hit_probability(256, 32, 8)
    assert p == pytest.approx(1 - np.prod([(224 - i) / (256 - i) for i in range(8)]))
    assert hit_probability(16, 0, 2) == 0.0 and hit_probability(16, 15, 2) == 1.0


def _simulate(tokens, experts, top_k, ep, per_node, groups, seed=0):
    """DeepEP's benchmark routing (tests/test_internode.py): scores |N(0,1)| + 1, the
    ``groups`` nodes with the highest expert score, the top-k experts among them."""
    rng = np.random.default_rng(seed)
    nodes = ep // per_node
    scores = np.abs(rng.standard_normal((tokens, experts))) + 1.0
    if nodes > 1 and groups < nodes:
        node_scores = scores.reshape(tokens, nodes, -1).max(axis=2)
        keep = np.argsort(-node_scores, axis=1)[:, :groups]
        mask = np.zeros((tokens, nodes), dtype=bool)
        np.put_along_axis(mask, keep, True, axis=1)
        scores = np.where(np.repeat(mask, experts // nodes, axis=1), scores, -np.inf)
    top = np.argsort(-scores, axis=1)[:, :top_k]
    rank = top // (experts // ep)
    node = rank // per_node
    in_rank = np.zeros((tokens, ep), dtype=bool)
    np.put_along_axis(in_rank, rank, True, axis=1)
    in_node = np.zeros((tokens, nodes), dtype=bool)
    np.put_along_axis(in_node, node, True, axis=1)
    # rank 0 sends to other nodes (moved) and to every node (DeepEP's count); every rank
    # sends to rank 0 (symmetric: ep x the mean)
    rdma = in_node[:, 1:].sum()
    rdma_counted = in_node.sum()
    nvl = ep * in_rank.mean(axis=0).mean() * tokens
    return nvl, rdma, rdma_counted


@pytest.mark.parametrize(("ep", "groups"), [(8, 1), (16, 4), (32, 4), (64, 4)])
def test_expected_tokens_match_deepeps_benchmark_routing(ep, groups):
    tokens, experts, k = 4096, 256, 8
    nvl, rdma, rdma_counted = _simulate(tokens, experts, k, ep, 8, groups)
    t = deepep_traffic(tokens, 1, k, experts, ep, 8, groups, 1.0)
    assert t.nvl_counted == pytest.approx(nvl, rel=0.02)
    assert t.rdma == pytest.approx(rdma, rel=0.02, abs=1.0)
    if ep > 8:
        assert t.rdma_counted == pytest.approx(rdma_counted, rel=0.02)


def test_fitted_bandwidths_are_the_tables():
    assert deepep_bandwidth("v1-normal-h800", "nvlink") == pytest.approx(136.04e9)
    assert deepep_bandwidth("v1-normal-h800", "rdma") == pytest.approx(43.65e9)
    assert deepep_bandwidth("v2-sm100", "nvlink") == pytest.approx(608.04e9)
    assert deepep_bandwidth("v2-sm90", "nvlink") is None


def test_moved_bytes_hand_worked():
    # EP 16 over 2 nodes, every node allowed, 8 of 256 experts, 16 per rank, 128 per node
    t = deepep_traffic(4096, 7168, 8, 256, 16, 8, 2, 2.0)
    p_rank = hit_probability(256, 16, 8)
    p_node = hit_probability(256, 128, 8)
    per_token = 7168 * 2.0
    assert t.nvl_counted == pytest.approx(16 * p_rank * 4096 * per_token)
    # the two sources of the rank's own local index (itself and its RDMA peer) skip NVLink
    assert t.nvl == pytest.approx(14 * p_rank * 4096 * per_token)
    # own node's tokens stay off RDMA: half of DeepEP's counted node-sends
    assert t.rdma_counted == pytest.approx(2 * p_node * 4096 * per_token)
    assert t.rdma == pytest.approx(t.rdma_counted / 2)
    # intranode: no RDMA at all
    t8 = deepep_traffic(4096, 7168, 8, 256, 8, 8, 1, 2.0)
    assert t8.rdma == 0.0 and t8.rdma_counted == 0.0
    assert t8.nvl == pytest.approx(t8.nvl_counted * 7 / 8)


def test_time_is_the_slower_link():
    t = deepep_traffic(4096, 7168, 8, 256, 16, 8, 2, 2.0)
    fam = "v1-normal-h800"
    expected = max(t.rdma / deepep_bandwidth(fam, "rdma"), t.nvl / deepep_bandwidth(fam, "nvlink"))
    assert deepep_time(t, fam) == pytest.approx(expected)
    # V1 at EP 16: the NVLink forwarding of 14 x 40 % of the tokens is the bottleneck
    assert deepep_time(t, fam) == pytest.approx(t.nvl / deepep_bandwidth(fam, "nvlink"))


@settings(max_examples=60, deadline=None)
@given(
    tokens=st.integers(1, 8192),
    top_k=st.integers(1, 8),
    nodes_log=st.integers(0, 4),
    groups=st.integers(1, 8),
    fam=st.sampled_from(["v1-normal-h800", "v2-sm90", "v2-sm100"]),
)
def test_moved_never_exceeds_counted_and_time_grows_with_tokens(
    tokens, top_k, nodes_log, groups, fam
):
    ep = 8 * 2**nodes_log
    t = deepep_traffic(tokens, 1024, top_k, 256, ep, 8, groups, 2.0)
    assert 0.0 <= t.nvl <= t.nvl_counted
    assert 0.0 <= t.rdma <= t.rdma_counted
    more = deepep_traffic(tokens + 1, 1024, top_k, 256, ep, 8, groups, 2.0)
    assert deepep_time(more, fam) >= deepep_time(t, fam)


@pytest.mark.parametrize("row", [str(i) for i in (*range(1, 9), *range(21, 31))])
def test_dispatch_and_combine_within_15_percent(row):
    assert abs(errors()[row]) <= 0.15


def test_every_normal_row_is_checked():
    assert len(errors()) == 18


def test_the_fit_script_reproduces_the_shipped_table():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "fit_deepep.py"
    if not script.is_file():
        pytest.skip("scripts/ not present")
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True)
    assert done.returncode == 0, done.stdout
