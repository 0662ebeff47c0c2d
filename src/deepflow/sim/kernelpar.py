"""Kernel-level parallelism: one GEMM split over a ``kp1 x kp2`` grid of devices.

DeepFlow (Ardalani, Pal and Gupta, arXiv 2211.03309) splits each GEMM ``C[m, n] = A[m, k]
W[k, n]`` of its LSTM language model over a *kernel group* of devices in one of two ways.
Both are defined in its public code, ``nanocad-lab/DeepFlow``, ``time_calculation.py``
(class ``TimeCalculation``):

**CR, column-row** (``kp_*_type = 1``, ``getDistGEMM_f_kp1`` / ``getDistGEMM_b_kp1``): the
reduction dimension ``k`` is split over ``kp1`` devices (columns of ``A``, rows of ``W``).

* forward: each device runs ``[m, k/kp1] x [k/kp1, n]`` and the partial ``C`` are summed
  by a **reduce-scatter** of ``m n`` elements over the ``kp1`` devices;
* backward: the output gradient ``dC`` (``m n`` elements) is **all-gathered** over
  ``kp1``, then each device computes its weight-gradient shard ``[k/kp1, m] x [m, n]``
  and its input-gradient shard ``[m, n] x [n, k/kp1]``;
* each device holds ``k n / kp1`` weights.

**RC, row-column** (``kp_*_type = 2``, ``getDistGEMM_f_kp2`` / ``getDistGEMM_b_kp2``): the
rows of ``A`` (``m``) are split over ``kp1`` and the columns of ``W`` (``n``) over ``kp2``.

* forward: each device runs ``[m/kp1, k] x [k, n/kp2]``; the rows ``C[m/kp1, n]`` are
  **all-gathered** over the ``kp2`` devices of a row;
* backward (all four **all-gathers**, as the code's comment states): ``A^T`` (``k m``
  elements) over ``kp1``; the column block of ``dC`` (``m n/kp2``) over ``kp1``; the row
  block of ``dC`` (``m/kp1 n``) over ``kp2``; ``W^T`` (``k n``) over ``kp2``; then the
  weight gradient ``[k/kp1, m] x [m, n/kp2]`` and the input gradient ``[m/kp1, n] x
  [n, k/kp2]``;
* weight synchronization (``getDataParallelReduction``, RC branch): the ``k n/kp2`` weight
  column is **all-gathered** over ``kp1`` after the update; each device holds
  ``k n / (kp1 kp2)`` weights.

Collective sizes follow :class:`deepflow.network.Collective`: the full buffer of one rank
(the gathered result of an all-gather, the input of a reduce-scatter). DeepFlow adds the
collective time to the GEMM time of the same kernel (``GEMM_time + reduction_time``), and
so does :func:`kernel_times`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from deepflow.network import Collective

__all__ = [
    "KernelCollective",
    "KernelKind",
    "KernelSplit",
    "kernel_collectives",
    "kernel_gemms",
    "kernel_problem",
    "ring_bytes_per_device",
]


class KernelKind(str, Enum):
    """DeepFlow's two kernel-parallel GEMM splits."""

    CR = "cr"
    RC = "rc"


@dataclass(frozen=True, slots=True)
class KernelSplit:
    """A GEMM split over ``kp1 x kp2`` devices (CR uses ``kp1`` only)."""

    kind: KernelKind
    kp1: int
    kp2: int = 1

    @property
    def size(self) -> int:
        return self.kp1 * self.kp2

    def __str__(self) -> str:
        if self.kind is KernelKind.CR:
            return f"CR{self.kp1}"
        return f"RC{self.kp1}x{self.kp2}"


@dataclass(frozen=True, slots=True)
class KernelCollective:
    """One collective of a kernel-parallel GEMM: ``size`` elements (full buffer of one
    rank) over ``participants`` devices, in phase ``F`` (forward), ``B`` (backward) or
    ``S`` (weight synchronization)."""

    name: str
    op: Collective
    size: float
    participants: int
    phase: str


