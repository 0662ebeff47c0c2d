"""The per-operator simulator: hand-computed step times and agreement with the executor."""

import pytest

from deepflow.errors import ConfigError
from deepflow.network import Collective, GroupPlacement, Hierarchy, collective_time
from deepflow.sim.executor import execute
from deepflow.sim.opsim import OpConfig, OpSimulator, RooflineCost, data_parallel
from deepflow.specs import system_from
from deepflow.workload.cnn import alexnet
from deepflow.workload.opgraph import (
    Dim,
    DimKind,
    Edge,
    Gemm,
    GemmAxis,
    GraphBuilder,
    OpKind,
    gemm_op,
)
from deepflow.workload.rnn import nmt


def system(n: int = 16, per_node: int = 4):
    return system_from(
        {"preset": "dgx-v100", "num_accelerators": n, "accelerators_per_node": per_node}
    )


def tiny_graph(batch: int = 8, width: int = 64):
    g = GraphBuilder("tiny", batch)
    dims = (
        Dim("sample", batch, DimKind.SAMPLE, GemmAxis.M),
        Dim("channel", width, DimKind.PARAMETER, GemmAxis.N),
    )
    a = g.add(gemm_op("a", OpKind.LINEAR, dims, (), Gemm(batch, width, width), width * width))
    g.add(gemm_op("b", OpKind.LINEAR, dims, (Edge(a),), Gemm(batch, width, width), width * width))
    return g.build()


def test_data_parallel_step_matches_hand_computation() -> None:
    """Two linear ops, data parallel over 4 devices of one node: forward a, forward b,
    backward b, backward a on each device; b's all-reduce overlaps a's backward, a's
    all-reduce comes last: T = fa + fb + bb + max(ba, AR) + AR."""
    sys4 = system(4, 4)
    g = tiny_graph()
    sim = OpSimulator(g, sys4)
    cost = RooflineCost(sys4.accelerator)
    a, b = g.ops
    deg = (4, 1)
    fa, fb = cost.forward_time(a, deg), cost.forward_time(b, deg)
    ba, bb = cost.backward_time(a, deg), cost.backward_time(b, deg)
    h = Hierarchy.from_system(sys4)
    ar = float(
        collective_time(Collective.ALL_REDUCE, 64 * 64 * 4.0, GroupPlacement(4.0, 4.0, 1.0), h)
    )
    expected = fa + fb + bb + max(ba, ar) + ar
    assert sim.step_time(data_parallel(g, 4)) == pytest.approx(expected, rel=1e-12)


def test_transfer_between_partitions_uses_p2p_volume() -> None:
    """a on device 0, b on device 1 (another node): one forward transfer of a's whole
    output and one backward transfer of its gradient, over the inter-node level."""
    sys2 = system(2, 1)
    g = tiny_graph()
    sim = OpSimulator(g, sys2)
    s = (OpConfig((1, 1), 0), OpConfig((1, 1), 1))
    r = sim.run(s)
    assert r.transfer_bytes == pytest.approx(2 * 8 * 64 * 4.0)
    assert r.sync_bytes == 0


@pytest.mark.parametrize("kernel", [False, True], ids=["plain", "kernel-groups"])
@pytest.mark.parametrize("overlap", [True, False])
def test_fast_path_equals_event_driven_executor(overlap: bool, kernel: bool) -> None:
    """The step time computed while lowering equals the executor's makespan of the emitted
    task graph, bit for bit, also when ops run on CR / RC kernel groups (tasks on the first
    device of each group, partitions ``g`` devices apart)."""
    g = nmt(batch=16, seq_len=8, hidden=64, vocab=256, chunk=4)
    sim = OpSimulator(g, system(), overlap_sync=overlap)
    import numpy as np

    from deepflow.search.mcmc import OpSpace

    space = OpSpace.build(g, 16, kernel_parallel=kernel)
    rng = np.random.default_rng(3)
    strategies = [data_parallel(g, 16)] + [space.random_strategy(rng) for _ in range(4)]
    if kernel:
        assert sum(c.kernel is not None for s in strategies for c in s) > len(g.ops)
    for s in strategies:
        t = sim.step_time(s)
        assert t < float("inf")
        assert execute(sim.task_graph(s)).makespan == t
        assert sim.run(s).step_time_s == t


def test_kernel_group_places_partitions_g_devices_apart() -> None:
    """a on a CR2 kernel group, b plain, both split 2-way on the sample from device 0: a's
    partitions run on devices 0 and 2, b's on 0 and 1, so partition 1's activation (half
    of a's output) moves 2 -> 1 forward and its gradient 1 -> 2 backward,
    although the two configs have the same degrees and start."""
    from deepflow.sim.kernelpar import KernelKind, KernelSplit

    sys4 = system(4, 4)
    g = tiny_graph()
    sim = OpSimulator(g, sys4)
    cr2 = KernelSplit(KernelKind.CR, 2)
    s = (OpConfig((2, 1), 0, cr2), OpConfig((2, 1), 0))
    r = sim.run(s)
    assert r.transfer_bytes == pytest.approx(2 * 4 * 64 * 4.0)
    assert execute(sim.task_graph(s)).makespan == sim.step_time(s) == r.step_time_s
    # the same groups on both ops: each partition's input is on its own device
    same = (OpConfig((2, 1), 0, cr2), OpConfig((2, 1), 0, cr2))
    assert sim.run(same).transfer_bytes == 0
    assert execute(sim.task_graph(same)).makespan == sim.step_time(same)


def test_bad_strategy_names_the_op() -> None:
    g = alexnet(8)
    sim = OpSimulator(g, system())
    s = list(data_parallel(g, 16))
    s[0] = OpConfig((3, 1, 1, 1), 0)
    with pytest.raises(ConfigError, match="conv1"):
        sim.run(tuple(s))
