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
  :func:`phase_ns` (the ring: :func:`ring_phase_ns`);
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

The other native implementations (``direct``, ``halvingDoubling``, ``doubleBinaryTree``;
reference doc section 2.6) follow the same rules: congestion-unaware messages (no link is
shared, so messages sent at once overlap completely), each ``floor``-ed to whole ns, a
reduction of ``3 floor(m / local_mem_bw)`` per received message that is reduced, and one
endpoint delay per *round* of messages plus one per phase (in the ring every message is its
own round, so this is the ring's count). ``hop(m, h) = floor(h * latency + m/bandwidth)``:

* ``direct`` (a direct exchange, all ``p - 1`` messages at once; ``h`` the hops to the
  farthest peer)::

    all-reduce      hop(d/p) + red(d/p) + hop(d/p) + 3 ed                  d -> d
    reduce-scatter  hop(d/p) + red(d/p) + 2 ed                             d -> d/p
    all-gather      hop(d) + 2 ed                                          d -> d p
    all-to-all      hop(d/p) + 2 ed                                        d -> d

* ``halvingDoubling`` (power-of-two ``p``; ``log2 p`` pairwise exchanges with the partner
  at distance ``1, 2, 4 ...``, the message halving from ``d/2``; the all-gather half
  retraces them, distance ``p/2`` first). ``HalvingDoubling.cc`` releases the first packet
  of each half unprocessed (``zero_latency_packets``), so only the later ``log2 p - 1``
  messages of the reduce-scatter half are reduced, each at its own size (difference D1 of
  the conformance README)::

    reduce-scatter  sum_s [hop(d/2^(s+1), h_s)] + sum_(s>=1) red(d/2^(s+1)) + (log2 p + 1) ed
    all-gather      sum_s hop(d 2^s, h_(L-1-s)) + (log2 p + 1) ed
    all-reduce      reduce-scatter rounds + all-gather rounds + (2 log2 p + 1) ed

  It has no all-to-all.
* ``doubleBinaryTree`` (all-reduce only): ASTRA-sim's, the *whole* chunk reduced up one
  binary tree and broadcast back down (``DoubleBinaryTreeAllReduce.cc``); consecutive
  chunks alternate the trees ``RootMax`` and ``RootMin`` (``DoubleBinaryTreeTopology.cc``),
  and the NPUs finish at different times, so the executor runs it message by message
  (:mod:`deepflow.interop.astra.native`, difference D2); :func:`double_binary_tree_phase_ns`
  is the one-chunk makespan.
* ``ncclDoubleBinaryTree`` (deepflow's name, all-reduce only, not accepted by ASTRA-sim):
  NCCL's two binary trees
  (:func:`deepflow.network.algorithms.double_binary_tree.double_tree`, shared with the
  network layer) each carry ``d/2``; a node sends up once each child's message has arrived
  (``ed + hop``) and been reduced (one ``red(d/2)`` per child), the root's result goes down
  the same edges, and the phase ends when the last leaf of the slower tree has it, plus one
  ``ed``.

Where these match the network layer's closed forms (:mod:`deepflow.network.algorithms`) and
where they do not, with endpoint delay and reduction set to zero:

* on a ``FullyConnected`` dimension (one link per peer, so ASTRA-sim's no-contention rule
  and the network layer's port model agree) ``direct``, ``halvingDoubling`` and
  ``ncclDoubleBinaryTree`` equal the network layer's ``Direct``, ``HalvingDoubling`` (per-rank
  bandwidth ``(p-1) B``, ``alpha = latency``) and ``DoubleBinaryTree`` (one chunk, tree links
  of ``B``) up to the ``floor`` of each message (at most 1 ns per round);
* on a ``Switch`` ``halvingDoubling`` also matches (one message per round), but ``direct``
  does not: ASTRA-sim's congestion-unaware backend lets an NPU's ``p - 1`` messages overlap,
  where the network layer's switch port carries them one after another, so the bandwidth
  term is ``(p - 1)`` times smaller here;
* on a ``Ring`` dimension the distant partners of ``direct`` and ``halvingDoubling`` cost
  their hop count in latency only (no link sharing), as in ASTRA-sim's congestion-unaware
  backend.

Every native implementation is checked against real ASTRA-sim runs: the conformance cases
(``tests/fixtures/astra-sim/conformance``, ``tests/interop/test_astra_conformance.py``) match
to the nanosecond on every rank. The ``one*``
variants (``oneRing``, ``oneDirect``, ``oneHalvingDoubling``) are not modelled and raise.

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
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cache

from deepflow.errors import TraceError
from deepflow.interop.astra.network import NetworkConfig, NetworkDim
from deepflow.interop.astra.system import CollectiveImpl, CollectiveOptimization, SystemConfig
from deepflow.network.algorithms.double_binary_tree import double_tree
from deepflow.network.algorithms.ring import ring_all_gather_rounds, ring_reduce_scatter_rounds

__all__ = [
    "PHASE_COSTS",
    "NativeCollective",
    "Phase",
    "binary_tree",
    "chunk_plan",
    "direct_phase_ns",
    "double_binary_tree_phase_ns",
    "halving_doubling_phase_ns",
    "link_time_ns",
    "nccl_double_binary_tree_phase_ns",
    "p2p_delay_ns",
    "phase_ns",
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
    in the network) among ``npus`` NPUs, with the algorithm that the system JSON lists for
    collective ``listed`` (``op`` itself unless the phase belongs to a localBWAware
    all-reduce, which takes every phase's algorithm from ``all-reduce-implementation``)."""

    dim: int
    op: NativeCollective
    npus: int
    listed: NativeCollective | None = None

    @property
    def implementation_of(self) -> NativeCollective:
        """The collective whose ``*-implementation`` list names this phase's algorithm."""
        return self.op if self.listed is None else self.listed


def phase_plan(
    op: NativeCollective,
    dims: list[tuple[int, int]],
    optimization: CollectiveOptimization,
) -> list[Phase]:
    """Phases of ``op`` over the active dimensions ``dims`` (``(index, npus)``, ascending),
    as ``Sys::generate_collective`` orders them (reference doc section 2.6):

    * ``localBWAware`` all-reduce over D dimensions: reduce-scatter in dimensions
      0..D-2, all-reduce in the last, all-gather back in D-2..0, every phase with the
      algorithm of ``all-reduce-implementation[dim]`` (``Sys::generate_collective`` passes
      the all-reduce list to every phase; the reduce-scatter and all-gather lists are not
      read: difference D3 of the conformance README);
    * otherwise the same collective in every dimension, all-gather in reverse order.
    """
    if not dims:
        return []
    if op is NativeCollective.ALL_REDUCE and optimization is CollectiveOptimization.LOCAL_BW_AWARE:
        *inner, last = dims
        rs = [Phase(i, NativeCollective.REDUCE_SCATTER, p, op) for i, p in inner]
        ag = [Phase(i, NativeCollective.ALL_GATHER, p, op) for i, p in reversed(inner)]
        return [*rs, Phase(last[0], NativeCollective.ALL_REDUCE, last[1]), *ag]
    order = reversed(dims) if op is NativeCollective.ALL_GATHER else dims
    return [Phase(i, op, p) for i, p in order]


@cache
def ring_steps(p: int) -> tuple[int, int]:
    """Messages per rank of a ring reduce-scatter and all-gather over ``p`` NPUs: the round
    counts of the network layer's ring schedules, ``(p - 1, p - 1)``."""
    return len(ring_reduce_scatter_rounds(p, 1)), len(ring_all_gather_rounds(p, 1))


def _impl(phase: Phase, system: SystemConfig) -> CollectiveImpl:
    listed = phase.implementation_of.value
    impls = system.implementation(listed)
    if phase.dim >= len(impls):
        raise TraceError(
            f"{system.source}: {listed}-implementation: has {len(impls)} entries but "
            f"the network has a dimension {phase.dim} (one entry per dimension is needed)"
        )
    impl = impls[phase.dim]
    if impl not in PHASE_COSTS:
        modelled = ", ".join(repr(i.value) for i in PHASE_COSTS)
        raise TraceError(
            f"{system.source}: {listed}-implementation[{phase.dim}]: {impl.value!r} is "
            f"not modelled by deepflow's analytical replay (modelled: {modelled})"
        )
    return impl


def phase_ns(
    phase: Phase,
    data: float,
    network: NetworkConfig,
    system: SystemConfig,
) -> tuple[int, float]:
    """``(time in ns, bytes left per NPU)`` of one phase on ``data`` bytes, by the
    implementation the system configuration names for the phase's collective and dimension
    (the module docstring gives each algorithm's formula)."""
    impl = _impl(phase, system)
    return PHASE_COSTS[impl](phase, data, network, system)


def ring_phase_ns(
    phase: Phase,
    data: float,
    network: NetworkConfig,
    system: SystemConfig,
) -> tuple[int, float]:
    """``(time in ns, bytes left per NPU)`` of one ring phase on ``data`` bytes (see the
    module docstring for the formulas)."""
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


def direct_phase_ns(
    phase: Phase,
    data: float,
    network: NetworkConfig,
    system: SystemConfig,
) -> tuple[int, float]:
    """One ``direct`` phase: every NPU sends to all ``p - 1`` peers at once, one round per
    exchange (see the module docstring)."""
    dim = network.dims[phase.dim]
    p = phase.npus
    ed = to_ns(system.endpoint_delay_s)
    hops = _farthest(dim, p)
    if phase.op is NativeCollective.ALL_GATHER:
        return math.floor(link_time_ns(dim, data, hops) + 2 * ed), data * p
    m = data / p
    hop = link_time_ns(dim, m, hops)
    if phase.op is NativeCollective.ALL_TO_ALL:
        return math.floor(hop + 2 * ed), data
    red = reduction_ns(m, system)
    if phase.op is NativeCollective.REDUCE_SCATTER:
        return math.floor(hop + red + 2 * ed), m
    return math.floor(2 * hop + red + 3 * ed), data


def halving_doubling_phase_ns(
    phase: Phase,
    data: float,
    network: NetworkConfig,
    system: SystemConfig,
) -> tuple[int, float]:
    """One ``halvingDoubling`` phase: ``log2 p`` pairwise exchanges per half (see the module
    docstring)."""
    dim = network.dims[phase.dim]
    p = phase.npus
    if p & (p - 1) or phase.op is NativeCollective.ALL_TO_ALL:
        what = "all-to-all" if phase.op is NativeCollective.ALL_TO_ALL else f"{p} NPUs"
        raise TraceError(
            f"{system.source}: {phase.op.value}-implementation[{phase.dim}]: "
            f"'halvingDoubling' needs a power-of-two NPU count and a reducing or gathering "
            f"collective; this phase has {what}"
        )
    ed = to_ns(system.endpoint_delay_s)
    steps = p.bit_length() - 1
    offsets = [1 << s for s in range(steps)]  # partner distance 1, 2, 4 ... (rank XOR offset)
    total = 0
    if phase.op is not NativeCollective.ALL_GATHER:
        m = data
        for s, o in enumerate(offsets):  # reduce-scatter: halve the data each step
            m /= 2
            total += link_time_ns(dim, m, dim.hops(0, o))
            if s > 0:
                # HalvingDoubling.cc releases the first packet of each half through the
                # zero-latency path unprocessed; the later log2(p) - 1 are reduced, each
                # packet at the size it is sent with (difference D1)
                total += reduction_ns(m, system)
        if phase.op is NativeCollective.REDUCE_SCATTER:
            return math.floor(total + (steps + 1) * ed), data / p
        for o in reversed(offsets):  # all-gather back: double the data each step
            total += link_time_ns(dim, m, dim.hops(0, o))
            m *= 2
        return math.floor(total + (2 * steps + 1) * ed), data
    m = data
    for o in reversed(offsets):
        total += link_time_ns(dim, m, dim.hops(0, o))
        m *= 2
    return math.floor(total + (steps + 1) * ed), data * p


def binary_tree(ids: tuple[int, ...], root_max: bool) -> dict[int, tuple[int, int, int]]:
    """``BinaryTree.cc``: node -> (parent, left child, right child), -1 for none. The root
    has one child, a complete subtree of depth ``floor(log2 n)``; ids are assigned in order
    (in-order walk), so the root is the largest id (``RootMax``) or the smallest
    (``RootMin``)."""
    n = len(ids)
    depth = 1
    tmp = n
    while tmp > 1:
        depth += 1
        tmp //= 2
    # nodes: [parent, left, right, id]
    nodes: list[list[int]] = [[-1, -1, -1, -1]]

    def build(d: int, parent: int) -> int:
        me = len(nodes)
        nodes.append([parent, -1, -1, -1])
        if d > 1:
            nodes[me][1] = build(d - 1, me)
            nodes[me][2] = build(d - 1, me)
        return me

    sub = build(depth - 1, 0)
    if root_max:
        nodes[0][1] = sub
    else:
        nodes[0][2] = sub
    counter = [0]

    def assign(i: int) -> None:
        if nodes[i][1] >= 0:
            assign(nodes[i][1])
        nodes[i][3] = ids[counter[0]] if counter[0] < n else -1
        counter[0] += 1
        if nodes[i][2] >= 0:
            assign(nodes[i][2])

    assign(0)

    def nid(i: int) -> int:
        return nodes[i][3] if i >= 0 else -1

    return {nodes[i][3]: (nid(nodes[i][0]), nid(nodes[i][1]), nid(nodes[i][2])) for i in range(len(nodes))}


def double_binary_tree_phase_ns(
    phase: Phase,
    data: float,
    network: NetworkConfig,
    system: SystemConfig,
) -> tuple[int, float]:
    """One ASTRA-sim ``doubleBinaryTree`` all-reduce phase on one chunk: the whole chunk is
    reduced up one binary tree and broadcast back down it (``DoubleBinaryTreeAllReduce.cc``,
    tree ``RootMax`` of ``BinaryTree.cc``; consecutive chunks alternate ``RootMax`` and
    ``RootMin``, which the message-level replay :mod:`deepflow.interop.astra.native` follows).

    A leaf sends after ``ed``; an inner node reduces each child's message (``ed + red(d)``
    from its arrival) and sends up when both are done; the root reduces and sends down; an
    inner node reduces what comes down (``ed + red(d)``) and forwards it; a leaf finishes
    ``ed`` after it arrives. The phase lasts until the last NPU finishes."""
    if phase.op is not NativeCollective.ALL_REDUCE:
        raise TraceError(
            f"{system.source}: {phase.implementation_of.value}-implementation[{phase.dim}]: "
            "'doubleBinaryTree' implements all-reduce only"
        )
    dim = network.dims[phase.dim]
    ed = to_ns(system.endpoint_delay_s)
    red = reduction_ns(data, system)
    tree = binary_tree(tuple(range(phase.npus)), root_max=True)
    root = next(r for r, (up, _, _) in tree.items() if up < 0)

    def hop(a: int, b: int) -> int:
        return link_time_ns(dim, data, dim.hops(a, b))

    def kids(r: int) -> list[int]:
        return [c for c in tree[r][1:] if c >= 0]

    def sent_up(r: int) -> float:
        if not kids(r):
            return ed
        return max(sent_up(c) + hop(c, r) for c in kids(r)) + ed + red

    finish = 0.0
    stack = [(root, sent_up(root))]  # the root sends down as soon as it has reduced
    while stack:
        r, t = stack.pop()
        finish = max(finish, t)
        for c in kids(r):
            arrive = t + hop(r, c)
            stack.append((c, arrive + (ed + red if kids(c) else ed)))
    return math.floor(finish), data


def nccl_double_binary_tree_phase_ns(
    phase: Phase,
    data: float,
    network: NetworkConfig,
    system: SystemConfig,
) -> tuple[int, float]:
    """deepflow's ``ncclDoubleBinaryTree`` (not an ASTRA-sim name): NCCL's two trees
    (:func:`deepflow.network.algorithms.double_binary_tree.double_tree`) each carry half of
    the data, reduced up and broadcast down, with ASTRA-sim's per-message integer costs; the
    phase ends when the last leaf of the slower tree has the result, plus one ``ed``."""
    if phase.op is not NativeCollective.ALL_REDUCE:
        raise TraceError(
            f"{system.source}: {phase.implementation_of.value}-implementation[{phase.dim}]: "
            "'ncclDoubleBinaryTree' implements all-reduce only"
        )
    dim = network.dims[phase.dim]
    ed = to_ns(system.endpoint_delay_s)
    half = data / 2
    red = reduction_ns(half, system)
    slowest = max(_tree_ns(t, dim, half, red, ed) for t in double_tree(phase.npus))
    return math.floor(slowest + ed), data


def _tree_ns(parent: tuple[int, ...], dim: NetworkDim, m: float, red: int, ed: float) -> int:
    """Reduce ``m`` bytes up the tree ``parent`` and broadcast them down: a node sends to
    its parent once its children's messages have arrived and it has reduced each (one
    reduction per child), and forwards the result to each child once it has it."""
    n = len(parent)
    children: list[list[int]] = [[] for _ in range(n)]
    for r, up in enumerate(parent):
        if up >= 0:
            children[up].append(r)
    root = parent.index(-1)

    def up_done(r: int) -> float:
        arrivals = [up_done(c) + ed + link_time_ns(dim, m, dim.hops(c, r)) for c in children[r]]
        return max(arrivals, default=0.0) + red * len(children[r])

    finish = 0.0
    stack = [(root, up_done(root))]
    while stack:
        r, t = stack.pop()
        finish = max(finish, t)
        stack += [(c, t + ed + link_time_ns(dim, m, dim.hops(r, c))) for c in children[r]]
    return math.floor(finish)


def _farthest(dim: NetworkDim, p: int) -> int:
    """Hops to the farthest of ``p`` NPUs of ``dim`` from position 0."""
    return max(dim.hops(0, k) for k in range(1, p)) if p > 1 else 0


PhaseCost = Callable[[Phase, float, NetworkConfig, SystemConfig], tuple[int, float]]
PHASE_COSTS: dict[CollectiveImpl, PhaseCost] = {
    CollectiveImpl.RING: ring_phase_ns,
    CollectiveImpl.DIRECT: direct_phase_ns,
    CollectiveImpl.HALVING_DOUBLING: halving_doubling_phase_ns,
    CollectiveImpl.DOUBLE_BINARY_TREE: double_binary_tree_phase_ns,
    CollectiveImpl.NCCL_DOUBLE_BINARY_TREE: nccl_double_binary_tree_phase_ns,
}
"""The native implementations this replay models, by name in the system JSON."""


def chunk_plan(op: NativeCollective, size: int, npus: int, splits: int) -> list[float]:
    """Chunk sizes of a ``size``-byte collective over ``npus`` NPUs cut into ``splits``
    (``determine_chunk_size``: ``max(size / splits, npus)`` except for all-gather)."""
    chunk = size / splits
    if op is not NativeCollective.ALL_GATHER and chunk < npus:
        chunk = float(npus)
        return [chunk] * max(1, math.ceil(size / chunk))
    return [chunk] * splits
