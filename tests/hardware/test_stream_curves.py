"""Streaming curves: one curve per memory operation, the model's is the copy's; eager
element-wise curves with a host floor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.hardware.calibration import (
    MODEL_STREAM_OP,
    fit_kernel_params,
    measured_calibration,
    model_stream_records,
    stream_groups,
)
from deepflow.hardware.kernels import fit_eager_stream_curve, shipped_table, stream_terms
from deepflow.specs import accelerator_from

H200 = "h200-sxm-141gb"


def _measured(kind: str) -> list[dict]:
    return [r for r in measured_calibration(H200)["measurements"] if r["kind"] == kind]


def test_memory_operations_get_their_own_curves_and_the_model_takes_the_copy() -> None:
    """The H200 sweep measures copy, read (a reduction) and write (a fill) at 13 sizes each:
    three groups; the write streams faster than the copy, and the shipped H200 (and B200,
    same HBM3e) memory curve is the copy's."""
    mem = _measured("memory")
    groups = stream_groups(mem)
    assert sorted(g[0]["op"] for g in groups) == ["copy", "read", "write"]
    assert {r["op"] for r in model_stream_records(mem)} == {MODEL_STREAM_OP}
    acc = accelerator_from(H200)
    fits = {g[0]["op"]: fit_kernel_params(g, acc).memory for g in groups}
    assert fits["write"].fraction > 1.05 * fits["copy"].fraction
    for name in (H200, "b200"):
        assert shipped_table(name).memory == fits["copy"], name
    # a table of one size per kernel (Azure's STREAM kernels) stays one curve
    one_size = [{"kind": "memory", "op": op, "bytes": 4e9, "time_s": 1e-3} for op in "abc"]
    assert len(stream_groups(one_size)) == 1
    assert model_stream_records(one_size) == one_size


def test_add_backward_is_a_host_floor() -> None:
    """The backward of ``add`` runs no kernel: the H200 file's add forward + backward times
    are the host's autograd floor (about 100-180 us) until the forward kernel outlasts it;
    the eager curve fits that floor and keeps the memory curve's kernel latency."""
    ew = [r for r in _measured("elementwise") if r["op"] == "add" and r["backward"]]
    acc = accelerator_from(H200)
    curve = fit_kernel_params(ew, acc).elementwise["add.backward"]
    assert 80e-6 < curve.host_floor_s < 200e-6
    forward = fit_kernel_params(
        [r for r in _measured("elementwise") if r["op"] == "add" and not r["backward"]], acc
    ).elementwise["add"]
    assert forward.host_floor_s < 0.2 * curve.host_floor_s


@settings(max_examples=40, deadline=None)
@given(
    floor=st.floats(2e-5, 5e-4),  # above the 4 us kernel latency (else nothing to see)
    mu=st.floats(0.2, 0.95),
)
def test_eager_fit_recovers_floor_and_bandwidth(floor: float, mu: float) -> None:
    """Times made by the eager curve itself, over sizes from well under to well over the
    floor, give back its floor and fraction."""
    bw = 4.8e12
    b = np.geomspace(bw * floor / 50, bw * floor * 200, 9)
    t = stream_terms(b, bw, mu, 4e-6, floor)
    c = fit_eager_stream_curve(b, t, bw, 4e-6)
    assert c.fraction == pytest.approx(mu, rel=0.03)
    assert c.host_floor_s == pytest.approx(floor, rel=0.05)
    assert c.latency_s == 4e-6


def test_floor_zero_leaves_the_memory_curve_unchanged() -> None:
    b = np.array([1e6, 1e9])
    assert np.array_equal(stream_terms(b, 4e12, 0.9, 3e-6), stream_terms(b, 4e12, 0.9, 3e-6, 0))


def test_stream_fit_of_kernels_faster_than_the_latency_is_finite() -> None:
    """A CPU run of the calibrate mechanics can time every kernel of an operation below the
    accelerator's launch overhead: the fit still gives a positive, finite fraction."""
    import warnings

    from deepflow.hardware.kernels import fit_stream_curve

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = fit_stream_curve([8192.0, 524288.0], [1.2e-6, 2e-6], 1e11, 5e-6)
    assert 0 < c.fraction <= 1.25
