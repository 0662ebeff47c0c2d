"""ASTRA-sim's analytical, congestion-unaware timing, in integer nanoseconds.

ASTRA-sim runs on a 1 ns clock and truncates each delay to whole ticks, so these functions
work in integer ns (``*_ns``) to reproduce its numbers exactly; callers convert to seconds.

Point to point (astra-network-analytical, congestion-unaware backend; reference doc
section 2.2): a message between two NPUs uses only the first dimension in which their
coordinates differ and takes ``floor(hops * latency + size / bandwidth)`` ns, with ``hops``
from :meth:`NetworkDim.hops`. There is no contention.

Native collectives (astra-sim ``Sys::generate_collective``, ``Ring.cc``; reference doc
section 2.6):

* a collective of ``S`` bytes is cut into ``preferred-dataset-splits`` chunks of
  ``max(S / splits, N)`` bytes (no minimum for all-gather), ``N`` the NPUs taking part;
* each chunk runs a sequence of *phases*, one per network dimension
  (:func:`phase_plan`); a phase on ``p`` NPUs with ``d`` bytes costs
  :func:`ring_phase_ns`;
* a dimension runs at most ``active-chunks-per-dimension`` chunks at once (the executor
  queues them, :mod:`deepflow.interop.astra.executor`).

The ring phase cost, with ``m`` the per-message size, ``hop = floor(hops*latency +
m/bandwidth)``, ``red = 3 * floor(m / local_mem_bw)`` (two reads and one write,
``PacketBundle::call``) and ``ed`` the endpoint delay::

    all-reduce      2(p-1) messages of d/p: (p-1)(hop + red) + (p-1) hop + (2(p-1)+1) ed
    reduce-scatter   (p-1) messages of d/p: (p-1)(hop + red)            + p ed,  d -> d/p
    all-gather       (p-1) messages of d:   (p-1) hop                   + p ed,  d -> d p
    all-to-all  p(p-1)/2 messages of d/p:   p(p-1)/2 hop                + (p(p-1)/2 + 1) ed

One endpoint delay per message plus one per phase: this count is the one that reproduces
ASTRA-sim's regression reference exactly (8-NPU ring, 1 MiB all-reduce, 4 splits ->
4 x 29,445 = 117,780 ns; reference doc section 2.7, where the count is labelled a fit).
Only the ``ring`` implementation is modelled; other native algorithms raise.

What comes from the network layer and what stays here: hop counts
(:func:`deepflow.network.dims.hops`), mixed-radix coordinates, and the ring's step counts
(the rounds of :func:`deepflow.network.algorithms.ring.ring_reduce_scatter_rounds` and
``ring_all_gather_rounds``, ``p - 1`` each) are shared. The per-message cost stays here
because ASTRA-sim's differs from the network layer's in ways its golden numbers depend on:
every hop is truncated to whole nanoseconds (the network layer works in float seconds),
``GB`` is ``2**30`` bytes, a reduction costs ``3 floor(m / local_mem_bw)`` ns of local memory
work that the network layer does not model, and each message and phase pays an endpoint
delay. Recomputing the 117,780 ns reference from the float closed form
(:meth:`deepflow.network.Ring.closed_form`) would lose the truncations (3.4 ns per chunk)
and the reduction and endpoint terms, so only the integer form below reproduces it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from functools import cache

from deepflow.errors import TraceError
from deepflow.interop.astra.network import NetworkConfig, NetworkDim
from deepflow.interop.astra.system import CollectiveImpl, CollectiveOptimization, SystemConfig
from deepflow.network.algorithms.ring import ring_all_gather_rounds, ring_reduce_scatter_rounds

__all__ = [
    "NativeCollective",
    "Phase",
    "chunk_plan",
    "link_time_ns",
    "p2p_delay_ns",
    "phase_plan",
    "reduction_ns",
    "ring_phase_ns",
    "ring_steps",
    "to_ns",
]


class NativeCollective(str, Enum):
    """The collectives ASTRA-sim simulates natively, named as in the system JSON."""

    ALL_REDUCE = "all-reduce"
    REDUCE_SCATTER = "reduce-scatter"
    ALL_GATHER = "all-gather"
    ALL_TO_ALL = "all-to-all"


def to_ns(seconds: float) -> float:
    """Seconds -> ns, rounded to 1e-6 ns to undo the binary noise of the s <-> ns
    conversions (500 ns is stored as 5.000000000000001e-07 s)."""
    return round(seconds * 1e9, 6)


def link_time_ns(dim: NetworkDim, size: float, hops: int) -> int:
    """``floor(hops * latency + size / bandwidth)`` ns over ``hops`` links of ``dim``
    (astra-network-analytical congestion-unaware ``send``; reference doc section 2.2)."""
    bytes_per_ns = dim.bandwidth_Bps / 1e9
    return math.floor(hops * to_ns(dim.latency_s) + size / bytes_per_ns)


def p2p_delay_ns(network: NetworkConfig, src: int, dst: int, size: float) -> int:
    """Delay of a ``size``-byte message from NPU ``src`` to NPU ``dst``: it travels in the
    first dimension where their coordinates differ (reference doc section 2.2)."""
    a, b = network.coordinates(src), network.coordinates(dst)
    for dim, x, y in zip(network.dims, a, b, strict=True):
        if x != y:
            return link_time_ns(dim, size, dim.hops(x, y))
    return 0


def reduction_ns(size: float, system: SystemConfig) -> int:
    """``3 * floor(size / local_mem_bw)`` ns: two reads and one write of local memory
    (astra-sim ``PacketBundle::call``; reference doc section 2.6)."""
    if system.local_mem_bw_Bps is None or system.local_mem_bw_Bps <= 0:
        raise TraceError(
            f"{system.source}: local-mem-bw: needed for the reduction cost of a collective, "
            "but not set"
        )
    return 3 * math.floor(size / (system.local_mem_bw_Bps / 1e9))


@dataclass(frozen=True)
class Phase:
    """One step of a chunk's journey: collective ``op`` over dimension ``dim`` (its index
    in the network) among ``npus`` NPUs."""

    dim: int
    op: NativeCollective
    npus: int


def phase_plan(
    op: NativeCollective,
    dims: list[tuple[int, int]],
    optimization: CollectiveOptimization,
) -> list[Phase]:
    """Phases of ``op`` over the active dimensions ``dims`` (``(index, npus)``, ascending),
    as ``Sys::generate_collective`` orders them (reference doc section 2.6):

    * ``localBWAware`` all-reduce over D dimensions: reduce-scatter in dimensions
      0..D-2, all-reduce in the last, all-gather back in D-2..0;
    * otherwise the same collective in every dimension, all-gather in reverse order.
    """
    if not dims:
        return []
    if op is NativeCollective.ALL_REDUCE and optimization is CollectiveOptimization.LOCAL_BW_AWARE:
        *inner, last = dims
        rs = [Phase(i, NativeCollective.REDUCE_SCATTER, p) for i, p in inner]
        ag = [Phase(i, NativeCollective.ALL_GATHER, p) for i, p in reversed(inner)]
        return [*rs, Phase(last[0], NativeCollective.ALL_REDUCE, last[1]), *ag]
    order = reversed(dims) if op is NativeCollective.ALL_GATHER else dims
    return [Phase(i, op, p) for i, p in order]


@cache
def ring_steps(p: int) -> tuple[int, int]:
    """Messages per rank of a ring reduce-scatter and all-gather over ``p`` NPUs: the round
    counts of the network layer's ring schedules, ``(p - 1, p - 1)``."""
    return len(ring_reduce_scatter_rounds(p, 1)), len(ring_all_gather_rounds(p, 1))