def kernel_problem(m: int, n: int, k: int, split: KernelSplit) -> str | None:
    """Why ``split`` cannot split ``[m, k] x [k, n]`` evenly, or ``None``."""
    if split.kp1 < 1 or split.kp2 < 1:
        return f"kernel degrees must be >= 1, got {split.kp1} x {split.kp2}"
    if split.kind is KernelKind.CR:
        if split.kp2 != 1:
            return f"a CR split has kp2 = 1, got {split.kp2}"
        if k % split.kp1:
            return f"CR kp1={split.kp1} does not divide k={k}"
        return None
    if m % split.kp1:
        return f"RC kp1={split.kp1} does not divide m={m}"
    if n % split.kp2 or k % split.kp2 or k % split.kp1:
        return f"RC kp2={split.kp2} / kp1={split.kp1} does not divide n={n}, k={k}"
    return None


def kernel_gemms(
    m: int, n: int, k: int, split: KernelSplit
) -> tuple[tuple[int, int, int], list[tuple[int, int, int]]]:
    """Per-device ``(m, n, k)`` of the forward GEMM and of the backward GEMMs (weight
    gradient, input gradient)."""
    p1, p2 = split.kp1, split.kp2
    if split.kind is KernelKind.CR:
        return (m, n, k // p1), [(k // p1, n, m), (m, k // p1, n)]
    return (m // p1, n // p2, k), [(k // p1, n // p2, m), (m // p1, k // p2, n)]


def kernel_collectives(m: int, n: int, k: int, split: KernelSplit) -> list[KernelCollective]:
    """The collectives of one kernel-parallel GEMM (module docstring), sizes in elements."""
    p1, p2 = split.kp1, split.kp2
    if split.kind is KernelKind.CR:
        out = [
            KernelCollective("sum partial C", Collective.REDUCE_SCATTER, m * n, p1, "F"),
            KernelCollective("gather dC", Collective.ALL_GATHER, m * n, p1, "B"),
        ]
    else:
        out = [
            KernelCollective("gather C rows", Collective.ALL_GATHER, m / p1 * n, p2, "F"),
            KernelCollective("gather A^T", Collective.ALL_GATHER, k * m, p1, "B"),
            KernelCollective("gather dC columns", Collective.ALL_GATHER, m * n / p2, p1, "B"),
            KernelCollective("gather dC rows", Collective.ALL_GATHER, m / p1 * n, p2, "B"),
            KernelCollective("gather W^T", Collective.ALL_GATHER, k * n, p2, "B"),
            KernelCollective("gather W columns", Collective.ALL_GATHER, k * n / p2, p1, "S"),
        ]
    return [c for c in out if c.participants > 1]


def ring_bytes_per_device(c: KernelCollective, elem_bytes: float) -> float:
    """Bytes each device sends in collective ``c`` on a ring: ``(p-1)/p`` of the buffer for
    an all-gather or a reduce-scatter (Thakur, Rabenseifner, Gropp 2005, sec. 4)."""
    p = c.participants
    return (p - 1) / p * c.size * elem_bytes


def kernel_times(
    m: int,
    n: int,
    k: int,
    split: KernelSplit,
    gemm: Callable[[int, int, int], float],
    collective: Callable[[Collective, float, int], float],
    elem_bytes: float,
) -> tuple[float, float, float]:
    """Forward, backward and weight-synchronization seconds of one kernel-parallel GEMM:
    per-device GEMM times from ``gemm(m, n, k)`` plus the collectives, each priced by
    ``collective(op, bytes, participants)`` (DeepFlow sums the two, module docstring)."""
    fwd_shape, bwd_shapes = kernel_gemms(m, n, k, split)
    t = {"F": gemm(*fwd_shape), "B": sum(gemm(*s) for s in bwd_shapes), "S": 0.0}
    for c in kernel_collectives(m, n, k, split):
        t[c.phase] += collective(c.op, c.size * elem_bytes, c.participants)
    return t["F"], t["B"], t["S"]
