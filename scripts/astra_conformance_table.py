"""Run every ASTRA-sim conformance case and write the status table of docs/interop.md.

    python scripts/astra_conformance_table.py            # print the table
    python scripts/astra_conformance_table.py --write    # replace it in docs/interop.md

The table sits between the ``<!-- conformance-table -->`` markers. Each row is one family
and backend of ``tests/fixtures/astra-sim/conformance/cases.csv``: how many cases, how many
deepflow matches to the nanosecond on every rank, how many within 1 %, and the largest
``|deepflow - ASTRA-sim| / ASTRA-sim`` over the ranks.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from deepflow.interop.astra.conformance import CaseInputs, load_cases, run_case

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests/fixtures"
DOC = ROOT / "docs/interop.md"
BEGIN, END = "<!-- conformance-table -->", "<!-- /conformance-table -->"


def table() -> str:
    cases = load_cases(FIX / "astra-sim/conformance/cases.csv")
    stats: dict[tuple[str, str], list[float]] = defaultdict(list)
    exact: dict[tuple[str, str], int] = defaultdict(int)
    with tempfile.TemporaryDirectory() as scratch:
        inputs = CaseInputs(FIX, scratch)
        for case in cases:
            result = run_case(case, inputs)
            key = (case.family, case.row["backend"])
            stats[key].append(result.worst_rank_rel_diff)
            exact[key] += result.exact
    order = ["A", "B", "C", "C2", "D", "D2", "D3", "E", "F", "D4", "MSCCL", "D5"]
    lines = [
        "| Family | Backend | Cases | Exact | Within 1 % | Worst rank difference |",
        "|---|---|---|---|---|---|",
    ]
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for family in order:
        for backend in ("CU", "CA"):
            diffs = stats.get((family, backend))
            if not diffs:
                continue
            within = sum(d <= 0.01 for d in diffs)
            n_exact = exact[(family, backend)]
            lines.append(
                f"| {family} | {backend} | {len(diffs)} | {n_exact} | {within} | {max(diffs):.2%} |"
            )
            t = totals[backend]
            t[0] += len(diffs)
            t[1] += n_exact
            t[2] += within
    for backend, (n, n_exact, within) in totals.items():
        lines.append(f"| all | {backend} | {n} | {n_exact} | {within} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite docs/interop.md")
    args = parser.parse_args(argv)
    text = table()
    if not args.write:
        print(text)
        return 0
    doc = DOC.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(doc):
        print(f"{DOC}: no {BEGIN} ... {END} markers", file=sys.stderr)
        return 1
    DOC.write_text(pattern.sub(f"{BEGIN}\n{text}\n{END}", doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
