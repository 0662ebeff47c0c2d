"""The extended SOAP space: halo transfers of spatially split convolutions, gathers of
channel splits, whole-branch placement of Inception modules (FlexFlow, arXiv 1807.05358,
sec. 3 and 8.5), and operator costs from the calibrated kernel model."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.errors import ConfigError
from deepflow.search.mcmc import OpSpace, branch_placement, mcmc_search
from deepflow.sim.opsim import (
    OpConfig,
    OpSimulator,
    RooflineCost,
    check_strategy,
    data_parallel,
    gemm_curve_source,
    with_calibration,
)
from deepflow.specs import system_from
from deepflow.specs.accelerator import Precision
from deepflow.workload.cnn import inception_v3
from deepflow.workload.opgraph import (
    Dim,
    DimKind,
    Edge,
    Gemm,
    GemmAxis,
    GraphBuilder,
    OpKind,
    Window,
    gemm_op,
)

FOUR = system_from({"preset": "dgx-v100", "num_accelerators": 4, "accelerators_per_node": 4})
EB = 4.0  # fp32 bytes


def two_convs(h: int, kernel: int, batch: int = 2, c: int = 8, w: int = 6):
    """Two ``kernel x kernel`` convolutions with 'same' padding on an ``h x w`` map."""
    g = GraphBuilder("convs", batch)
    dims = (
        Dim("sample", batch, DimKind.SAMPLE, GemmAxis.M),
        Dim("height", h, DimKind.ATTRIBUTE, GemmAxis.M),
        Dim("width", w, DimKind.ATTRIBUTE, GemmAxis.M),
        Dim("channel", c, DimKind.PARAMETER, GemmAxis.N),
    )
    pad = (kernel - 1) // 2
    gemm = Gemm(batch * h * w, c, c * kernel * kernel)
    a = g.add(gemm_op("conv_a", OpKind.CONV2D, dims, (), gemm, c * c * kernel * kernel))
    edge = Edge(
        a,
        aligned=("sample", "height", "width"),
        windows=(Window("height", kernel, 1, pad), Window("width", kernel, 1, pad)),
    )
    g.add(gemm_op("conv_b", OpKind.CONV2D, dims, (edge,), gemm, c * c * kernel * kernel))
    return g.build()


def test_window_rows_hand_worked() -> None:
    w = Window("height", 3, 1, 1)
    assert w.needs(0, 4, 8) == (0, 5)  # the top half reads one row of the bottom half
    assert w.needs(4, 8, 8) == (3, 8)
    s2 = Window("height", 3, 2, 0)  # 3 x 3 stride 2 on 35 rows: 17 output rows
    assert s2.needs(0, 17, 35) == (0, 35)
    assert s2.needs(0, 8, 35) == (0, 17) and s2.needs(8, 17, 35) == (16, 35)
    with pytest.raises(ValueError):
        Window("height", 0)


def test_halo_exchange_volume_hand_worked() -> None:
    """Both convolutions split in two on height over devices 0 and 1: forward, each half
    receives one row of the other half's output; backward, one row of gradient goes back."""
    g = two_convs(h=8, kernel=3)
    sim = OpSimulator(g, FOUR, check_memory=False)
    split = (OpConfig((1, 2, 1, 1), 0), OpConfig((1, 2, 1, 1), 0))
    row = 2 * 6 * 8 * EB  # batch x width x channels
    r = sim.run(split)
    assert r.transfer_bytes == pytest.approx(4 * row)
    # a 1 x 1 convolution has no halo: the same split moves nothing
    one = OpSimulator(two_convs(h=8, kernel=1), FOUR, check_memory=False)
    assert one.run(split).transfer_bytes == 0.0
    # the halo costs time: the 3 x 3 split ends later than the 1 x 1 split's compute alone
    assert r.transfer_s > 0 and math.isfinite(r.step_time_s)


def test_channel_split_gathers_the_other_channels() -> None:
    """Both convolutions split in two on their output channels: each half of ``conv_b``
    needs every input channel, so it receives the other half of ``conv_a``'s output
    (forward) and sends its partial input gradient back (backward)."""
    g = two_convs(h=8, kernel=3)
    sim = OpSimulator(g, FOUR, check_memory=False)
    split = (OpConfig((1, 1, 1, 2), 0), OpConfig((1, 1, 1, 2), 0))
    tensor = 2 * 8 * 6 * 8 * EB
    assert sim.run(split).transfer_bytes == pytest.approx(2 * tensor)
    # and the channel split halves each device's weights: no all-reduce at all
    assert sim.run(split).sync_bytes == 0.0


