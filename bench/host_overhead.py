"""Measure the host-side dispatch cost of one eager PyTorch operator.

The figure is the ``host_overhead`` default of :class:`deepflow.specs.Efficiency`: the CPU
time a framework spends to issue one kernel (Python, dispatcher, autograd recording),
which bounds how fast small kernels can run back to back. Run on the host CPU of interest:

    pip install torch && python bench/host_overhead.py

Recorded on the development machine (2 cores, Python 3.11, torch 2.13.0 CPU build):
15.3 us per functional op (linear, gelu, dropout, add; forward with autograd recording),
15.6 us per nn.Module call (Linear, LayerNorm).
"""

from __future__ import annotations

import time


def main() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - optional
        print("torch is not installed: pip install torch")
        return
    torch.set_num_threads(1)
    x = torch.randn(8, 8, requires_grad=True)
    w = torch.randn(8, 8, requires_grad=True)
    linear, norm = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)

    def functional() -> torch.Tensor:
        y = torch.nn.functional.linear(x, w)
        y = torch.nn.functional.gelu(y)
        y = torch.nn.functional.dropout(y, 0.1, True)
        return y + x

    for name, fn, ops in [
        ("functional op", functional, 4),
        ("module call", lambda: norm(linear(x)), 2),
    ]:
        for _ in range(500):
            fn()
        n = 20000
        start = time.perf_counter()
        for _ in range(n):
            fn()
        per_op = (time.perf_counter() - start) / n / ops
        print(f"{name}: {per_op * 1e6:.1f} us per op")


if __name__ == "__main__":
    main()
