"""Regenerate the tables of docs/opsearch.md: FlexFlow's six networks (Jia, Zaharia, Aiken,
SysML 2019, arXiv 1807.05358, sec. 8) on 16 GPUs in 4 nodes at batch 64, and the
Inception-v3 case study on 4 GPUs of one node: the data-parallel step time, the best
strategy the MCMC search finds (``deepflow.search.mcmc.mcmc_search``, seed 0, the default
starts) with one-op moves only and with the extended space (whole-branch placement of
multi-branch modules; halo transfers of spatial splits are priced in both), and the
speed-ups, with gradient synchronization overlapping the backward pass (the simulator's
default) and after it (FlexFlow's simulators).

Operator costs are the kernel model's (``RooflineCost``: GEMM and streaming curves of
``deepflow.hardware.kernels``) on the chosen system preset and precision: on
``dgx-a100-80gb`` at bf16 the A100's table fitted to published microbenchmarks
(``deepflow kernels a100-sxm4-80gb``), on ``dgx-v100`` (no measured table) the
efficiency block. ``--calibration FILE`` attaches a ``deepflow calibrate`` file's fitted
curves (its device must match the accelerator) and prices the partitions it measured by
their measured times. ``--case-study-links`` adds the 4-GPU case study with FlexFlow's 2018
simulator link constants (4 GB/s within a node, no efficiency loss).

    python scripts/opsearch_table.py [--system dgx-a100-80gb] [--precision bf16]
        [--budget N] [--min-iterations N] [--calibration FILE] [--case-study-links]
        [--write]

``--write`` replaces the block between the ``opsearch-table:<system>-<precision>`` markers
in docs/opsearch.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from deepflow.hardware.calibrate import OperatorProfiles
from deepflow.search.mcmc import mcmc_search
from deepflow.sim.opsim import (
    OpSimulator,
    Strategy,
    data_parallel,
    gemm_curve_source,
    with_calibration,
)
from deepflow.specs import system_from
from deepflow.specs.accelerator import Precision
from deepflow.workload.cnn import alexnet, inception_v3, resnet101
from deepflow.workload.opgraph import DimKind
from deepflow.workload.rnn import nmt, rnnlm, rnntc

NETWORKS = {
    "AlexNet": alexnet,
    "Inception-v3": inception_v3,
    "ResNet-101": resnet101,
    "RNNTC": rnntc,
    "RNNLM": rnnlm,
    "NMT": nmt,
}
DOC = Path(__file__).resolve().parents[1] / "docs" / "opsearch.md"
FLEXFLOW_2018_LINKS = {
    "bandwidth": "4 GB/s",
    "latency": "0 us",
    "efficiency": 1.0,
    "efficiency_source": "FlexFlow's 2018 simulator: intra-node copies at a hard-coded 4 GB/s",
}


def summary(sim: OpSimulator, best: Strategy) -> str:
    """What a found strategy does, in counts of ops, against data parallelism."""
    graph, n = sim.graph, sim.num_devices
    dp_cfgs = data_parallel(graph, n)
    kinds = {"sample split on fewer devices": 0, "channel split": 0, "spatial split": 0}
    for op, cfg, base in zip(graph.ops, best, dp_cfgs, strict=True):
        if cfg == base:
            continue
        for d, k in zip(op.dims, cfg.degrees, strict=True):
            if k > 1 and d.kind is DimKind.PARAMETER:
                kinds["channel split"] += 1
                break
            if k > 1 and d.kind is DimKind.ATTRIBUTE:
                kinds["spatial split"] += 1
                break
        else:
            kinds["sample split on fewer devices"] += 1
    placed = sum(
        len({best[i] for i in b}) == 1 and best[b[0]].parts * best[b[0]].group < n
        for b in graph.branches
    )
    changed = sum(c != b for c, b in zip(best, dp_cfgs, strict=True))
    a, b = sim.run(dp_cfgs), sim.run(best)
    parts = ", ".join(f"{v} {k}" for k, v in kinds.items() if v)
    return (
        f"{changed} of {len(graph.ops)} ops differ from data parallelism ({parts or 'none'}); "
        f"{placed} of {len(graph.branches)} branches on one smaller device block; "
        f"gradient synchronization {a.sync_bytes / 1e6:.0f} -> {b.sync_bytes / 1e6:.0f} MB, "
        f"transfers {a.transfer_bytes / 1e6:.0f} -> {b.transfer_bytes / 1e6:.0f} MB summed "
        "over devices"
    )


def rows(
    preset: str,
    precision: Precision,
    budget: int,
    calibration: str | None,
    case_study_links: bool,
    min_iterations: int = 50,
) -> tuple[list[str], str]:
    cases = [(name, build, 16, 4, None) for name, build in NETWORKS.items()]
    cases.append(("Inception-v3 (case study)", inception_v3, 4, 4, None))
    if case_study_links:
        cases.append(
            ("Inception-v3 (case study, 4 GB/s links)", inception_v3, 4, 4, FLEXFLOW_2018_LINKS)
        )
    out = [
        "| network | GPUs | sync | data parallel (ms) | one-op moves (ms) | speed-up "
        "| extended space (ms) | speed-up | best from |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    profiles = OperatorProfiles.from_file(calibration) if calibration else None
    source = ""
    notes: list[str] = []
    for name, build, gpus, per_node, links in cases:
        spec: dict[str, object] = {
            "preset": preset,
            "num_accelerators": gpus,
            "accelerators_per_node": per_node,
        }
        if links is not None:
            spec["intra_node"] = links
        system = system_from(spec)
        if calibration:
            system = with_calibration(system, calibration)
        source = gemm_curve_source(system.accelerator, precision)
        graph = build(batch=64)
        for overlap in (True, False):
            found = {}
            sims: dict[bool, OpSimulator] = {}
            for moves in (False, True):
                if moves and not graph.branches:
                    found[moves] = found[False]  # the same search: no branch to move
                    continue
                sim = OpSimulator(graph, system, precision, overlap_sync=overlap, profiles=profiles)
                found[moves] = mcmc_search(
                    sim,
                    iterations=budget,
                    seed=0,
                    branch_moves=moves,
                    min_iterations=min_iterations,
                )
                sims[moves] = sim
            a, b = found[False], found[True]
            if graph.branches:
                notes.append(
                    f"- {name}, {gpus} GPUs, sync {'overlapped' if overlap else 'after backward'}"
                    f", extended space: {summary(sims[True], b.best)}."
                )
            out.append(
                f"| {name} | {gpus} | {'overlapped' if overlap else 'after backward'} | "
                f"{a.data_parallel_cost * 1e3:.2f} | {a.best_cost * 1e3:.2f} | {a.speedup:.3f}x | "
                f"{b.best_cost * 1e3:.2f} | {b.speedup:.3f}x | {b.best_start} |"
            )
    return [*out, "", "What the extended-space search found for Inception-v3:", "", *notes], source


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", default="dgx-a100-80gb", help="system preset")
    ap.add_argument("--precision", default="bf16", choices=[p.value for p in Precision])
    ap.add_argument("--budget", type=int, default=3000, help="MCMC iterations per search")
    ap.add_argument(
        "--min-iterations",
        type=int,
        default=50,
        help="iterations a chain runs before it may stop for want of improvement",
    )
    ap.add_argument("--calibration", default=None, help="a deepflow calibrate file")
    ap.add_argument(
        "--case-study-links",
        action="store_true",
        help="add the case study with FlexFlow's 2018 link constants",
    )
    ap.add_argument("--write", action="store_true", help="update docs/opsearch.md")
    args = ap.parse_args()
    t0 = time.perf_counter()
    precision = Precision(args.precision)
    table, source = rows(
        args.system,
        precision,
        args.budget,
        args.calibration,
        args.case_study_links,
        args.min_iterations,
    )
    flags = f"--system {args.system} --precision {args.precision} --budget {args.budget}"
    flags += f" --min-iterations {args.min_iterations}"
    if args.calibration:
        flags += f" --calibration {args.calibration}"
    if args.case_study_links:
        flags += " --case-study-links"
    note = (
        f"Generated by `python scripts/opsearch_table.py {flags} --write` (seed 0; batch 64; "
        f"GEMM curve at {args.precision}: {source})."
    )
    tag = f"opsearch-table:{args.system}-{args.precision}"
    begin, end = f"<!-- {tag}: begin -->", f"<!-- {tag}: end -->"
    block = "\n".join([begin, note, "", *table, end])
    print(block)
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.write:
        text = DOC.read_text()
        if begin in text:
            a, b = text.index(begin), text.index(end) + len(end)
            DOC.write_text(text[:a] + block + text[b:])
        else:
            DOC.write_text(text.rstrip("\n") + "\n\n" + block + "\n")


if __name__ == "__main__":
    main()
