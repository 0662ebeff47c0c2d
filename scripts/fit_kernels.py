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

from deepflow.hardware.calibrate.io import calibration_text
from deepflow.hardware.calibration import (
    SCHEMA,
    WAVE_LOSS_ARCHITECTURE,
    WAVE_LOSS_FIT_MIN,
    WAVE_LOSS_REFERENCE,
    CurveError,
    architecture_intensity,
    architecture_wave_loss,
    cross_validate,
    curve_errors,
    fit_error_table,
    fit_kernel_params,
    fit_measured_file,
    measured_calibration,
    published_records,
    published_references,
)
from deepflow.hardware.kernels import stream_fits_latency
from deepflow.specs import accelerator_from
from deepflow.specs.kernels import GemmCurve, KernelParams

DATA = Path(__file__).resolve().parents[1] / "src" / "deepflow" / "hardware" / "data"
OUT = DATA / "kernels"
CALIBRATIONS = DATA / "calibrations"

NEAREST = {
    "h800-sxm5-80gb": ("h100-sxm5-80gb", "all"),  # same GH100 die and HBM3 as the H100 SXM5
    "h100-sxm5-80gb": ("h200-sxm-141gb", "compute"),  # same GH100 die (attention, 16-bit)
    "h200-sxm-141gb": ("h100-sxm5-80gb", "compute"),
    "b200": ("h200-sxm-141gb", "memory"),  # HBM3e memory curve of the nearest measured HBM3e part
    "gb200": ("b200", "all"),  # same Blackwell GPU die as the B200
}
"""Where a curve that an accelerator's own tables do not measure is taken from, and which
curves: ``compute`` (GEMM, grouped GEMM, attention), ``memory``, or ``all``."""

MEASURED = {
    "h200-sxm-141gb": ("h200-sxm-141gb", "compute and memory"),
    "h100-sxm5-80gb": ("h200-sxm-141gb", "compute"),  # same GH100 SMs and clocks, HBM3 not HBM3e
}
"""Chips with a ``deepflow calibrate`` run shipped under hardware/data/calibrations/ (a
measurement made for this project, its command and environment inside the file), and which
of its curves the chip may take: a measurement of the same silicon stands for the compute
curves (GEMM, grouped GEMM, attention), only the chip's own for the memory curve.

A curve is taken from the measured file where the published tables do not measure it, or
where the published fit disagrees with the measurement: its error against the measured
kernels is above the target of its kind (:data:`TARGETS`) or one shape family is above
:data:`FAMILY_TARGET`. The comparison is printed by ``bench/kernel_fit_report.py``."""

TARGETS = {"gemm": 0.10, "grouped_gemm": 0.10, "attention": 0.15, "memory": 0.05}
FAMILY_TARGET = 0.25

# fitting order: a chip's fallback is fitted before it
ORDER = ("a100-sxm4-80gb", "h200-sxm-141gb", "h100-sxm5-80gb", "h800-sxm5-80gb", "mi300x", "b200", "gb200")  # fmt: skip

SOURCES = {
    "azure": "Azure AI Benchmarking Guide (MIT), hardware/data/microbenchmarks/azure_ai_benchmarking_guide",
    "simumax": "SimuMax B200 operator efficiencies (Apache-2.0), hardware/data/microbenchmarks/simumax_b200",
    "deepgemm": "DeepGEMM H800 FP8 GEMM (MIT), hardware/data/microbenchmarks/deepgemm_h800",
    "mamf": "MAMF table, S. Bekman, Machine Learning Engineering (CC BY-SA 4.0), hardware/data/microbenchmarks/mamf_ml_engineering",
    "calibrate": "deepflow calibrate on one NVIDIA H200 (this project, Apache-2.0), hardware/data/calibrations/h200-sxm-141gb.yaml",
}  # fmt: skip


def _key(e: CurveError) -> str:
    return f"{e.curve}.{e.dtype}" if e.dtype else e.curve


def _disagrees(e: CurveError) -> bool:
    return e.mean_abs > TARGETS[e.curve] or e.worst_family > FAMILY_TARGET