def ring_phase_ns(
    phase: Phase,
    data: float,
    network: NetworkConfig,
    system: SystemConfig,
) -> tuple[int, float]:
    """``(time in ns, bytes left per NPU)`` of one ring phase on ``data`` bytes (see the
    module docstring for the formulas)."""
    impls = system.implementation(phase.op.value)
    if phase.dim >= len(impls):
        raise TraceError(
            f"{system.source}: {phase.op.value}-implementation: has {len(impls)} entries but "
            f"the network has a dimension {phase.dim} (one entry per dimension is needed)"
        )
    impl = impls[phase.dim]
    if impl is not CollectiveImpl.RING:
        raise TraceError(
            f"{system.source}: {phase.op.value}-implementation[{phase.dim}]: {impl.value!r} is "
            "not modelled by deepflow's analytical replay (only 'ring' is)"
        )
    dim = network.dims[phase.dim]
    p = phase.npus
    rs_steps, ag_steps = ring_steps(p)
    ed = to_ns(system.endpoint_delay_s)
    ring_hops = dim.hops(0, 1)
    if phase.op is NativeCollective.ALL_GATHER:
        hop = link_time_ns(dim, data, ring_hops)
        return math.floor(ag_steps * hop + p * ed), data * p
    m = data / p
    hop = link_time_ns(dim, m, ring_hops)
    if phase.op is NativeCollective.ALL_TO_ALL:
        msgs = p * (p - 1) // 2
        return math.floor(msgs * hop + (msgs + 1) * ed), data
    red = reduction_ns(m, system)
    if phase.op is NativeCollective.REDUCE_SCATTER:
        return math.floor(rs_steps * (hop + red) + p * ed), m
    # all-reduce: reduce-scatter ring then all-gather ring on the same messages
    msgs = rs_steps + ag_steps
    return math.floor(rs_steps * (hop + red) + ag_steps * hop + (msgs + 1) * ed), data


def chunk_plan(op: NativeCollective, size: int, npus: int, splits: int) -> list[float]:
    """Chunk sizes of a ``size``-byte collective over ``npus`` NPUs cut into ``splits``
    (``determine_chunk_size``: ``max(size / splits, npus)`` except for all-gather)."""
    chunk = size / splits
    if op is not NativeCollective.ALL_GATHER and chunk < npus:
        chunk = float(npus)
        return [chunk] * max(1, math.ceil(size / chunk))
    return [chunk] * splits
