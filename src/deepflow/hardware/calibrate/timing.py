"""Timing one kernel (or a short sequence of them) on a device.

The method is Triton's ``do_bench`` (``triton/testing.py``): warm up, estimate the time of
one call, choose the repeat count that fills a time target, and time every repeat on its
own with a pair of ``torch.cuda.Event`` records around the call, after zeroing a buffer
larger than the L2 cache so that each call starts with cold caches (Triton zeroes 256 MB;
here ``max(256 MiB, 2 x L2)``). The result is the median of the repeats, which a stray
slow repeat (a clock change, another process) does not move.

The host must not be what is timed: an eager PyTorch call (a composite op, an autograd
backward, a loop of per-group GEMMs) can take the host longer to issue than the device to run,
and events around it then measure the host's issue time (the device waits for each launch).
So before the start event every GPU repeat enqueues ``torch.cuda._sleep`` (a spin kernel of a
given number of clock cycles, PyTorch's ``aten/src/ATen/cuda/Sleep.cu``) lasting at least
twice the host's issue time of one call (measured in the warm-up); the host then queues the
whole call while the device spins, and the events time the device's work alone (the method
of NVIDIA's nvbench, which blocks the stream while it enqueues the timed launches). Without
``_sleep`` (an older PyTorch) the repeats are timed as before.

A timed function may call ``mark()`` between its parts (forward, then backward): every
repeat then yields one cumulative time per mark and the total, and the median of each is
reported (``forward``, ``forward + backward``).

On the CPU, PyTorch's operators are synchronous, so ``time.perf_counter`` around the call
times it; the CPU path exists to run the same code in seconds (tests, CI), not to calibrate
a CPU, and flushes no cache.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["TimeUp", "Timer", "TimingPlan"]

Mark = Callable[[], None]


@dataclass(frozen=True)
class TimingPlan:
    """How long to time each measurement: ``warmup`` untimed calls, then as many timed
    repeats as fit in ``target_s`` (at least ``min_repeats``, at most ``max_repeats``)."""

    warmup: int = 3
    min_repeats: int = 5
    max_repeats: int = 50
    target_s: float = 0.15

    def repeats_for(self, estimate_s: float) -> int:
        n = int(self.target_s / max(estimate_s, 1e-7))
        return max(self.min_repeats, min(self.max_repeats, n))


SLEEP_CYCLES_PER_S = 3.0e9
"""Clock cycles per second assumed when sizing the launch-hiding spin kernel: above the
boost clock of every accelerator here (H100/H200/B200 1.98 GHz, MI300X 2.1 GHz), so that the
spin lasts at least as long as intended."""
SLEEP_FACTOR = 2.0
"""The spin lasts this many times the host's issue time of one call."""
SLEEP_MAX_S = 0.02
"""Longest spin: a call whose host time is longer waits for the device itself (a
device-to-host copy inside the call); spinning longer would only cost time."""


def sleep_cycles(host_s: float) -> int:
    """Cycles of the launch-hiding spin for a call the host issues in ``host_s`` seconds."""
    return int(min(SLEEP_FACTOR * max(host_s, 0.0), SLEEP_MAX_S) * SLEEP_CYCLES_PER_S)


class Timer:
    """Times callables on one device (``torch_device`` ``cuda`` or ``cpu``)."""

    def __init__(self, torch: Any, torch_device: str, plan: TimingPlan, flush_bytes: int = 0):
        self.torch = torch
        self.gpu = torch_device != "cpu"
        self.device = torch_device
        self.plan = plan
        self._cache = (
            torch.empty(flush_bytes // 4, dtype=torch.int32, device=torch_device)
            if flush_bytes > 0
            else None
        )
        cuda = getattr(torch, "cuda", None)
        self._sleep = getattr(cuda, "_sleep", None) if self.gpu else None

    def sync(self) -> None:
        if self.gpu:
            self.torch.cuda.synchronize()

    def flush(self) -> None:
        """Evict the operands from the caches (L2 on a GPU) before a timed call."""
        if self._cache is not None:
            self._cache.zero_()

    def _timed_gpu(
        self, fn: Callable[[Mark], object], flush: bool, cycles: int = 0
    ) -> list[list[Any]]:
        ev = self.torch.cuda.Event
        events: list[Any] = []

        def mark() -> None:
            e = ev(enable_timing=True)
            e.record()
            events.append(e)

        if flush:
            self.flush()
        if cycles > 0 and self._sleep is not None:
            self._sleep(cycles)  # the device spins while the host issues ``fn``
        start = ev(enable_timing=True)
        start.record()
        fn(mark)
        end = ev(enable_timing=True)
        end.record()
        return [start, *events, end]  # type: ignore[list-item]

    def measure(
        self,
        fn: Callable[[Mark], object],
        *,
        flush: bool = True,
        repeats: int | None = None,
        deadline: float | None = None,
    ) -> tuple[list[float], int]:
        """Median cumulative seconds at each ``mark()`` and at the end of ``fn``, and the
        number of timed repeats.

        The first call is a warm-up that also estimates the time of one call (libraries
        choose their algorithms on it); the remaining warm-ups and the repeats are as many
        as ``plan`` allows and fit before ``deadline`` (``time.perf_counter`` seconds).
        A call that would end past the deadline raises :class:`TimeUp`.
        """
        plan = self.plan
        t0 = time.perf_counter()
        fn(_no_mark)
        self.sync()
        estimate = time.perf_counter() - t0
        for _ in range(min(plan.warmup - 1, int(plan.target_s / max(estimate, 1e-7)))):
            fn(_no_mark)
        self.sync()
        cycles = 0
        if self.gpu and self._sleep is not None:
            t1 = time.perf_counter()
            fn(_no_mark)  # host issue time only: no synchronization inside
            cycles = sleep_cycles(time.perf_counter() - t1)
            self.sync()
            estimate += cycles / SLEEP_CYCLES_PER_S
        if repeats is None:
            repeats = plan.repeats_for(estimate)
        if deadline is not None:
            left = deadline - time.perf_counter()
            fits = int(left / max(estimate * 1.2, 1e-7))
            if fits < 1:
                raise TimeUp(f"one call takes {estimate:.2g} s, {max(left, 0):.2g} s left")
            repeats = min(repeats, fits)
        samples: list[list[float]] = []
        if self.gpu:
            pending = [self._timed_gpu(fn, flush, cycles) for _ in range(repeats)]
            self.sync()
            for evs in pending:
                start = evs[0]
                samples.append([start.elapsed_time(e) * 1e-3 for e in evs[1:]])
        else:
            for _ in range(repeats):
                stamps: list[float] = []
                t1 = time.perf_counter()
                fn(functools.partial(_stamp, stamps))
                stamps.append(time.perf_counter())
                samples.append([s - t1 for s in stamps])
        width = min(len(s) for s in samples)
        return [statistics.median(s[i] for s in samples) for i in range(width)], repeats


class TimeUp(Exception):
    """The time budget does not leave room for one more timed call."""


def _stamp(stamps: list[float]) -> None:
    stamps.append(time.perf_counter())


def _no_mark() -> None:
    return None
