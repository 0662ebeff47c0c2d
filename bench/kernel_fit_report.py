"""The kernel model's fitted curves and cross-validated errors, as a Markdown table.

Reads the shipped tables (src/deepflow/hardware/data/kernels/*.yaml, written by
scripts/fit_kernels.py) and prints, per accelerator and curve, the parameters and the
leave-one-shape-out mean absolute error of time (10 folds of shapes above 40 shapes), with
the worst shape family. docs/hardware.md quotes this output.

    python bench/kernel_fit_report.py

Then, for each measured calibration file shipped under hardware/data/calibrations/ (a
``deepflow calibrate`` run), the cross-validated error of its own fit per curve and the
error of the shipped tables of the same compute against its kernels.
"""

from __future__ import annotations

from deepflow.hardware.calibration import (
    cross_validate,
    curve_errors,
    gemm_layout,
    measured_calibration,
)
from deepflow.hardware.kernels import shipped_table, table_names
from deepflow.specs import accelerator_from

MEASURED = ("h200-sxm-141gb",)
"""Measured calibration files (hardware/data/calibrations/) reported against their own fit
and against the shipped tables of the same compute."""
SAME_COMPUTE = {"h200-sxm-141gb": ("h200-sxm-141gb", "h100-sxm5-80gb")}


def measured_report() -> None:
    """Per measured file: the leave-one-shape-out error of its own fit per curve, then the
    error of each shipped table of the same compute on those kernels (not refitted)."""
    for name in MEASURED:
        recs = measured_calibration(name)["measurements"]
        acc = accelerator_from(name)
        print(f"Measured calibration {name} (deepflow calibrate), its own fit, cross-validated:")
        print()
        print("| curve | samples | CV mean abs error | worst family |")
        print("| --- | ---: | ---: | --- |")
        for e in cross_validate(recs, acc):
            fam, worst = max(e.families.items(), key=lambda kv: kv[1])
            key = f"{e.curve}.{e.dtype}" if e.dtype else e.curve
            print(f"| {key} | {e.samples} | {e.mean_abs:.1%} | {fam} {worst:.1%} |")
        print()
        print(f"Shipped tables against the measured {name} kernels (not refitted):")
        print()
        print("| table | curve | samples | mean abs error | worst family |")
        print("| --- | --- | ---: | ---: | --- |")
        for table in SAME_COMPUTE[name]:
            for e in curve_errors(recs, acc, shipped_table(table)):
                if e.curve == "memory" and table != name:
                    continue  # another chip's memory
                fam, worst = max(e.families.items(), key=lambda kv: kv[1])
                key = f"{e.curve}.{e.dtype}" if e.dtype else e.curve
                print(f"| {table} | {key} | {e.samples} | {e.mean_abs:.1%} | {fam} {worst:.1%} |")
        print()


def layout_report(name: str) -> None:
    """Per precision and operand layout (``calibration.gemm_layout``) of a measured file's
    dense GEMMs, the range of their rates ``2 m n k / t`` (shapes with all sides >= 4096:
    the Llama-like training GEMMs and the largest squares)."""
    recs = measured_calibration(name)["measurements"]
    rates: dict[tuple[str, str], list[float]] = {}
    for r in recs:
        if r["kind"] != "gemm" or min(r["m"], r["n"], r["k"]) < 4096:
            continue
        layout = gemm_layout(r) or "?"
        rate = 2.0 * r["m"] * r["n"] * r["k"] / r["time_s"] / 1e12
        rates.setdefault((r["dtype"], layout), []).append(rate)
    print(f"Measured {name} dense GEMMs with all sides >= 4096, TFLOP/s by operand layout")
    print("(nt: both operands K-major; nn: B MN-major; tn: both MN-major):")
    print()
    print("| precision | layout | shapes | TFLOP/s min-max |")
    print("| --- | --- | ---: | --- |")
    for (dtype, layout), x in sorted(rates.items()):
        print(f"| {dtype} | {layout} | {len(x)} | {min(x):.0f}-{max(x):.0f} |")
    print()


def main() -> None:
    print("| accelerator | curve | samples | CV mean abs error | worst family |")
    print("| --- | --- | ---: | ---: | --- |")
    for name in table_names():
        t = shipped_table(name)
        for key, e in t.fit_error.items():
            fam, worst = max(e["families"].items(), key=lambda kv: kv[1])
            print(
                f"| {name} | {key} | {e['samples']} | {e['loso_mean_abs']:.1%} | "
                f"{fam} {worst:.1%} |"
            )
    print()
    print(
        "| accelerator | precision | peak fraction | tile (reference of a set) "
        "| operand intensity h | wave loss | K fill | latency | overlap o "
        "| table clock boost / window |"
    )
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in table_names():
        t = shipped_table(name)
        for dtype, c in t.gemm.items():
            tile = f"{c.tile_m}x{c.tile_n}" + (f" of {len(c.tiles)}" if c.tiles else "")
            h = f"{c.operand_intensity:g}" if c.tiles else "-"
            clock = (
                f"{c.clock_boost:.3f} / {c.boost_window_s * 1e3:.1f} ms"
                if c.clock_boost > 1.0
                else "-"
            )
            print(
                f"| {name} | {dtype} | {c.peak_fraction:.3f} | {tile} | {h} | "
                f"{c.wave_loss:.2f} | {c.k_fill:.0f} | {c.latency_s * 1e6:.2f} us | "
                f"{c.overlap:.3f} | {clock} |"
            )
    print()
    print(
        "| accelerator | precision | attention fwd / bwd fraction | tile_q | latency | memory "
        "| head-dim factors fwd / bwd |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for name in table_names():
        t = shipped_table(name)
        mem = f"{t.memory.fraction:.3f}" if t.memory else "-"
        for dtype, a in t.attention.items():
            hd = (
                ", ".join(
                    f"{f.qk_dim}/{f.v_dim}: {f.forward:.3f} / {f.backward:.3f}" for f in a.head_dims
                )
                or "-"
            )
            print(
                f"| {name} | {dtype} | {a.forward_fraction:.3f} / {a.backward_fraction:.3f} | "
                f"{a.tile_q} | {a.latency_s * 1e6:.1f} us | {mem} | {hd} |"
            )
    print()
    print("Attention error per head-dimension pair, where a table states both head dimensions:")
    print()
    print("| accelerator | curve | family | CV mean abs error |")
    print("| --- | --- | --- | ---: |")
    for name in table_names():
        for key, e in shipped_table(name).fit_error.items():
            if key.startswith("attention"):
                for fam, err in e["families"].items():
                    if "/" in fam:
                        print(f"| {name} | {key} | {fam} | {err:.1%} |")


if __name__ == "__main__":
    main()
    print()
    measured_report()
    for name in MEASURED:
        layout_report(name)