def _with_measured(
    preset: str, params: KernelParams, errors: list[CurveError], records: list[dict]
) -> tuple[KernelParams, list[CurveError], list[str]]:
    """``params`` with the curves of the chip's measured file (:data:`MEASURED`) where the
    published fit lacks them, rests on fewer than three shapes of the precision (a peak
    fraction fitted to a best-shape row, the other terms transferred: the measured file
    fits every term of the same silicon), or disagrees with the measurement; the
    cross-validated errors of the curves taken replace the published ones; notes for the
    table's source.

    A measured curve whose own cross-validated error is above :data:`FAMILY_TARGET` is not
    taken: the model does not describe that measurement. Nor is a grouped curve of a host
    loop (``host_issue_s`` > 0: the H200 file's fp16 ``torch._grouped_mm``, which PyTorch
    2.11 ran as ``_grouped_mm_fallback``, one dense GEMM per group issued by the host, up to
    10x slower than bf16's fused kernel on the same shapes): a shipped table describes grouped
    kernels; the fallback's time is its host's loop."""
    name, scope = MEASURED[preset]
    measured = measured_calibration(name)["measurements"]
    acc = accelerator_from(preset)
    own = fit_kernel_params(measured, acc)
    against = {_key(e): e for e in curve_errors(measured, acc, params)}
    cv = {_key(e): e for e in cross_validate(measured, acc)}

    def own_error(kind: str, dtype: str) -> CurveError | None:
        if kind == "gemm" and dtype in ("fp16", "bf16"):  # pooled under one of the two
            return cv.get("gemm.fp16") or cv.get("gemm.bf16")
        return cv.get(f"{kind}.{dtype}")

    taken: list[str] = []
    taken_errors: dict[str, CurveError] = {}
    fields: dict[str, object] = {}
    for kind in ("gemm", "grouped_gemm", "attention"):
        mine = dict(getattr(params, kind))
        for dtype, curve in getattr(own, kind).items():
            key = f"{kind}.{dtype}"
            e, fit = against.get(key), own_error(kind, dtype)
            if fit is not None and fit.mean_abs > FAMILY_TARGET:
                continue
            if isinstance(curve, GemmCurve) and curve.host_issue_s > 0:
                continue
            shapes = _published_shapes(records, kind, dtype)
            if dtype in mine and e is not None and not _disagrees(e) and shapes >= 3:
                continue
            why = (
                "not in the published tables"
                if dtype not in mine or e is None or shapes == 0
                else f"published fit off by {e.mean_abs:.1%}, worst family {e.worst_family:.1%}"
                if _disagrees(e)
                else "published curve fitted to fewer than three shapes"
            )
            mine[dtype] = curve
            taken.append(f"{key} ({why})")
            if fit is not None:
                taken_errors[_key(fit)] = fit
        fields[kind] = dict(sorted(mine.items()))
    if "memory" in scope and own.memory is not None:
        e = against.get("memory")
        published_latency = stream_fits_latency(
            [r["bytes"] for r in records if r["kind"] == "memory"]
        )
        measured_latency = stream_fits_latency(
            [r["bytes"] for r in measured if r["kind"] == "memory"]
        )
        if (
            params.memory is None
            or e is None
            or _disagrees(e)
            or (measured_latency and not published_latency)
        ):
            fields["memory"] = own.memory
            fields["elementwise"] = own.elementwise
            why = (
                ""
                if e is None
                else f" (published fit off by {e.mean_abs:.1%})"
                if _disagrees(e)
                else " (the published table measures one size per kernel: its latency is the "
                "launch overhead, the measured sweep fits it)"
            )
            taken.append("memory" + why)
            for key in ("memory", "memory.latency", "elementwise"):
                if key in cv:
                    taken_errors[key] = cv[key]
    errors = [e for e in errors if _key(e) not in taken_errors] + list(taken_errors.values())
    return params.model_copy(update=fields), errors, taken


def _published_shapes(records: list[dict], kind: str, dtype: str) -> int:
    """Distinct shapes of the published ``kind`` records of ``dtype`` (16-bit as one)."""
    sixteen = ("fp16", "bf16") if dtype in ("fp16", "bf16") else (dtype,)
    return len(
        {
            tuple(r.get(x) for x in ("m", "n", "k", "groups", "batch", "heads", "seq", "head_dim"))
            for r in records
            if r["kind"] == kind and r.get("dtype") in sixteen
        }
    )


def _merge(
    own: KernelParams, other: KernelParams, name: str, scope: str
) -> tuple[KernelParams, list[str]]:
    """``own`` with the curves of ``scope`` it lacks taken from ``other`` (fitted for chip
    ``name``)."""
    taken = []
    fields = {}
    for key in ("gemm", "grouped_gemm", "attention") if scope != "memory" else ():
        mine = dict(getattr(own, key))
        for dtype, curve in getattr(other, key).items():
            if dtype not in mine:
                mine[dtype] = curve
                taken.append(f"{key}.{dtype}")
        fields[key] = dict(sorted(mine.items()))
    memory = own.memory
    if memory is None and other.memory is not None and scope != "compute":
        memory = other.memory
        taken.append("memory")
    return own.model_copy(update={**fields, "memory": memory}), [f"{t} from {name}" for t in taken]


