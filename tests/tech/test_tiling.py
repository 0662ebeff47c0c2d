"""The hierarchical roofline: SRAM capacity changes DRAM traffic and time."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st
from tests.tech.helpers import class_design

from deepflow.hardware.tiling import best_tile, tiled_gemm
from deepflow.tech import generate


def _shrunk(hierarchy, factor):
    levels = tuple(
        dataclasses.replace(
            lv, capacity=lv.capacity * factor, instance_capacity=lv.instance_capacity * factor
        )
        for lv in hierarchy.sram
    )
    return dataclasses.replace(hierarchy, sram=levels)


def test_smaller_l2_means_more_dram_traffic_and_time():
    g = generate(class_design("a100"))
    acc, peak = g.accelerator, g.accelerator.peak_flops.bf16
    big = tiled_gemm(4096, 12288, 12288, acc, g.hierarchy, peak)
    small = tiled_gemm(4096, 12288, 12288, acc, _shrunk(g.hierarchy, 1 / 256), peak)
    assert small.traffic["dram"] > big.traffic["dram"]
    assert small.time > big.time
    assert big.bound == "compute"


@given(
    m=st.integers(1, 20000),
    n=st.integers(1, 20000),
    k=st.integers(1, 20000),
    cap=st.floats(1e3, 1e9),
)
def test_tiles_fit_and_never_exceed_the_matrix(m, n, k, cap):
    tm, tn, q = best_tile(m, n, k, cap, 2.0)
    assert tm <= max(m, 1) and tn <= max(n, 1)
    assert q >= 2.0 * (m * k + k * n + m * n) * 0.999 or (tm, tn) != (1.0, 1.0)


@given(m=st.integers(64, 8192), n=st.integers(64, 8192), k=st.integers(64, 8192))
def test_time_never_beats_compute_or_dram_bound(m, n, k):
    g = generate(class_design("h100"))
    acc, peak = g.accelerator, g.accelerator.peak_flops.bf16
    r = tiled_gemm(m, n, k, acc, g.hierarchy, peak)
    assert r.time >= 2.0 * m * n * k / (peak * acc.efficiency.matmul)
    compulsory = 2.0 * (m * k + k * n + m * n)
    assert r.time >= compulsory / (acc.memory_bandwidth * acc.efficiency.memory)
