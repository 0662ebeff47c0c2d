"""Regenerate src/deepflow/network/data/deepep.yaml: DeepEP dispatch/combine bandwidths.

Reads DeepEP's published table (src/deepflow/hardware/data/microbenchmarks/deepep/
dispatch_combine.csv, README and LICENSE there) and fits, per kernel family and link,
one bandwidth: the geometric mean of the measured "bottleneck bandwidth" of the
normal (training) kernels over EP sizes, dispatch and combine together
(deepflow.network.deepep counts the bytes the same way DeepEP does, so its time is
bytes / bandwidth). The low-latency (decoding, 128-token) kernels are not fitted: their
times are latency-bound and no training step runs them. No training-step measurement is
read.

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


def fit() -> dict[str, object]:
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows():
        fam = family(r)
        if fam is None:
            continue
        samples[fam][r["link"].lower()].append(float(r["bandwidth_gbps"]))
    table = {
        fam: {
            link: round(math.exp(sum(math.log(v) for v in vs) / len(vs)), 2)
            for link, vs in sorted(links.items())
        }
        for fam, links in sorted(samples.items())
    }
    return {
        "source": (
            "DeepEP (github.com/deepseek-ai/DeepEP dd758ca) README 'Performance' (V2) and "
            "docs/legacy.md (V1 normal kernels); geometric mean of the bottleneck bandwidth "
            "(GB/s) over EP sizes, dispatch and combine; fitted by scripts/fit_deepep.py"
        ),
        "bandwidth_gbps": table,
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
