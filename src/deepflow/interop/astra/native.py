"""ASTRA-sim's native collectives message by message, per NPU, on either analytical network.

The closed forms of :mod:`deepflow.interop.astra.analytical` hold when every NPU of a
collective runs in lock step on a contention-free network. Three things break lock step, and
for them the replay runs the algorithms the way ASTRA-sim's system layer does, one message
at a time on each NPU:

* a ``doubleBinaryTree`` chunk, whose NPUs finish at different times with their place in the
  tree;
* a communicator group smaller than the job, which ASTRA-sim runs as one flat ring over its
  members, each message priced by the physical distance between two members;
* the congestion-aware network, on which messages share links.

What is reproduced (astra-sim ``518bd51``, ``astra-sim/system/``):

* **Chunks and queues** (``Sys::generate_collective``, ``Sys::insert_stream``,
  ``Sys::proceed_to_next_vnet_baseline``, ``SchedulerUnit::notify_stream_added/removed``):
  a collective is cut into streams (chunks) that are created in order, each with a priority
  (LIFO: later chunks higher; FIFO: earlier higher); one queue per dimension holds the
  streams whose current phase is in that dimension, ordered by priority behind those already
  running, and runs at most ``active-chunks-per-dimension`` of them. When a stream's phase
  ends on an NPU it moves to its next phase's queue on that NPU, and the next stream of the
  queue it left starts. Everything is per NPU: nothing waits for the other NPUs except
  messages.
* **Phases**: the dimensions in ascending order (descending for all-gather); a
  ``localBWAware`` all-reduce runs reduce-scatter, all-reduce in the last dimension and
  all-gather back, every phase with the all-reduce implementation list (difference D3 of
  the conformance README). Ring phases of a localBWAware all-gather run anticlockwise
  (``QueueLevelHandler::get_next_queue_id_last``).
* **Algorithms**, transliterated with their packet counters: ``Ring.cc``, ``AllToAll.cc``
  (``direct``), ``HalvingDoubling.cc`` and ``DoubleBinaryTreeAllReduce.cc`` with the
  alternating trees of ``DoubleBinaryTreeTopology.cc`` and the in-order numbering of
  ``BinaryTree.cc``. Every packet is released through a ``PacketBundle`` that waits the
  endpoint delay (``MemBus``: 10 ns on a group's local ring) and, when the packet is
  reduced, ``3 floor(bytes / local-mem-bw)`` more (``PacketBundle::call``).
* **Messages** pair on (stream, source, destination, size) in order; a receive posted after
  its message arrived fires at once (``CommonNetworkApi::sim_recv``).

The network is a ``send(src, dst, bytes, callback)`` function: congestion-unaware, a fixed
delay (first differing dimension, :func:`deepflow.interop.astra.analytical.p2p_delay_ns`),
or congestion-aware, :class:`deepflow.network.links.LinkNetwork`.

**Symmetric runs**: ``ring`` and ``direct`` pick their peers by ring position only
(``neighbour``), so when every NPU runs the same collectives over the whole job, NPU ``r``
does what NPU 0 does, shifted by ``r``. With ``shift`` given (the network's translation,
:meth:`deepflow.network.links.LinkNetwork.shift`) only NPU 0 is simulated: a message it
sends to ``d`` stands for the message ``d`` receives from ``-d`` (shifted by ``-d``:
from ``shift(0, d)`` to 0), which NPU 0 is waiting for; the links are folded by class
(``LinkNetwork(symmetric=True)``). One NPU's events replace ``p``'s.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from deepflow.errors import TraceError
from deepflow.interop.astra.analytical import (
    NativeCollective,
    binary_tree,
    reduction_ns,
    to_ns,
)
from deepflow.interop.astra.system import (
    CollectiveImpl,
    CollectiveOptimization,
    SchedulingPolicy,
    SystemConfig,
)

__all__ = ["NativeEngine", "PhaseSpec", "plan_phases"]

Send = Callable[[int, int, int, Callable[[], None]], None]
Schedule = Callable[[float, Callable[[], None]], None]

_GENERAL, _RECEIVED, _INIT = "general", "received", "init"


@dataclass(frozen=True)
class PhaseSpec:
    """One phase of a chunk: collective ``op`` with ``impl`` over the logical ring ``ring``
    (the NPU ids in ring order; the calling NPU is one of them), clockwise or not; ``local``
    for a communicator group's flat ring (``RingTopology::Dimension::Local``)."""

    queue: int
    op: NativeCollective
    impl: CollectiveImpl
    ring: tuple[int, ...]
    clockwise: bool = True
    local: bool = False


