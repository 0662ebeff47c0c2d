"""Regenerate the shipped kernel tables, src/deepflow/hardware/data/kernels/<preset>.yaml.

Reads the published microbenchmarks shipped under src/deepflow/hardware/data/microbenchmarks/
(each folder: CSV, README with provenance, LICENSE), converts them to calibration records
(:func:`deepflow.hardware.calibration.published_records`), fits each accelerator with the
same function ``deepflow calibrate --fit`` uses (:func:`fit_kernel_params`), and writes the
fitted curves with their leave-one-shape-out errors (:func:`cross_validate`).

A curve an accelerator's tables do not measure comes from its nearest measured chip
(:data:`NEAREST`), recorded in the table's ``source``. Nothing here reads a training-step
measurement.

    python scripts/fit_kernels.py            # writes the tables
    python scripts/fit_kernels.py --check    # exit 1 if a written table would change
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from deepflow.hardware.calibration import (
    SCHEMA,
    cross_validate,
    fit_kernel_params,
    published_records,
)
from deepflow.specs import accelerator_from
from deepflow.specs.kernels import KernelParams

OUT = Path(__file__).resolve().parents[1] / "src" / "deepflow" / "hardware" / "data" / "kernels"

NEAREST = {
    "h800-sxm5-80gb": "h100-sxm5-80gb",  # same GH100 die and HBM3 as the H100 SXM5
    "h100-sxm5-80gb": "h200-sxm-141gb",  # same GH100 die (attention, 16-bit)
    "h200-sxm-141gb": "h100-sxm5-80gb",
    "b200": "h200-sxm-141gb",  # HBM3e memory curve of the nearest measured HBM3e part
    "gb200": "b200",  # same Blackwell GPU die as the B200
}
"""Where a curve that an accelerator's own tables do not measure is taken from."""

# fitting order: a chip's fallback is fitted before it
ORDER = ("a100-sxm4-80gb", "h100-sxm5-80gb", "h200-sxm-141gb", "h800-sxm5-80gb", "mi300x", "b200", "gb200")  # fmt: skip

SOURCES = {
    "azure": "Azure AI Benchmarking Guide (MIT), hardware/data/microbenchmarks/azure_ai_benchmarking_guide",
    "simumax": "SimuMax B200 operator efficiencies (Apache-2.0), hardware/data/microbenchmarks/simumax_b200",
    "deepgemm": "DeepGEMM H800 FP8 GEMM (MIT), hardware/data/microbenchmarks/deepgemm_h800",
    "mamf": "MAMF table, S. Bekman, Machine Learning Engineering (CC BY-SA 4.0), hardware/data/microbenchmarks/mamf_ml_engineering",
}  # fmt: skip


def _merge(own: KernelParams, other: KernelParams, name: str) -> tuple[KernelParams, list[str]]:
    """``own`` with the curves it lacks taken from ``other`` (fitted for chip ``name``)."""
    taken = []
    fields = {}
    for key in ("gemm", "grouped_gemm", "attention"):
        mine = dict(getattr(own, key))
        for dtype, curve in getattr(other, key).items():
            if dtype not in mine:
                mine[dtype] = curve
                taken.append(f"{key}.{dtype}")
        fields[key] = dict(sorted(mine.items()))
    memory = own.memory
    if memory is None and other.memory is not None:
        memory = other.memory
        taken.append("memory")
    return own.model_copy(update={**fields, "memory": memory}), [f"{t} from {name}" for t in taken]


def build() -> dict[str, dict]:
    records = published_records()
    fitted: dict[str, KernelParams] = {}
    out = {}
    for preset in ORDER:
        acc = accelerator_from(preset)
        recs = records[preset]
        used = sorted({r["source"] for r in recs})
        params = fit_kernel_params(recs, acc)
        notes = []
        seen = {preset}
        fallback = NEAREST.get(preset)
        while fallback is not None and fallback not in seen and fallback in fitted:
            params, taken = _merge(params, fitted[fallback], fallback)
            notes += taken
            seen.add(fallback)
            fallback = NEAREST.get(fallback)
        errors = cross_validate(recs, acc)
        fit_error = {
            f"{e.curve}.{e.dtype}" if e.dtype else e.curve: {
                "samples": e.samples,
                "loso_mean_abs": round(e.mean_abs, 4),
                "families": {f: round(v, 4) for f, v in e.families.items()},
            }
            for e in errors
        }
        source = (
            "fitted by scripts/fit_kernels.py (deepflow.hardware.calibration.fit_kernel_params) "
            f"to {len(recs)} records from: " + "; ".join(SOURCES[u] for u in used)
        )
        if notes:
            source += ". Taken from the nearest measured chip: " + ", ".join(notes)
        params = params.model_copy(update={"source": source, "fit_error": fit_error})
        fitted[preset] = params
        out[preset] = {
            "schema": SCHEMA,
            "device": {"name": preset, "backend": "published"},
            "fitted": params.model_dump(mode="json"),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a table would change")
    args = parser.parse_args()
    changed = []
    for preset, table in build().items():
        path = OUT / f"{preset}.yaml"
        text = (
            "# Generated by scripts/fit_kernels.py from hardware/data/microbenchmarks/; do not edit.\n"
            + yaml.safe_dump(table, sort_keys=False, width=100)
        )
        if args.check:
            if not path.exists() or path.read_text("utf-8") != text:
                changed.append(path.name)
        else:
            path.write_text(text, "utf-8")
            print(f"wrote {path.relative_to(OUT.parents[3])}")
    if changed:
        print("tables out of date: " + ", ".join(changed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
