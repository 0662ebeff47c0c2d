"""The calibrate timer hides the host's issue time on a GPU (no PyTorch needed: a fake
device whose event clock runs only while it has queued work)."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from deepflow.hardware.calibrate.timing import (
    SLEEP_CYCLES_PER_S,
    SLEEP_FACTOR,
    SLEEP_MAX_S,
    Timer,
    TimingPlan,
    sleep_cycles,
)


class _FakeCuda:
    """A stream on a fake device: kernels and spins take device time; an event records the
    device clock when the stream reaches it, which is never before the host enqueued it (the
    device idles while the host is slower than the device)."""

    def __init__(self, host_per_launch: float, kernel_s: float) -> None:
        self.device_free = 0.0
        self.host = 0.0
        self.host_per_launch = host_per_launch
        self.kernel_s = kernel_s
        self.log: list[str] = []
        fake = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                self.t = 0.0

            def record(self) -> None:
                fake.log.append("event")
                self.t = max(fake.device_free, fake.host)
                fake.device_free = self.t

            def elapsed_time(self, other: Event) -> float:
                return (other.t - self.t) * 1e3

        self.Event = Event

    def launch(self) -> None:
        self.host += self.host_per_launch
        self.device_free = max(self.device_free, self.host) + self.kernel_s

    def _sleep(self, cycles: int) -> None:
        self.log.append("sleep")
        self.device_free = max(self.device_free, self.host) + cycles / SLEEP_CYCLES_PER_S

    def synchronize(self) -> None:
        self.host = max(self.host, self.device_free)


class _FakeTorch:
    def __init__(self, cuda: _FakeCuda) -> None:
        self.cuda = cuda


def _timer(cuda: _FakeCuda) -> Timer:
    return Timer(_FakeTorch(cuda), "cuda", TimingPlan(warmup=1, min_repeats=5, max_repeats=5))


def test_gpu_timer_times_the_device_not_the_host() -> None:
    """Ten kernels of 1 us, each taking the host 20 us to issue: without the spin the
    events would measure the host's 200 us; with it, the device's 10 us."""
    cuda = _FakeCuda(host_per_launch=20e-6, kernel_s=1e-6)

    def fn(mark):
        for _ in range(10):
            cuda.launch()
        time.sleep(2e-4)  # the host's issue time, seen by the timer's perf_counter

    (t,), _ = _timer(cuda).measure(fn, flush=False)
    assert abs(t - 10e-6) < 1e-9
    # the spin is enqueued before every start event
    first = cuda.log.index("sleep")
    assert cuda.log[first + 1] == "event"


def test_gpu_timer_without_sleep_keeps_the_old_timing() -> None:
    cuda = _FakeCuda(host_per_launch=20e-6, kernel_s=1e-6)
    del _FakeCuda._sleep  # an older PyTorch without torch.cuda._sleep
    try:
        timer = _timer(cuda)

        def fn(mark):
            for _ in range(10):
                cuda.launch()

        (t,), _ = timer.measure(fn, flush=False)
        assert t > 150e-6  # the host-bound time the old method measured
    finally:
        _FakeCuda._sleep = _sleep_impl


_sleep_impl = _FakeCuda._sleep


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_sleep_cycles_cover_the_host_time_and_are_capped(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert sleep_cycles(lo) <= sleep_cycles(hi)
    assert sleep_cycles(hi) <= SLEEP_MAX_S * SLEEP_CYCLES_PER_S
    if SLEEP_FACTOR * hi <= SLEEP_MAX_S:
        assert sleep_cycles(hi) / SLEEP_CYCLES_PER_S >= SLEEP_FACTOR * hi - 1e-9


def test_grouped_mm_is_timed_only_where_it_is_one_fused_kernel() -> None:
    """``torch._grouped_mm`` runs one CUTLASS kernel for bf16 on compute capability 9.x and
    10.x; elsewhere its fallback synchronizes and loops on the host, so calibrate times
    ``torch.bmm`` instead (the CPU keeps ``_grouped_mm``)."""
    from types import SimpleNamespace

    from deepflow.hardware.calibrate.measure import grouped_mm_fused

    def ctx(device: str, backend: str, cap: tuple[int, int]) -> SimpleNamespace:
        cuda = SimpleNamespace(get_device_capability=lambda: cap)
        return SimpleNamespace(
            torch=SimpleNamespace(cuda=cuda), torch_device=device, backend=backend
        )

    assert grouped_mm_fused(ctx("cuda", "cuda", (9, 0)), "bf16")
    assert grouped_mm_fused(ctx("cuda", "cuda", (10, 0)), "bf16")
    assert not grouped_mm_fused(ctx("cuda", "cuda", (9, 0)), "fp16")
    assert not grouped_mm_fused(ctx("cuda", "cuda", (9, 0)), "fp32")
    assert not grouped_mm_fused(ctx("cuda", "cuda", (8, 0)), "bf16")
    assert not grouped_mm_fused(ctx("cuda", "cuda", (12, 0)), "bf16")
    assert not grouped_mm_fused(ctx("cuda", "rocm", (9, 4)), "bf16")
    assert grouped_mm_fused(ctx("cpu", "cpu", (0, 0)), "fp16")
