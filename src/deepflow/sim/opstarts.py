"""Starting strategies of the per-operator search that other layers also use (the
co-design of operator-graph workloads evaluates them as candidates)."""

from __future__ import annotations

from deepflow.sim.kernelpar import KernelKind, KernelSplit, kernel_problem
from deepflow.sim.opsim import OpConfig, Strategy, data_parallel, partition_gemm
from deepflow.workload.opgraph import DimKind, Op, OpGraph

__all__ = ["divisors", "kernel_parallel_start", "kernel_splits", "split_param"]


def divisors(n: int, limit: int) -> list[int]:
    """The divisors of ``n`` up to ``limit``."""
    return [k for k in range(1, min(n, limit) + 1) if n % k == 0]


def split_param(op: Op, num_devices: int, start: int) -> OpConfig:
    """``op`` split on its splittable parameter dimensions, greedily, by the largest
    divisor that fits the devices left (model parallelism of a layer's weights)."""
    degrees = []
    left = num_devices
    for d in op.dims:
        if d.kind is DimKind.PARAMETER and d.splittable:
            k = max(divisors(d.size, left))
            degrees.append(k)
            left //= k
        else:
            degrees.append(1)
    return OpConfig(tuple(degrees), start)


def kernel_splits(op: Op, degrees: tuple[int, ...], room: int) -> list[KernelSplit]:
    """CR and RC splits of the partition GEMM of ``op`` at ``degrees`` on power-of-two
    grids of at most ``room`` devices."""
    m, n, k, _ = partition_gemm(op, degrees)
    pows = [2**i for i in range(room.bit_length()) if 2**i <= room]
    out = [KernelSplit(KernelKind.CR, p) for p in pows if p > 1]
    out += [KernelSplit(KernelKind.RC, p1, p2) for p1 in pows for p2 in pows if 1 < p1 * p2 <= room]
    return [s for s in out if kernel_problem(m, n, k, s) is None]


def kernel_parallel_start(graph: OpGraph, num_devices: int) -> Strategy:
    """DeepFlow's LSTM-LM layout as a start (arXiv 2211.03309; ``kp_hidden_type`` /
    ``kp_softmax_type`` ... in its configs): every op with a splittable parameter
    dimension (embedding width, vocabulary) split on it over all devices, every other op
    with a GEMM (an LSTM cell, whose gates FlexFlow cannot split) run as a CR kernel group
    over the largest power-of-two group that divides its ``k``, the rest data parallel.
    Every weight is then sharded over the machine, which is what lets a model whose
    weights and optimizer state exceed one device's memory fit."""
    dp = data_parallel(graph, num_devices)
    out = []
    for op, base in zip(graph.ops, dp, strict=True):
        if any(d.kind is DimKind.PARAMETER and d.splittable for d in op.dims):
            out.append(split_param(op, num_devices, 0))
            continue
        if op.gemm is not None:
            ones = tuple(1 for _ in op.dims)
            cr = [s for s in kernel_splits(op, ones, num_devices) if s.kind is KernelKind.CR]
            if cr:
                out.append(OpConfig(ones, 0, max(cr, key=lambda s: s.kp1)))
                continue
        out.append(base)
    return tuple(out)