def build() -> dict[str, dict]:
    records = published_records()
    references = published_references()
    fitted: dict[str, KernelParams] = {}
    out = {}
    for preset in ORDER:
        acc = accelerator_from(preset)
        recs = records[preset]
        used = sorted({r["source"] for r in recs})
        params = fit_kernel_params(recs, acc, references=references.get(preset, ()))
        # the chip's own published FlashAttention-2 records (Azure: Dao-AILab
        # benchmark_flash_attention.py) fit the FlashAttention-2 curve, kept apart from the
        # attention curve that a measured calibration (cuDNN on Hopper) may replace
        attention_sources = {r["source"] for r in recs if r["kind"] == "attention"}
        if "azure" in attention_sources:
            params = params.model_copy(update={"flash_attention_2": dict(params.attention)})
        fallback = NEAREST.get(preset, (None, "all"))
        if (
            attention_sources == {"azure"}
            and preset not in MEASURED
            and fallback[0] in fitted
            and fallback[1] in ("all", "compute")
            and fitted[fallback[0]].attention
        ):
            # FlashAttention-2 and eager attention are the chip's only attention records:
            # they stay the flash_attention_2 curve, and the framework's fused attention
            # (Transformer Engine's cuDNN path) comes from the nearest chip that measures it
            # (GB200: the B200's SimuMax records, TransformerEngine causal attention on the
            # same Blackwell die; Dao-AILab FlashAttention-2 runs Ampere-style MMA there)
            params = params.model_copy(update={"attention": {}})
        notes = []
        seen = {preset}
        fallback, scope = NEAREST.get(preset, (None, "all"))
        while fallback is not None and fallback not in seen and fallback in fitted:
            params, taken = _merge(params, fitted[fallback], fallback, scope)
            notes += taken
            seen.add(fallback)
            fallback, further = NEAREST.get(fallback, (None, "all"))
            scope = scope if further == "all" else further if scope == "all" else scope
        errors = cross_validate(recs, acc)
        measured_notes: list[str] = []
        if preset in MEASURED:
            params, errors, measured_notes = _with_measured(preset, params, errors, recs)
        fit_error = fit_error_table(errors)
        source = (
            "fitted by scripts/fit_kernels.py (deepflow.hardware.calibration.fit_kernel_params) "
            f"to {len(recs)} records from: " + "; ".join(SOURCES[u] for u in used)
        )
        if measured_notes:
            name, scope = MEASURED[preset]
            source += (
                f". From the measured {name} calibration ({scope} curves; "
                + SOURCES["calibrate"]
                + "): "
                + ", ".join(measured_notes)
            )
        if notes:
            source += ". Taken from the nearest measured chip: " + ", ".join(notes)
        if params.flash_attention_2:
            source += (
                ". flash_attention_2: the attention fit to the chip's own published "
                "FlashAttention-2 records only (" + SOURCES["azure"] + ")"
            )
        wave = architecture_wave_loss(acc)
        if wave is not None:
            arch = WAVE_LOSS_ARCHITECTURE[preset]
            kind, ref = WAVE_LOSS_REFERENCE[arch]
            source += (
                f". Dense GEMM curves of fewer than {WAVE_LOSS_FIT_MIN} shapes use the {arch} "
                f"wave loss {wave:g} and tile-set operand intensity "
                f"{architecture_intensity(acc):g}, fitted to the 16-bit GEMMs of the {ref} "
                + ("measured calibration" if kind == "calibration" else "published table")
                + " (kernel-timed DeepGEMM tables fit their own operand intensity)"
            )
        else:
            source += (
                f". Dense GEMM curves of fewer than {WAVE_LOSS_FIT_MIN} shapes hold the "
                "tile-set operand intensity at 0 (no richer table of the architecture)"
            )
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
    for name in sorted({name for name, _ in MEASURED.values()}):
        # the measured file's own fitted block (its measurements are kept as measured)
        path = CALIBRATIONS / f"{name}.yaml"
        data = measured_calibration(name)
        fitted = fit_measured_file(data, accelerator_from(name), "python scripts/fit_kernels.py")
        text = calibration_text(fitted, ".yaml")
        if args.check:
            if path.read_text("utf-8") != text:
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