@settings(max_examples=40, deadline=None)
@given(
    parts=st.sampled_from([2, 3, 4]),
    rows_per_part=st.integers(2, 6),
    half=st.integers(0, 2),
)
def test_halo_volume_is_kernel_minus_one_rows_per_boundary(
    parts: int, rows_per_part: int, half: int
) -> None:
    """A ``(2 p + 1)``-wide 'same' convolution split ``d`` ways on height moves ``2 p`` rows
    per boundary forward and as many backward, as long as each part has ``p`` rows."""
    if rows_per_part < half:
        return
    h = parts * rows_per_part
    g = two_convs(h=h, kernel=2 * half + 1)
    sim = OpSimulator(g, FOUR, check_memory=False)
    cfg = OpConfig((1, parts, 1, 1), 0)
    row = 2 * 6 * 8 * EB
    assert sim.run((cfg, cfg)).transfer_bytes == pytest.approx(2 * (parts - 1) * 2 * half * row)


def test_inception_branches_and_branch_moves() -> None:
    g = inception_v3(batch=64)
    # 3 x 4 (A) + 3 (B) + 4 x 4 (C) + 3 (D) + 2 x 4 (E) branches
    assert len(g.branches) == 12 + 3 + 16 + 3 + 8
    assert all(g.ops[b[0]].branch == g.ops[b[-1]].branch for b in g.branches)
    space = OpSpace.build(g, 4)
    rng = np.random.default_rng(0)
    dp = data_parallel(g, 4)
    for _ in range(50):
        s = space.propose_branch(dp, rng)
        changed = [i for i in range(len(g.ops)) if s[i] != dp[i]]
        branch = next(b for b in g.branches if set(changed) <= set(b))
        assert len({s[i] for i in branch}) == 1  # one block for the whole branch
        check_strategy(g, s, 4)
    assert OpSpace.build(g, 4, branch_moves=False).branches == ()


def test_branch_placement_cuts_parameter_synchronization() -> None:
    """FlexFlow's case-study mechanism (Inception-v3 on 4 GPUs: -75 % parameter
    synchronization): with each branch on its own device its weights are not replicated."""
    g = inception_v3(batch=64)
    sim = OpSimulator(g, FOUR)
    dp, bp = sim.run(data_parallel(g, 4)), sim.run(branch_placement(g, 4))
    assert bp.sync_bytes < 0.25 * dp.sync_bytes
    assert bp.transfer_bytes > dp.transfer_bytes  # paid for with activation transfers


def test_search_with_branch_moves_is_deterministic_and_never_worse() -> None:
    g = inception_v3(batch=64)
    a = mcmc_search(OpSimulator(g, FOUR), iterations=120, seed=3)
    b = mcmc_search(OpSimulator(g, FOUR), iterations=120, seed=3)
    assert a.best_cost == b.best_cost and a.best == b.best
    assert "branch-placement" in a.start_costs
    assert a.best_cost <= min(a.start_costs.values())


def test_costs_come_from_the_kernel_model_at_the_precision() -> None:
    """On an A100 the bf16 GEMM curve is the table fitted to published microbenchmarks; the
    fp32 curve (not measured there) falls back to the efficiency block, and the two price
    the same partition differently."""
    a100 = system_from({"preset": "dgx-a100-80gb", "num_accelerators": 4})
    assert gemm_curve_source(a100.accelerator, Precision.BF16) == "table a100-sxm4-80gb"
    assert gemm_curve_source(a100.accelerator, Precision.FP32) == "efficiency block"
    g = inception_v3(batch=64)
    op = g.op("Mixed_6b.branch7x7_2")
    ones = (1,) * len(op.dims)
    bf16 = RooflineCost(a100.accelerator, Precision.BF16).forward_time(op, ones)
    fp16 = RooflineCost(a100.accelerator, Precision.FP16).forward_time(op, ones)
    assert bf16 == fp16  # one fitted curve for both 16-bit types
    assert RooflineCost(a100.accelerator, Precision.FP32).forward_time(op, ones) > bf16


def test_a_calibration_for_another_device_is_a_named_error() -> None:
    from importlib import resources

    h200 = resources.files("deepflow.hardware") / "data" / "calibrations" / "h200-sxm-141gb.yaml"
    a100 = system_from({"preset": "dgx-a100-80gb", "num_accelerators": 4})
    with pytest.raises(ConfigError, match=r"device\.name: device 'NVIDIA H200' does not match"):
        with_calibration(a100, str(h200))
    h = system_from({"preset": "dgx-h200", "num_accelerators": 4})
    cal = with_calibration(h, str(h200))
    assert gemm_curve_source(cal.accelerator, Precision.BF16).startswith("calibration ")
