"""Why the measured H200 element-wise curves miss: per-operator, per-size residuals and the
host's own scatter.

Prints, for the ``elementwise`` records of a measured calibration file (default: the
shipped H200 file, hardware/data/calibrations/), each operator's records with the
leave-one-size-out relative error of its curve (``t = max(t_host, bytes / (BW mu) + t_0)``,
the fit ``bench/kernel_fit_report.py`` cross-validates), the share of the time the memory
curve's device model explains (``bytes / (BW mu_copy) + t_0`` over the measured time: well
under 1 where the host set the time), and then the scatter of records whose device work is
negligible: the same host work timed at different sizes, which no function of the size can
follow (operator profiles of ``softmax`` under 1 MB, forward and forward + backward).

    python bench/elementwise_residuals.py [calibration name]
"""

from __future__ import annotations

import statistics
import sys

import numpy as np

from deepflow.hardware.calibration import (
    eager_stream_errors,
    elementwise_key,
    measured_calibration,
)
from deepflow.hardware.kernels import kernel_params
from deepflow.specs import accelerator_from

NEGLIGIBLE_BYTES = 1e6
"""Operator profiles moving less than this spend well under a microsecond on the device."""


def elementwise_residuals(name: str) -> None:
    recs = measured_calibration(name)["measurements"]
    acc = accelerator_from(name)
    mem = kernel_params(acc).memory
    assert mem is not None
    by: dict[str, list[dict]] = {}
    for r in recs:
        if r["kind"] == "elementwise":
            by.setdefault(elementwise_key(r), []).append(r)
    print(f"Element-wise records of {name}: leave-one-size-out error of each operator's curve")
    print()
    print("| curve | rows x cols | MB | measured us | device share | LOSO error |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for key in sorted(by):
        rs = by[key]
        errs = eager_stream_errors(rs, acc, mem.latency_s)
        for r, e in zip(rs, errs, strict=True):
            device = r["bytes"] / (acc.memory_bandwidth * mem.fraction) + mem.latency_s
            print(
                f"| {key} | {r['rows']} x {r['cols']} | {r['bytes'] / 1e6:.1f} | "
                f"{r['time_s'] * 1e6:.1f} | {device / r['time_s']:.2f} | {e:+.1%} |"
            )
        print(f"| {key} | mean | | | | {float(np.mean(np.abs(errs))):.1%} |")
    print()
    tiny = [
        r
        for r in recs
        if r["kind"] == "operator"
        and r["op"] == "softmax"
        and 4 * r["shape"]["rows"] * r["shape"]["cols"] < NEGLIGIBLE_BYTES
    ]
    if not tiny:
        return
    print("Host scatter: softmax operator profiles under 1 MB (negligible device work)")
    print()
    print("| direction | records | min us | median us | max us | mean abs dev. from median |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for bwd, label in ((False, "forward"), (True, "forward + backward")):
        t = [r["time_s"] * 1e6 for r in tiny if bool(r["backward"]) == bwd]
        med = statistics.median(t)
        dev = statistics.fmean(abs(x / med - 1.0) for x in t)
        print(f"| {label} | {len(t)} | {min(t):.1f} | {med:.1f} | {max(t):.1f} | {dev:.1%} |")


if __name__ == "__main__":
    elementwise_residuals(sys.argv[1] if len(sys.argv) > 1 else "h200-sxm-141gb")
