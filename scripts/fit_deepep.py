"""Regenerate src/deepflow/network/data/deepep.yaml: DeepEP dispatch/combine bandwidths.

Reads DeepEP's published table (src/deepflow/hardware/data/microbenchmarks/deepep/
dispatch_combine.csv, README and LICENSE there). Each normal (training) kernel row gives a
time: the bytes DeepEP's benchmark counts for the row's link over the row's "bottleneck
bandwidth" (deepflow.network.deepep counts them the same way, DeepEP's 256 experts and
random routing). The model's time is ``max(rdma / B_rdma, nvl / B_nvl)`` over the bytes
each link moves; per kernel family, ``B_nvl`` is the geometric mean of ``nvl / time`` over
the intranode (NVLink) rows, and ``B_rdma`` the rate minimising the summed squared log
error of the model's time over the internode (RDMA) rows (a scan at 0.01 GB/s steps). The
low-latency (decoding, 128-token) kernels are not fitted: their times are latency-bound and
no training step runs them. No training-step measurement is read.

    python scripts/fit_deepep.py            # writes the table
    python scripts/fit_deepep.py --check    # exit 1 if the written table would change
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from deepflow.network.deepep import FP8_BYTES, DeepEPTraffic, deepep_traffic

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "src/deepflow/hardware/data/microbenchmarks/deepep/dispatch_combine.csv"
OUT = ROOT / "src/deepflow/network/data/deepep.yaml"


def family(row: dict[str, str]) -> str | None:
    """The kernel family of a row: ``v1-normal-h800``, ``v2-sm90``, ``v2-sm100``; None for
    the low-latency kernels."""
    if row["deepep_version"].startswith("V1"):
        return "v1-normal-h800" if row["kernel_type"].startswith("normal") else None
    return "v2-sm100" if "SM100" in row["accelerator"] else "v2-sm90"


def rows() -> list[dict[str, str]]:
    with CSV.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


EXPERTS = 256
"""Experts in DeepEP's benchmarks (``--num-experts`` default of tests/legacy/
test_internode.py and tests/elastic/test_ep.py)."""


NOMINAL_GBPS = {
    # per-direction link rates of the benchmark systems: H800 NVLink 4 (8 links x 25 GB/s,
    # accelerators.yaml h800-sxm5-80gb scale_up_bandwidth), B200 NVLink 5 (18 links x 50 GB/s,
    # b200 scale_up_bandwidth), ConnectX-7 400 Gb/s InfiniBand per GPU (DeepEP's README)
    "v1-normal-h800": {"nvlink": 200.0, "rdma": 50.0},
    "v2-sm100": {"nvlink": 900.0, "rdma": 50.0},
    "v2-sm90": {"rdma": 50.0},
}


def row_traffic(r: dict[str, str]) -> DeepEPTraffic:
    """Expected bytes of a table row under DeepEP's benchmark routing."""
    ep, per_node = int(r["num_ep_ranks"]), int(r["gpus_per_node"])
    elem = FP8_BYTES if r["op_dtype"] == "FP8" else 2.0
    groups = int(r["topk_groups"]) if r["topk_groups"] else ep // per_node
    return deepep_traffic(
        int(r["tokens_per_batch"]), int(r["hidden"]), int(r["topk_experts"]),
        EXPERTS, ep, per_node, groups, elem,
    )  # fmt: skip


def measured_time(r: dict[str, str], t: DeepEPTraffic) -> float:
    """The row's time: DeepEP's counted bytes of its link over its bandwidth."""
    counted = t.rdma_counted if r["link"] == "RDMA" else t.nvl_counted
    return counted / (float(r["bandwidth_gbps"]) * 1e9)


def _geomean(vs: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in vs) / len(vs))


def fit() -> dict[str, object]:
    samples: dict[str, list[tuple[str, DeepEPTraffic, float]]] = defaultdict(list)
    for r in rows():
        fam = family(r)
        if fam is None:
            continue
        t = row_traffic(r)
        samples[fam].append((r["link"].lower(), t, measured_time(r, t)))
    table: dict[str, dict[str, float]] = {}
    for fam, obs in sorted(samples.items()):
        nvl = [t.nvl / s for link, t, s in obs if link == "nvlink"]
        b_nvl = round(_geomean(nvl) / 1e9, 2) if nvl else None
        rdma = [(t, s) for link, t, s in obs if link == "rdma"]
        entry: dict[str, float] = {}
        if b_nvl is not None:
            entry["nvlink"] = b_nvl
        if rdma:

            def loss(b: float, rdma=rdma, b_nvl=b_nvl) -> float:
                total = 0.0
                for t, s in rdma:
                    model = t.rdma / (b * 1e9)
                    if b_nvl is not None:
                        model = max(model, t.nvl / (b_nvl * 1e9))
                    total += math.log(model / s) ** 2
                return total

            lo = min(t.rdma / s for t, s in rdma) / 1e9
            hi = max(t.rdma / s for t, s in rdma) / 1e9
            grid = [round(lo + 0.01 * i, 2) for i in range(int((hi - lo) / 0.01) + 2)]
            entry["rdma"] = min(grid, key=loss)
        table[fam] = dict(sorted(entry.items()))
    return {
        "source": (
            "DeepEP (github.com/deepseek-ai/DeepEP dd758ca) README 'Performance' (V2) and "
            "docs/legacy.md (V1 normal kernels); bandwidth (GB/s) of the bytes each link "
            "moves (own-node tokens off RDMA, own-local-index sources off NVLink), fitted to "
            "the table's times by scripts/fit_deepep.py"
        ),
        "bandwidth_gbps": table,
        "nominal_gbps": NOMINAL_GBPS,
        "efficiency": {
            fam: {link: round(b / NOMINAL_GBPS[fam][link], 4) for link, b in links.items()}
            for fam, links in table.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = yaml.safe_dump(fit(), sort_keys=False, width=100)
    if args.check:
        same = OUT.is_file() and OUT.read_text() == text
        print("deepep.yaml up to date" if same else "deepep.yaml would change")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
