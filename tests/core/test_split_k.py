"""Split-K GEMM costing: never slower than the plain GEMM, faster when the output is small."""

from hypothesis import given
from hypothesis import strategies as st

from deepflow.hardware.roofline import gemm_time, split_k_gemm_time
from deepflow.specs import accelerator_from

V100 = accelerator_from("v100-sxm2-32gb")
PEAK = V100.peak_flops.fp32


@given(
    m=st.integers(1, 4096),
    n=st.integers(1, 4096),
    k=st.integers(1, 2_000_000),
)
def test_split_k_never_slower_than_one_gemm(m: int, n: int, k: int) -> None:
    assert split_k_gemm_time(m, n, k, V100, PEAK, 4.0) <= float(gemm_time(m, n, k, V100, PEAK, 4.0))


def test_weight_gradient_of_an_early_convolution_splits_k() -> None:
    """Inception-v3 Conv2d_2a_3x3's weight gradient on one of 16 devices:
    [288, 86436] x [86436, 32]. Its output is three 128 x 128 tiles on an 80-SM device, so one
    GEMM keeps 77 SMs idle; splitting K fills the device."""
    one = float(gemm_time(288, 32, 86436, V100, PEAK, 4.0))
    split = split_k_gemm_time(288, 32, 86436, V100, PEAK, 4.0)
    assert split < one / 10
