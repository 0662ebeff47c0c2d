"""DeepEP dispatch/combine: DeepEP's byte accounting and its measured bandwidths (issue 14)."""

import csv
from importlib import resources

import numpy as np
import pytest

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
    bytes (counted as its benchmark counts them) over the measured bandwidth."""
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
        internode = r["link"] == "RDMA"
        moved = traffic.rdma if internode else traffic.nvl
        measured = moved / (float(r["bandwidth_gbps"]) * 1e9)
        out[r["row_id"]] = deepep_time(traffic, fam, internode) / measured - 1.0
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
    # rank 0 sends to other nodes; every rank sends to rank 0 (symmetric: ep x the mean)
    rdma = in_node[:, 1:].sum()
    nvl = ep * in_rank.mean(axis=0).mean() * tokens
    return nvl, rdma


@pytest.mark.parametrize(("ep", "groups"), [(8, 1), (16, 4), (32, 4), (64, 4)])
def test_expected_tokens_match_deepeps_benchmark_routing(ep, groups):
    tokens, experts, k = 4096, 256, 8
    nvl, rdma = _simulate(tokens, experts, k, ep, 8, groups)
    t = deepep_traffic(tokens, 1, k, experts, ep, 8, groups, 1.0)
    assert t.nvl == pytest.approx(nvl, rel=0.02)
    assert t.rdma == pytest.approx(rdma, rel=0.02, abs=1.0)


def test_fitted_bandwidths_are_the_tables():
    assert deepep_bandwidth("v1-normal-h800", "nvlink") == pytest.approx(155.48e9)
    assert deepep_bandwidth("v2-sm100", "nvlink") == pytest.approx(694.9e9)


HOLD = ("1", "2", "3", "4", "6", "7", "8", "22", "25", "26", "27", "28", "29", "30")


@pytest.mark.parametrize("row", HOLD)
def test_dispatch_and_combine_within_15_percent(row):
    assert abs(errors()[row]) <= 0.15


@pytest.mark.xfail(
    strict=True,
    reason="issue 14's target 15 % on every normal-kernel row: the rates are taken flat in "
    "EP size and DeepEP's own vary more with it: V1 RDMA EP 32 dispatch +16.0 % (58 GB/s "
    "against 50.0), V2 SM90 EP 16 dispatch +24.7 % (90 against 72.2) and EP 32 -15.5 %; "
    "the other 14 normal-kernel rows are within 15 %",
)
def test_every_normal_row_within_15_percent():
    assert all(abs(e) <= 0.15 for e in errors().values())


def test_the_fit_script_reproduces_the_shipped_table():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "fit_deepep.py"
    if not script.is_file():
        pytest.skip("scripts/ not present")
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True)
    assert done.returncode == 0, done.stdout
