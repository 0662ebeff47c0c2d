"""CPU time per step against the number of virtual nodes V, measured with the PyTorch
runtime on one process, compared with the VirtualFlow time model.

VirtualFlow (Or et al., MLSys 2022, arXiv 2009.09523) processes a replica's V VNs one after
another, so the time of a step is (reference sec. 5.2)::

    T(V) = V tau(s) + (V - 1) t_acc + t_opt,        s = B / V

with ``tau(s)`` the forward and backward time of one VN of ``s`` samples. Two sweeps:

1. fixed per-VN work (``s`` fixed, ``B = V s``): ``T`` is linear in ``V``; the script fits
   ``T = a V + c`` to the measurements and prints the fit and its worst relative error;
2. fixed global batch (``B`` fixed, ``s = B / V``): the prediction uses ``tau(s)`` measured
   once per VN size (one forward + backward alone) plus the measured ``t_opt``; the script
   prints the measured and predicted step times and their ratio.

Run: ``python bench/bench_virtual_nodes.py`` (needs torch; a few tens of seconds).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from deepflow.virtual.torch_runtime import virtual_node_step

FEATURES, HIDDEN, DEPTH = 512, 1024, 4
REPEATS, WARMUP = 7, 2


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    width = FEATURES
    for _ in range(DEPTH):
        layers += [torch.nn.Linear(width, HIDDEN), torch.nn.GELU()]
        width = HIDDEN
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def timed(fn) -> float:
    for _ in range(WARMUP):
        fn()
    samples = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def step_time(batch: int, v: int) -> float:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, FEATURES), torch.randn(batch, 1)
    loss = torch.nn.functional.mse_loss
    return timed(lambda: virtual_node_step(model, opt, loss, x, y, virtual_nodes=v))


def vn_time(s: int) -> float:
    """tau(s): forward + backward of one VN of s samples, gradients accumulated."""
    model = make_model()
    x, y = torch.randn(s, FEATURES), torch.randn(s, 1)

    def run() -> None:
        torch.nn.functional.mse_loss(model(x), y).backward()

    return timed(run)


def opt_time() -> float:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)

    def run() -> None:
        for p in model.parameters():
            p.grad.div_(2.0)  # the divide-by-V of the runtime
        opt.step()

    return timed(run)


def main() -> None:
    torch.set_num_threads(1)
    vs = [1, 2, 4, 8, 16, 32]
    print(f"torch {torch.__version__}, 1 thread, MLP {FEATURES}-{HIDDEN}x{DEPTH}-1")

    s = 16
    print(f"\n1) fixed per-VN batch s = {s}: T(V) = a V + c expected")
    measured = np.array([step_time(v * s, v) for v in vs])
    a, c = np.polyfit(vs, measured, 1)
    fit = a * np.array(vs) + c
    print(f"{'V':>4} {'B':>6} {'measured ms':>12} {'fit ms':>9} {'err':>7}")
    for v, m, f in zip(vs, measured, fit, strict=True):
        print(f"{v:>4} {v * s:>6} {1e3 * m:>12.2f} {1e3 * f:>9.2f} {(m - f) / f:>+7.1%}")
    print(f"fit: a = {1e3 * a:.2f} ms per VN, c = {1e3 * c:.2f} ms; "
          f"worst error {np.max(np.abs(measured - fit) / fit):.1%}")  # fmt: skip

    batch = 256
    print(f"\n2) fixed global batch B = {batch}: T(V) = V tau(B/V) + t_opt predicted")
    t_opt = opt_time()
    print(
        f"{'V':>4} {'s':>5} {'tau(s) ms':>10} {'predicted ms':>13} {'measured ms':>12} {'ratio':>6}"
    )
    for v in vs:
        tau = vn_time(batch // v)
        pred = v * tau + t_opt
        meas = step_time(batch, v)
        print(f"{v:>4} {batch // v:>5} {1e3 * tau:>10.2f} {1e3 * pred:>13.2f} "
              f"{1e3 * meas:>12.2f} {meas / pred:>6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
