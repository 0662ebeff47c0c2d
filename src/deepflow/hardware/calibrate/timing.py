"""Timing one kernel (or a short sequence of them) on a device.

The method is Triton's ``do_bench`` (``triton/testing.py``): warm up, estimate the time of
one call, choose the repeat count that fills a time target, and time every repeat on its
own with a pair of ``torch.cuda.Event`` records around the call, after zeroing a buffer
larger than the L2 cache so that each call starts with cold caches (Triton zeroes 256 MB;
here ``max(256 MiB, 2 x L2)``). The result is the median of the repeats, which a stray
slow repeat (a clock change, another process) does not move.

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

    def sync(self) -> None:
        if self.gpu:
            self.torch.cuda.synchronize()

    def flush(self) -> None:
        """Evict the operands from the caches (L2 on a GPU) before a timed call."""
        if self._cache is not None:
            self._cache.zero_()

    def _timed_gpu(self, fn: Callable[[Mark], object], flush: bool) -> list[list[Any]]:
        ev = self.torch.cuda.Event
        events: list[Any] = []

        def mark() -> None:
            e = ev(enable_timing=True)
            e.record()
            events.append(e)

        if flush:
            self.flush()
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
            pending = [self._timed_gpu(fn, flush) for _ in range(repeats)]
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