def _dim_ring(npu: int, sizes: list[int], d: int) -> tuple[int, ...]:
    stride = math.prod(sizes[:d])
    pos = (npu // stride) % sizes[d]
    base = npu - pos * stride
    return tuple(base + k * stride for k in range(sizes[d]))


def plan_phases(
    op: NativeCollective,
    npu: int,
    sizes: list[int],
    involved: list[bool],
    system: SystemConfig,
    group: tuple[int, ...] | None,
) -> list[PhaseSpec]:
    """The phases of one chunk of ``op`` on ``npu`` (``Sys::generate_collective``,
    ``CommunicatorGroup::get_collective_plan``). ``group`` is a communicator group smaller
    than the job, or ``None``."""
    impls = system.implementation(op.value)
    if group is not None:
        # a smaller group: one flat ring over the members in the listed order; a
        # multi-dimensional implementation list is replaced by a single ring
        impl = impls[0] if len(impls) == 1 else CollectiveImpl.RING
        if not impls:
            raise TraceError(f"{system.source}: {op.value}-implementation: not set")
        return [PhaseSpec(0, op, impl, group, True, True)]
    n = len(sizes)
    dims = [d for d in range(n) if sizes[d] > 1 and involved[d]]
    if not dims:
        return []

    def impl_of(d: int, listed: tuple[CollectiveImpl, ...], key: str) -> CollectiveImpl:
        if d >= len(listed):
            raise TraceError(
                f"{system.source}: {key}-implementation: has {len(listed)} entries but the "
                f"network has a dimension {d} (one entry per dimension is needed)"
            )
        return listed[d]

    if (
        op is NativeCollective.ALL_REDUCE
        and system.collective_optimization is CollectiveOptimization.LOCAL_BW_AWARE
    ):
        *inner, last = dims
        out = [
            PhaseSpec(
                d,
                NativeCollective.REDUCE_SCATTER,
                impl_of(d, impls, op.value),
                _dim_ring(npu, sizes, d),
            )
            for d in inner
        ]
        out.append(
            PhaseSpec(
                last,
                NativeCollective.ALL_REDUCE,
                impl_of(last, impls, op.value),
                _dim_ring(npu, sizes, last),
            )
        )
        out += [
            PhaseSpec(
                d,
                NativeCollective.ALL_GATHER,
                impl_of(d, impls, op.value),
                _dim_ring(npu, sizes, d),
                clockwise=False,
            )
            for d in reversed(inner)
        ]
        return out
    order = list(reversed(dims)) if op is NativeCollective.ALL_GATHER else dims
    return [PhaseSpec(d, op, impl_of(d, impls, op.value), _dim_ring(npu, sizes, d)) for d in order]


# ------------------------------------------------------------------------------------------
# the algorithms


class _Algorithm:
    """Base: what every phase algorithm of a stream can do."""

    final_data_size: int

    def __init__(self, engine: _NpuSys, stream: _Stream, spec: PhaseSpec) -> None:
        self.sys = engine
        self.stream = stream
        self.spec = spec
        self.ring = spec.ring
        self.index = spec.ring.index(engine.npu)
        self.n = len(spec.ring)

    def neighbour(self, npu: int, clockwise: bool, steps: int = 1) -> int:
        i = self.ring.index(npu)
        return self.ring[(i + (steps if clockwise else -steps)) % self.n]

    def run(self, event: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def exit(self) -> None:
        self.sys.proceed(self.stream)


class _Ring(_Algorithm):
    """``Ring.cc`` (and the base of ``AllToAll.cc``)."""

    def __init__(self, engine: _NpuSys, stream: _Stream, spec: PhaseSpec, size: int) -> None:
        super().__init__(engine, stream, spec)
        op, n = spec.op, self.n
        self.op = op
        self.parallel_reduce = 1
        self.receiver = self.neighbour(engine.npu, spec.clockwise)
        self.sender = self.neighbour(engine.npu, not spec.clockwise)
        if op is NativeCollective.ALL_REDUCE:
            self.stream_count = 2 * (n - 1)
        elif op is NativeCollective.ALL_TO_ALL:
            self.stream_count = (n - 1) * n // 2
        else:
            self.stream_count = n - 1
        if op is NativeCollective.ALL_REDUCE:
            self.final_data_size, self.msg_size = size, size // n
        elif op is NativeCollective.ALL_GATHER:
            self.final_data_size, self.msg_size = size * n, size
        elif op is NativeCollective.REDUCE_SCATTER:
            self.final_data_size, self.msg_size = size // n, size // n
        else:
            self.final_data_size, self.msg_size = size, size // n
        self.free_packets = 0
        self.zero = 0
        self.non_zero = 0
        self.toggle = False
        self.packets: deque[tuple[int, int]] = deque()
        self.total_received = 0

    def non_zero_latency_packets(self) -> int:
        return (self.n - 1) * self.parallel_reduce

    def run(self, event: str) -> None:
        if event == _GENERAL:
            self.free_packets += 1
            self.ready()
            self.iteratable()
        elif event == _RECEIVED:
            self.total_received += 1
            self.insert_packet()
        else:
            for _ in range(self.parallel_reduce):
                self.insert_packet()

    def processed_now(self) -> bool:
        return self.op is NativeCollective.REDUCE_SCATTER or (
            self.op is NativeCollective.ALL_REDUCE and self.toggle
        )

    def insert_packet(self) -> None:
        if self.zero == 0 and self.non_zero == 0:
            self.zero = self.parallel_reduce
            self.non_zero = self.non_zero_latency_packets()
            self.toggle = not self.toggle
        if self.zero > 0:
            processed = False
            self.zero -= 1
        elif self.non_zero > 0:
            processed = self.processed_now()
            self.non_zero -= 1
        else:  # pragma: no cover - ASTRA-sim panics here too
            raise AssertionError("should not inject nothing")
        self.packets.append((self.sender, self.receiver))
        size = self.release_size()
        self.advance()
        self.sys.bundle(self.stream, processed, size, self.spec.local)

    def release_size(self) -> int:
        return self.msg_size

    def advance(self) -> None:
        """``process_max_count`` after a release (the ring keeps its peers)."""

    def ready(self) -> bool:
        if not self.packets or self.stream_count == 0 or self.free_packets == 0:
            return False
        src, dst = self.packets.popleft()
        size = self.packet_size()
        self.sys.send(self.stream, dst, size)
        self.sys.recv(self.stream, src, size)
        self.stream_count -= 1
        self.free_packets -= 1
        return True

    def packet_size(self) -> int:
        return self.msg_size

    def iteratable(self) -> bool:
        if self.stream_count == 0 and self.free_packets == self.parallel_reduce:
            self.exit()
            return False
        return True


class _Direct(_Ring):
    """``AllToAll.cc``: ``direct``, every peer at once (window -1: ``p - 1`` packets)."""

    def __init__(self, engine: _NpuSys, stream: _Stream, spec: PhaseSpec, size: int) -> None:
        super().__init__(engine, stream, spec, size)
        self.middle_point = self.n - 1
        self.parallel_reduce = self.n - 1
        if self.op is NativeCollective.ALL_TO_ALL:
            self.stream_count = self.n - 1

    def non_zero_latency_packets(self) -> int:
        if not self.spec.local:
            return self.parallel_reduce
        return (self.n - 1) * self.parallel_reduce

    def advance(self) -> None:
        me = self.sys.npu
        self.receiver = self.neighbour(self.receiver, self.spec.clockwise)
        if self.receiver == me:
            self.receiver = self.neighbour(self.receiver, self.spec.clockwise)
        self.sender = self.neighbour(self.sender, not self.spec.clockwise)
        if self.sender == me:
            self.sender = self.neighbour(self.sender, not self.spec.clockwise)

    def run(self, event: str) -> None:
        if event == _GENERAL:
            self.free_packets += 1
            if self.op is NativeCollective.ALL_REDUCE and self.stream_count <= self.middle_point:
                if self.total_received < self.middle_point:
                    return
                for _ in range(self.parallel_reduce):
                    self.ready()
            else:
                self.ready()
            self.iteratable()
        else:
            super().run(event)


class _HalvingDoubling(_Ring):
    """``HalvingDoubling.cc``: the first message of each half is not reduced (D1)."""

    def __init__(self, engine: _NpuSys, stream: _Stream, spec: PhaseSpec, size: int) -> None:
        super().__init__(engine, stream, spec, size)
        n, op = self.n, self.op
        if n & (n - 1) or op is NativeCollective.ALL_TO_ALL:
            raise TraceError(
                f"{engine.system.source}: {op.value}-implementation: 'halvingDoubling' needs "
                f"a power-of-two NPU count and a reducing or gathering collective; this phase "
                f"has {n} NPUs ({op.value})"
            )
        log = n.bit_length() - 1
        self.stream_count = 2 * log if op is NativeCollective.ALL_REDUCE else log
        if op is NativeCollective.ALL_REDUCE:
            self.final_data_size, self.msg_size = size, size // 2
            self.rank_offset, self.multiplier = 1, 2.0
        elif op is NativeCollective.ALL_GATHER:
            self.final_data_size, self.msg_size = size * n, size
            self.rank_offset, self.multiplier = n // 2, 0.5
        else:
            self.final_data_size, self.msg_size = size // n, size // 2
            self.rank_offset, self.multiplier = 1, 2.0
        self.log = log
        self._peers()

    def _peers(self) -> None:
        clockwise = True if self.rank_offset == 0 else self.index // self.rank_offset % 2 == 0
        self.receiver = self.neighbour(self.sys.npu, clockwise, self.rank_offset)
        self.sender = self.receiver

    def non_zero_latency_packets(self) -> int:
        return self.log - 1

    def insert_packet(self) -> None:
        # packets carry the size they were created with
        if self.zero == 0 and self.non_zero == 0:
            self.zero = self.parallel_reduce
            self.non_zero = self.non_zero_latency_packets()
            self.toggle = not self.toggle
        if self.zero > 0:
            processed = False
            self.zero -= 1
        else:
            processed = self.processed_now()
            self.non_zero -= 1
        size = int(self.msg_size)
        self.packets.append((self.sender, self.receiver, size))  # type: ignore[arg-type]
        self.advance()
        self.sys.bundle(self.stream, processed, size, self.spec.local)

    def advance(self) -> None:
        self.rank_offset = int(self.rank_offset * self.multiplier)
        self.msg_size = int(self.msg_size / self.multiplier)
        if self.rank_offset == self.n and self.op is NativeCollective.ALL_REDUCE:
            self.multiplier = 0.5
            self.rank_offset = int(self.rank_offset * self.multiplier)
            self.msg_size = int(self.msg_size / self.multiplier)
        self._peers()

    def ready(self) -> bool:
        if not self.packets or self.stream_count == 0 or self.free_packets == 0:
            return False
        src, dst, size = self.packets.popleft()  # type: ignore[misc]
        self.sys.send(self.stream, dst, size)
        self.sys.recv(self.stream, src, size)
        self.stream_count -= 1
        self.free_packets -= 1
        return True


class _DoubleBinaryTree(_Algorithm):
    """``DoubleBinaryTreeAllReduce.cc``: the whole chunk up one binary tree and back down;
    consecutive chunks alternate the two trees (D2)."""

    def __init__(
        self, engine: _NpuSys, stream: _Stream, spec: PhaseSpec, size: int, root_max: bool
    ) -> None:
        super().__init__(engine, stream, spec)
        if spec.op is not NativeCollective.ALL_REDUCE:
            raise TraceError(
                f"{engine.system.source}: {spec.op.value}-implementation: "
                "'doubleBinaryTree' implements all-reduce only"
            )
        tree = binary_tree(tuple(sorted(spec.ring)), root_max)
        self.parent, self.left, self.right = tree[engine.npu]
        if self.parent < 0:
            self.kind = "root"
        elif self.left < 0 and self.right < 0:
            self.kind = "leaf"
        else:
            self.kind = "mid"
        self.size = size
        self.final_data_size = size
        self.state = "begin"
        self.reductions = 0

    def run(self, event: str) -> None:
        s, k, sys_, size = self.state, self.kind, self.sys, self.size
        if k == "leaf":
            if s == "begin":
                sys_.bundle(self.stream, False, size, False)
                self.state = "to_parent"
            elif s == "to_parent":
                sys_.send(self.stream, self.parent, size)
                self.state = "from_parent"
                sys_.recv(self.stream, self.parent, size)
            elif s == "from_parent":
                sys_.bundle(self.stream, False, size, False)
                self.state = "end"
            elif s == "end":
                self.exit()
            return
        if k == "mid":
            if s == "begin":
                self.state = "two"
                sys_.recv(self.stream, self.left, size)
                sys_.recv(self.stream, self.right, size)
            elif s == "two" and event == _RECEIVED:
                sys_.bundle(self.stream, True, size, False)
                self.state = "one"
            elif s == "one" and event == _RECEIVED:
                sys_.bundle(self.stream, True, size, False)
                self.state = "to_parent"
            elif self.reductions < 1 and event == _GENERAL:
                self.reductions += 1
            elif s == "to_parent":
                self.state = "from_parent"
                sys_.send(self.stream, self.parent, size)
                sys_.recv(self.stream, self.parent, size)
            elif s == "from_parent" and event == _RECEIVED:
                sys_.bundle(self.stream, True, size, False)
                self.state = "to_children"
            elif s == "to_children":
                sys_.send(self.stream, self.left, size)
                sys_.send(self.stream, self.right, size)
                self.exit()
            return
        child = self.left if self.left >= 0 else self.right
        if s == "begin":
            self.state = "one"
            sys_.recv(self.stream, child, size)
        elif s == "one":
            sys_.bundle(self.stream, True, size, False)
            self.state = "to_children"
        elif s == "to_children":
            sys_.send(self.stream, child, size)
            self.exit()


# ------------------------------------------------------------------------------------------
# streams, queues and the per-NPU system


class _Stream:
    __slots__ = ("algorithm", "collective", "initialized", "phases", "priority", "queue", "tag")

    def __init__(self, collective: _Collective, tag: object, priority: int) -> None:
        self.collective = collective
        self.tag = tag
        self.priority = priority
        self.phases: deque[_Algorithm] = deque()
        self.algorithm: _Algorithm | None = None
        self.queue = -1
        self.initialized = False


class _Collective:
    """One collective on one NPU: its streams and what to call when they are done."""

    def __init__(self, streams: int, done: Callable[[], None]) -> None:
        self.left = streams
        self.done = done


class _NpuSys:
    """The system layer of one NPU: queues, bundles, sends and receives."""

    def __init__(self, engine: NativeEngine, npu: int) -> None:
        self.engine = engine
        self.npu = npu
        self.system = engine.system
        self.active: dict[int, list[_Stream]] = {}
        self.running: dict[int, int] = {}
        self.priority = 0

    def next_priority(self) -> int:
        p = self.priority
        self.priority += 1 if self.system.scheduling_policy is not SchedulingPolicy.FIFO else -1
        return p

    @staticmethod
    def _insert(queue: list[_Stream], stream: _Stream) -> None:
        i = 0
        while i < len(queue) and (queue[i].initialized or queue[i].priority >= stream.priority):
            i += 1
        queue.insert(i, stream)

    def _fill(self, q: int) -> None:
        queue = self.active.setdefault(q, [])
        limit = self.system.active_chunks_per_dimension
        i = self.running.get(q, 0)
        while i < len(queue) and self.running.get(q, 0) < limit:
            stream = queue[i]
            stream.initialized = True
            self.running[q] = self.running.get(q, 0) + 1
            i += 1
            assert stream.algorithm is not None
            stream.algorithm.run(_INIT)

    def proceed(self, stream: _Stream) -> None:
        """``Sys::proceed_to_next_vnet_baseline``: leave the current queue, enter the next
        phase's queue (or finish), start what can start."""
        previous = stream.queue
        if previous >= 0:
            self.active[previous].remove(stream)
        if not stream.phases:
            if previous >= 0:
                self.running[previous] -= 1
                self._fill(previous)
            stream.collective.left -= 1
            if stream.collective.left == 0:
                stream.collective.done()
            return
        stream.algorithm = stream.phases.popleft()
        stream.queue = stream.algorithm.spec.queue
        stream.initialized = False
        self._insert(self.active.setdefault(stream.queue, []), stream)
        if previous >= 0:
            self.running[previous] -= 1
            self._fill(previous)
        self._fill(stream.queue)

    def bundle(self, stream: _Stream, processed: bool, size: int, local: bool) -> None:
        """``PacketBundle``: the endpoint delay (10 ns on a local ring, ``MemBus``), plus
        a reduction when ``processed``, then a General event to the stream's algorithm."""
        delay = 10 if local else self.engine.endpoint_delay
        algorithm = stream.algorithm

        def general() -> None:
            assert algorithm is not None
            algorithm.run(_GENERAL)

        if processed:
            red = reduction_ns(size, self.system)
            self.engine.schedule(delay, lambda: self.engine.schedule(red, general))
        else:
            self.engine.schedule(delay, general)

    def send(self, stream: _Stream, dst: int, size: int) -> None:
        self.engine.message(stream.tag, self.npu, dst, size)

    def recv(self, stream: _Stream, src: int, size: int) -> None:
        algorithm = stream.algorithm
        assert algorithm is not None
        self.engine.expect(stream.tag, src, self.npu, size, lambda: algorithm.run(_RECEIVED))


class NativeEngine:
    """Runs native collectives message by message on every NPU (see the module docstring).

    ``schedule(delay, fn)`` is the caller's event kernel (integer ns); ``send(src, dst,
    bytes, callback)`` the network.
    """

    def __init__(
        self,
        system: SystemConfig,
        npus: int,
        sizes: list[int],
        schedule: Schedule,
        send: Send,
        shift: Callable[[int, int], int] | None = None,
    ) -> None:
        self.system = system
        self.shift = shift
        self.sizes = sizes
        self.schedule = schedule
        self.network_send = send
        self.endpoint_delay = to_ns(system.endpoint_delay_s)
        self.npus = npus
        self.sys = [_NpuSys(self, i) for i in range(npus)]
        self.arrived: dict[tuple[object, ...], int] = {}
        self.sent: dict[tuple[object, ...], int] = {}
        self.waiting: dict[tuple[object, ...], deque[Callable[[], None]]] = {}
        self.tree_counter: dict[tuple[int, object], int] = {}

    # -- messages -------------------------------------------------------------------------
    def message(self, tag: object, src: int, dst: int, size: int) -> None:
        key = (tag, src, dst, size)
        if self.shift is not None:
            # symmetric run: this message, shifted by -dst, is the one NPU 0 receives
            key = (tag, self.shift(src, dst), 0, size)

        def arrive() -> None:
            waiting = self.waiting.get(key)
            if waiting:
                waiting.popleft()()
            else:
                self.arrived[key] = self.arrived.get(key, 0) + 1

        self.network_send(src, dst, size, arrive)

    def expect(
        self, tag: object, src: int, dst: int, size: int, handler: Callable[[], None]
    ) -> None:
        key = (tag, src, dst, size)
        if self.arrived.get(key, 0) > 0:
            self.arrived[key] -= 1
            self.schedule(0, handler)
        else:
            self.waiting.setdefault(key, deque()).append(handler)

    # -- collectives ----------------------------------------------------------------------
    def start(
        self,
        npu: int,
        op: NativeCollective,
        size: int,
        involved: list[bool],
        group: tuple[int, ...] | None,
        tag: object,
        done: Callable[[], None],
    ) -> None:
        """Issue a collective of ``size`` bytes on ``npu``; ``done()`` when its last chunk
        has finished there. ``tag`` names the collective instance (the same on every NPU)."""
        system = self.system
        splits = system.preferred_dataset_splits
        chunk = size // splits
        total = size
        if op is not NativeCollective.ALL_GATHER and self.npus > chunk:
            chunk = self.npus
            total = splits * chunk
        streams = math.ceil(total / chunk)
        phases = plan_phases(op, npu, self.sizes, involved, system, group)
        sys_ = self.sys[npu]
        if not phases:
            self.schedule(0, done)
            return
        collective = _Collective(streams, done)
        for k in range(streams):
            stream = _Stream(collective, (tag, k), sys_.next_priority())
            data = chunk
            for spec in phases:
                algo = self._algorithm(sys_, stream, spec, data, tag)
                stream.phases.append(algo)
                data = algo.final_data_size
            sys_.proceed(stream)

    def _algorithm(
        self, sys_: _NpuSys, stream: _Stream, spec: PhaseSpec, size: int, tag: object
    ) -> _Algorithm:
        impl = spec.impl
        if impl is CollectiveImpl.RING:
            return _Ring(sys_, stream, spec, size)
        if impl is CollectiveImpl.DIRECT:
            return _Direct(sys_, stream, spec, size)
        if impl is CollectiveImpl.HALVING_DOUBLING:
            return _HalvingDoubling(sys_, stream, spec, size)
        if impl is CollectiveImpl.DOUBLE_BINARY_TREE:
            # one DoubleBinaryTreeTopology per NPU and dimension alternates its trees with
            # every chunk it hands out (RootMax first)
            key = (sys_.npu, spec.queue)
            count = self.tree_counter.get(key, 0)
            self.tree_counter[key] = count + 1
            return _DoubleBinaryTree(sys_, stream, spec, size, root_max=count % 2 == 0)
        raise TraceError(
            f"{self.system.source}: {spec.op.value}-implementation: {impl.value!r} is not "
            "modelled by deepflow's analytical replay"
        )
