"""Kernel-level parallelism (DeepFlow's CR and RC GEMM splits): hand-worked collective
volumes of one GEMM, FLOP conservation, the simulator's use of a kernel group, and the
memory check of operator-graph strategies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepflow.errors import ConfigError
from deepflow.hardware.roofline import memory_time, split_k_gemm_time
from deepflow.network import Collective, GroupPlacement, Hierarchy, collective_time
from deepflow.sim.kernelpar import (
    KernelKind,
    KernelSplit,
    kernel_collectives,
    kernel_gemms,
    kernel_problem,
    ring_bytes_per_device,
)
from deepflow.sim.opsim import OpConfig, OpSimulator, check_strategy, data_parallel
from deepflow.specs import system_from
from deepflow.specs.accelerator import Precision
from deepflow.workload.opgraph import Dim, DimKind, Gemm, GemmAxis, GraphBuilder, OpKind, gemm_op
from deepflow.workload.rnn import lstm_lm

CR2 = KernelSplit(KernelKind.CR, 2)
RC23 = KernelSplit(KernelKind.RC, 2, 3)


def test_cr_volumes_of_one_gemm_by_hand() -> None:
    """C[8, 6] = A[8, 4] W[4, 6] in fp16 on 2 devices, k split: forward reduce-scatter of
    the 8 x 6 partial C (96 bytes; a ring moves half of it per device, 48 bytes); backward
    all-gather of dC (the same 96 bytes)."""
    cs = kernel_collectives(8, 6, 4, CR2)
    assert [(c.op, c.size, c.participants, c.phase) for c in cs] == [
        (Collective.REDUCE_SCATTER, 48, 2, "F"),
        (Collective.ALL_GATHER, 48, 2, "B"),
    ]
    assert [ring_bytes_per_device(c, 2.0) for c in cs] == [48.0, 48.0]
    assert kernel_gemms(8, 6, 4, CR2) == ((8, 6, 2), [(2, 6, 8), (8, 2, 6)])


def test_rc_volumes_of_one_gemm_by_hand() -> None:
    """C[8, 6] = A[8, 6] W[6, 6] in fp16 on a 2 x 3 grid (rows of A over 2, columns of W
    over 3). Forward: gather the C rows, 8/2 x 6 = 24 elements, over 3 devices (2/3 of 48
    bytes = 32 per device). Backward: A^T (6 x 8 = 48) and the dC columns (8 x 6/3 = 16)
    over the 2 row devices; the dC rows (4 x 6 = 24) and W^T (6 x 6 = 36) over the 3
    column devices. Weight sync: the W columns (6 x 2 = 12) over 2."""
    cs = kernel_collectives(8, 6, 6, RC23)
    got = [(c.op, c.size, c.participants, c.phase) for c in cs]
    ag = Collective.ALL_GATHER
    assert got == [
        (ag, 24, 3, "F"),
        (ag, 48, 2, "B"),
        (ag, 16, 2, "B"),
        (ag, 24, 3, "B"),
        (ag, 36, 3, "B"),
        (ag, 12, 2, "S"),
    ]
    per_dev = [ring_bytes_per_device(c, 2.0) for c in cs]
    assert per_dev == pytest.approx([32.0, 48.0, 16.0, 32.0, 48.0, 12.0])
    assert kernel_gemms(8, 6, 6, RC23) == ((4, 2, 6), [(3, 2, 8), (4, 2, 6)])


def test_invalid_splits_name_the_reason() -> None:
    assert "does not divide k=5" in str(kernel_problem(8, 6, 5, CR2))
    assert "does not divide m=9" in str(kernel_problem(9, 6, 6, RC23))
    assert kernel_problem(8, 6, 4, KernelSplit(KernelKind.CR, 2, 2)) is not None


@given(
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 4),
    st.sampled_from([1, 2, 4]),
    st.sampled_from([1, 2, 3]),
    st.booleans(),
)
def test_kernel_split_conserves_flops(a: int, b: int, c: int, p1: int, p2: int, cr: bool) -> None:
    """The devices of a kernel group together do exactly the unsplit GEMM's work, forward
    and for each backward GEMM."""
    m, n, k = 12 * a, 6 * b, 12 * c
    split = KernelSplit(KernelKind.CR, p1) if cr else KernelSplit(KernelKind.RC, p1, p2)
    assert kernel_problem(m, n, k, split) is None
    fwd, bwd = kernel_gemms(m, n, k, split)
    assert math.prod(fwd) * split.size == m * n * k
    for shape in bwd:
        assert math.prod(shape) * split.size == m * n * k


def _linear(batch: int = 64, width: int = 1024):
    g = GraphBuilder("one-gemm", batch)
    dims = (
        Dim("sample", batch, DimKind.SAMPLE, GemmAxis.M),
        Dim("out", width, DimKind.PARAMETER, GemmAxis.N),
    )
    g.add(gemm_op("fc", OpKind.LINEAR, dims, (), Gemm(batch, width, width), width * width))
    return g.build()


def test_simulator_runs_kernel_groups_and_checks_them() -> None:
    sys8 = system_from({"preset": "dgx-v100", "num_accelerators": 8})
    graph = _linear()
    sim = OpSimulator(graph, sys8, Precision.FP16)
    one = sim.run((OpConfig((1, 1), 0),))
    cr = sim.run((OpConfig((1, 1), 0, KernelSplit(KernelKind.CR, 4)),))
    rc = sim.run((OpConfig((1, 1), 0, KernelSplit(KernelKind.RC, 2, 4)),))
    # CR over 4 devices of one node: a quarter of k per device plus the collectives
    acc = sys8.accelerator
    peak, eb = acc.peak(Precision.FP16), 2.0

    def gemm(m: int, n: int, k: int) -> float:
        return split_k_gemm_time(m, n, k, acc, peak, eb, 1)

    h = Hierarchy.from_system(sys8)
    four = GroupPlacement(np.float64(4), np.float64(4), np.float64(1))
    size = 64 * 1024 * eb
    rs = float(collective_time(Collective.REDUCE_SCATTER, size, four, h))
    ag = float(collective_time(Collective.ALL_GATHER, size, four, h))
    launch = 2 * float(memory_time(0.0, acc, 1))
    by_hand = gemm(64, 1024, 256) + rs + ag + gemm(256, 1024, 64) + gemm(64, 256, 1024) + launch
    assert cr.step_time_s == pytest.approx(by_hand, rel=1e-12)
    assert rc.step_time_s > 0
    assert cr.peak_memory_bytes < one.peak_memory_bytes
    assert rc.peak_memory_bytes < cr.peak_memory_bytes
    with pytest.raises(ConfigError, match="does not divide"):
        check_strategy(graph, (OpConfig((1, 1), 0, KernelSplit(KernelKind.CR, 3)),), 8)
    with pytest.raises(ConfigError, match="outside"):
        check_strategy(graph, (OpConfig((2, 1), 4, KernelSplit(KernelKind.CR, 4)),), 8)


def test_38b_lstm_on_32gb_v100s_is_infeasible_with_a_reason() -> None:
    """DeepFlow's LSTM LM (B 4096, S 20, D 19968, V 800k: 38.3 B parameters) data-parallel
    on 64 V100-32GB holds every weight with its Adam state on every device."""
    graph = lstm_lm()
    assert graph.parameter_count == pytest.approx(38.3e9, rel=0.01)
    sys64 = system_from({"preset": "dgx-v100", "num_accelerators": 64})
    sim = OpSimulator(graph, sys64, Precision.FP16)
    res = sim.run(data_parallel(graph, 64))
    assert math.isinf(res.step_time_s)
    assert res.infeasible is not None and "GB" in res.infeasible
    assert res.peak_memory_bytes > 38e9 * 16
    assert math.isinf(sim.step_time(data_parallel(graph, 64)))


def test_lstm_lm_on_64_v100s_needs_kernel_parallelism_and_the_search_finds_it() -> None:
    """No start without kernel splits fits; the kernel-parallel start does, and the MCMC
    search over CR/RC splits improves on it, deterministically for a seed."""
    from deepflow.search.mcmc import kernel_parallel_start, mcmc_search

    graph = lstm_lm()
    sys64 = system_from({"preset": "dgx-v100", "num_accelerators": 64})
    sim = OpSimulator(graph, sys64, Precision.FP16)
    plain = mcmc_search(sim, iterations=200, seed=3)
    assert math.isinf(plain.best_cost)
    start = sim.run(kernel_parallel_start(graph, 64))
    assert start.infeasible is None
    res = mcmc_search(sim, iterations=400, seed=3, kernel_parallel=True)
    again = mcmc_search(sim, iterations=400, seed=3, kernel_parallel=True)
    assert res.best_cost == again.best_cost
    assert res.best_cost < start.step_time_s
    assert any(c.kernel is not None for c in res.best)
    assert sim.run(res.best).infeasible is None
