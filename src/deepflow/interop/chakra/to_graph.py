"""Import per-rank Chakra execution traces as a task graph for the simulator's executor.

:func:`et_to_graph` turns ``{rank: ExecutionTrace}`` into a
:class:`~deepflow.graph.ir.TaskGraph`, which :func:`deepflow.sim.executor.execute` runs
exactly as it runs a lowered scenario. One node becomes one task; nothing is added or
dropped, and :attr:`ImportedGraph.task_of` maps ``(rank, node id)`` to the task.

**Streams** (ASTRA-sim ``workload/HardwareResource.cc``; reference doc
``chakra-astra-msccl.md`` section 1.4): a rank runs one host operator (``is_cpu_op``) at a
time on stream ``cpu``, one GPU kernel at a time on ``compute``, one GPU communication (a
collective or a send) at a time on ``comm``, and memory nodes on ``memory``; receives and
metadata nodes are unlimited, so each gets a stream of its own. A ``stream`` attribute
(written by :mod:`.from_graph`) overrides this. A stream runs its tasks in ascending node
id, which is ASTRA-sim's issue order among ready nodes (``Workload::issue_dep_free_nodes``)
and the order deepflow's export writes; where that order contradicts the dependencies the
import fails and names a node of the cycle, since the executor would deadlock.

**Dependencies**: the edges ``policy`` names (:class:`~.checks.DependencyPolicy`); a
control edge to the task just before on the same stream is implied by the stream and not
repeated. A receive also waits for the send it pairs with: the ``k``-th send and the
``k``-th receive of one (source, destination, tag, size), in node-id order, pair up
(ASTRA-sim ``CommonNetworkApi.cc``). A collective costed on the network waits until every
member of its group is ready for it: the ``k``-th collective of a group on each member is
one instance, and each member's task waits on the union of their dependencies (ASTRA-sim
starts a native collective when its last NPU issues it).

**Durations**, first rule that applies:

* a ``duration_s`` attribute (the exact time :mod:`.from_graph` records) - ``recorded``;
* host operators: ``duration_micros`` (ASTRA-sim always replays CPU ops);
* GPU compute with ``compute=ComputeTiming.ROOFLINE`` (ASTRA-sim's ``roofline-enabled``):
  ``num_ops / min(peak, bw * num_ops / tensor_size)`` on the given :class:`Roofline`, 0
  where ``num_ops`` or ``tensor_size`` is 0 - ``roofline``;
* GPU compute: ``duration_micros`` when it is not 0 - ``duration_micros``; otherwise the
  roofline when the node gives ``num_ops`` (and ``tensor_size``) - ``roofline``;
* memory nodes: ``duration_micros``, else ``tensor_size`` over the roofline's memory
  bandwidth;
* collectives and sends: the network layer (``network``) - ``network``:
  :func:`deepflow.network.collective_time` of the group, placed on the hierarchy, and
  :func:`deepflow.network.p2p_time` between the two ranks; a receive and a metadata node
  take no time of their own (a receive ends when its message arrives).

:attr:`ImportedGraph.sources` counts the tasks timed by each rule.

Sizes follow Chakra: ``comm_size`` is a rank's buffer, and for an all-gather its *input*
(ASTRA-sim, reference doc section 2.6), so the all-gather's gathered size in the network
layer's convention is ``comm_size`` times the group size. ``REDUCE_SCATTER_BLOCK`` is costed
as a reduce-scatter and ``BARRIER`` as an all-reduce of 0 bytes; ``GATHER`` and ``SCATTER``
have no model in the network layer and need a recorded duration.

Ranks: workload rank ``r`` is NPU ``r`` of the network; the task's ``rank`` is ``r``.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol

import numpy as np

from deepflow.errors import TraceError
from deepflow.graph.ir import Task, TaskGraph, TaskKind
from deepflow.interop.chakra.checks import (
    DependencyPolicy,
    attr_bool,
    attr_int,
    attr_str,
    check_trace,
    check_workload,
    dependencies,
)
from deepflow.interop.chakra.model import AttrKind, CommType, ExecutionTrace, Node, NodeType
from deepflow.network.collectives import collective_time, p2p_time
from deepflow.network.dims import NetworkDim
from deepflow.network.hierarchy import GroupPlacement, Hierarchy, Level
from deepflow.network.ops import Algorithm, Collective

if TYPE_CHECKING:
    from deepflow.specs.system import SystemSpec

__all__ = [
    "CommModel",
    "ComputeTiming",
    "GroupResolver",
    "ImportedGraph",
    "Roofline",
    "et_to_graph",
]

CPU, COMPUTE, COMM, MEMORY = "cpu", "compute", "comm", "memory"


class ComputeTiming(str, Enum):
    """How GPU compute nodes are timed."""

    TRACE = "trace"
    """``duration_micros``; the roofline only for nodes without one (replay mode)."""
    ROOFLINE = "roofline"
    """The roofline for every GPU compute node (ASTRA-sim's ``roofline-enabled``)."""


@dataclass(frozen=True)
class Roofline:
    """Peak compute (FLOP/s) and local memory bandwidth (bytes/s) of an NPU."""

    peak_flops: float
    memory_bandwidth: float

    def compute_s(self, ops: float, size: float) -> float:
        """``ops / min(peak, bw * ops / size)`` (ASTRA-sim's roofline, reference doc section
        1.4; Williams et al., "Roofline", CACM 52(4), 2009), 0 without ops or bytes."""
        if ops <= 0 or size <= 0:
            return 0.0
        return ops / min(self.peak_flops, self.memory_bandwidth * ops / size)


class GroupResolver(Protocol):
    """Resolves a ``pg_name`` to its NPUs (:class:`deepflow.interop.astra.CommGroups`)."""

    def members(self, pg_name: str, npus: int) -> tuple[int, ...]: ...


_COLLECTIVE = {
    CommType.ALL_REDUCE: Collective.ALL_REDUCE,
    CommType.REDUCE: Collective.REDUCE,
    CommType.ALL_GATHER: Collective.ALL_GATHER,
    CommType.BROADCAST: Collective.BROADCAST,
    CommType.ALL_TO_ALL: Collective.ALL_TO_ALL,
    CommType.REDUCE_SCATTER: Collective.REDUCE_SCATTER,
    CommType.REDUCE_SCATTER_BLOCK: Collective.REDUCE_SCATTER,
    CommType.BARRIER: Collective.ALL_REDUCE,
}


@dataclass(frozen=True)
class CommModel:
    """The network layer's costs on a two-level hierarchy: NPU ``r`` sits in scale-up
    domain ``r // scale_up_size``; ``algorithm`` runs every collective."""

    hierarchy: Hierarchy
    algorithm: Algorithm = Algorithm.RING

    @classmethod
    def from_system(cls, system: SystemSpec, algorithm: Algorithm = Algorithm.RING) -> CommModel:
        """The hierarchy of a deepflow system spec."""
        return cls(Hierarchy.from_system(system), algorithm)

    @classmethod
    def from_dims(
        cls, dims: Sequence[NetworkDim], algorithm: Algorithm = Algorithm.RING
    ) -> CommModel:
        """A multi-dimensional network in ASTRA-sim's sense as the two-level hierarchy:
        dimension 0 is the scale-up domain; further dimensions are folded into the
        scale-out level, which takes their lowest bandwidth and longest hop.

        Each level gets one link's bandwidth per NPU and one hop's latency per message
        (two link latencies through a switch), which is how ASTRA-sim's ring moves its
        messages (reference doc section 2.6)."""
        if not dims:
            raise TraceError("<network>: a network needs at least one dimension")
        inner, outer = dims[0], dims[1:] or dims[:1]
        up = Level("dim 0", inner.bandwidth, inner.hop_latency, inner.efficiency)
        slow = min(outer, key=lambda d: d.bandwidth * d.efficiency)
        out = Level(
            "dims 1+",
            slow.bandwidth,
            max(d.hop_latency for d in outer),
            slow.efficiency,
        )
        return cls(Hierarchy(inner.size, up, out), algorithm)

    @classmethod
    def from_astra(cls, network: object, algorithm: Algorithm = Algorithm.RING) -> CommModel:
        """An ASTRA-sim analytical network (:class:`deepflow.interop.astra.NetworkConfig`)."""
        dims = [d.as_network_dim() for d in network.dims]  # type: ignore[attr-defined]
        return cls.from_dims(dims, algorithm)

    def _domain(self, npu: int) -> int:
        return npu // self.hierarchy.scale_up_size

    def collective_s(self, op: Collective, size: float, members: Sequence[int]) -> float:
        """Time of ``op`` on ``size`` bytes (the network layer's convention) over
        ``members``."""
        per_domain = Counter(self._domain(m) for m in members)
        group = GroupPlacement(
            np.asarray(float(len(members))),
            np.asarray(float(max(per_domain.values(), default=1))),
            np.asarray(float(max(len(per_domain), 1))),
        )
        return float(collective_time(op, size, group, self.hierarchy, self.algorithm))

    def p2p_s(self, size: float, src: int, dst: int) -> float:
        """Time of a ``size``-byte message from ``src`` to ``dst``."""
        crosses = self._domain(src) != self._domain(dst)
        return float(p2p_time(size, crosses, self.hierarchy))


@dataclass(frozen=True)
class ImportedGraph:
    """An imported workload: the task graph, where each task came from, and how many tasks
    each duration rule timed (``recorded``, ``duration_micros``, ``roofline``, ``network``,
    ``none``)."""

    graph: TaskGraph
    task_of: Mapping[tuple[int, int], int]
    labels: Mapping[int, str]
    sources: Mapping[str, int]

    def node_of(self, task_id: int) -> tuple[int, int]:
        """``(rank, node id)`` of a task."""
        for key, tid in self.task_of.items():
            if tid == task_id:
                return key
        raise KeyError(task_id)


@dataclass
class _Row:
    rank: int
    node: Node
    label: str
    kind: TaskKind
    stream: str
    duration: float
    size: float
    source: str
    category: str
    deps: list[int]


def _attr_float(node: Node, name: str, label: str) -> float | None:
    a = node.attr(name)
    if a is None:
        return None
    if a.kind not in (AttrKind.DOUBLE, AttrKind.FLOAT) and not (
        a.kind is not None and not a.kind.is_list and a.kind.is_integer
    ):
        raise TraceError(f"{label}: node {node.id}: attribute {name!r} must be a number")
    return float(a.value)  # type: ignore[arg-type]


def _size(node: Node, label: str, key: str = "comm_size") -> float:
    exact = _attr_float(node, "size_bytes", label)
    return exact if exact is not None else float(attr_int(node, key, label, 0))


class _Importer:
    def __init__(
        self,
        traces: Mapping[int, ExecutionTrace],
        network: CommModel | None,
        groups: GroupResolver | None,
        policy: DependencyPolicy,
        roofline: Roofline | None,
        compute: ComputeTiming,
    ) -> None:
        self.traces, self.network, self.groups = traces, network, groups
        self.policy, self.roofline, self.compute = policy, roofline, compute
        self.npus = max(traces) + 1 if traces else 0

    # -- one node -------------------------------------------------------------------------
    def _roofline(self, node: Node, label: str, why: str) -> float:
        if self.roofline is None:
            raise TraceError(
                f"{label}: node {node.id}: {why}; pass a roofline (peak FLOP/s and memory "
                "bandwidth) to time it"
            )
        ops = float(attr_int(node, "num_ops", label, 0))
        size = float(attr_int(node, "tensor_size", label, 0))
        return self.roofline.compute_s(ops, size)

    def _members(self, node: Node, rank: int, label: str) -> tuple[int, ...]:
        pg = attr_str(node, "pg_name", label)
        if self.groups is not None:
            members = tuple(self.groups.members(pg, self.npus))
        elif pg in ("", "0"):
            members = tuple(range(self.npus))
        else:
            raise TraceError(
                f"{label}: node {node.id}: collective over group {pg!r}, which is not "
                "defined (give the communicator groups)"
            )
        if rank not in members:
            raise TraceError(f"{label}: node {node.id}: rank {rank} is not in group {pg!r}")
        for m in members:
            if m not in self.traces:
                raise TraceError(
                    f"{label}: node {node.id}: group {pg!r} names rank {m}, which has no trace"
                )
        return members

    def _need_network(self, node: Node, label: str) -> CommModel:
        if self.network is None:
            raise TraceError(
                f"{label}: node {node.id}: {node.type_name} has no recorded duration and no "
                "network was given to cost it"
            )
        return self.network

    def row(self, rank: int, node: Node, label: str) -> tuple[_Row, tuple[int, ...] | None]:
        """The task of ``node`` and, for a network-costed collective, its group."""
        recorded = _attr_float(node, "duration_s", label)
        cpu = attr_bool(node, "is_cpu_op", label)
        members: tuple[int, ...] | None = None
        size = 0.0
        t = node.type
        if t is NodeType.METADATA_NODE:
            kind, stream, category, duration, source = (
                TaskKind.COMPUTE,
                f"metadata {node.id}",
                "metadata",
                0.0,
                "none",
            )
        elif cpu or t is NodeType.COMP_NODE:
            kind, stream = TaskKind.COMPUTE, CPU if cpu else COMPUTE
            category = "host" if cpu else "compute"
            if cpu:
                duration, source = node.duration_micros / 1e6, "duration_micros"
            elif self.compute is ComputeTiming.ROOFLINE and node.attr("num_ops") is not None:
                duration, source = self._roofline(node, label, "roofline timing"), "roofline"
            elif node.duration_micros:
                duration, source = node.duration_micros / 1e6, "duration_micros"
            elif attr_int(node, "num_ops", label, 0):
                why = "the node gives num_ops but no duration_micros"
                duration, source = self._roofline(node, label, why), "roofline"
            else:
                duration, source = 0.0, "none"
        elif t in (NodeType.MEM_LOAD_NODE, NodeType.MEM_STORE_NODE):
            kind, stream, category = TaskKind.MEMORY, MEMORY, "memory"
            size = _size(node, label, "tensor_size")
            if node.duration_micros:
                duration, source = node.duration_micros / 1e6, "duration_micros"
            elif size and recorded is None:
                why = "a memory node without duration_micros"
                duration = size / self._roofline_bw(node, label, why)
                source = "roofline"
            else:
                duration, source = 0.0, "none"
        elif t is NodeType.COMM_COLL_NODE:
            kind, stream, category = TaskKind.COLLECTIVE, COMM, "comm"
            size = _size(node, label)
            duration, source = 0.0, "network"
            if recorded is None:
                comm_type = CommType(attr_int(node, "comm_type", label))
                op = _COLLECTIVE.get(comm_type)
                if op is None:
                    raise TraceError(
                        f"{label}: node {node.id}: collective {comm_type.name} has no cost "
                        "model in the network layer; record its duration_s"
                    )
                network = self._need_network(node, label)
                members = self._members(node, rank, label)
                net_size = 0.0 if comm_type is CommType.BARRIER else size
                if op is Collective.ALL_GATHER:
                    net_size *= len(members)  # Chakra's size is the per-rank input
                duration = network.collective_s(op, net_size, members)
        elif t is NodeType.COMM_SEND_NODE:
            kind, stream, category = TaskKind.SEND, COMM, "p2p"
            size = _size(node, label)
            duration, source = 0.0, "network"
            if recorded is None:
                dst = attr_int(node, "comm_dst", label)
                duration = self._need_network(node, label).p2p_s(size, rank, dst)
        elif t is NodeType.COMM_RECV_NODE:
            kind, stream, category = TaskKind.RECV, f"recv {node.id}", "p2p"
            size = _size(node, label)
            duration, source = 0.0, "none"
        else:  # pragma: no cover - check_trace rejects other types
            raise TraceError(f"{label}: node {node.id}: cannot import {node.type_name}")
        if recorded is not None:
            duration, source = recorded, "recorded"
        stream = attr_str(node, "stream", label, stream)
        category = attr_str(node, "category", label, category)
        row = _Row(rank, node, label, kind, stream, duration, size, source, category, [])
        return row, members

    def _roofline_bw(self, node: Node, label: str, why: str) -> float:
        if self.roofline is None:
            raise TraceError(
                f"{label}: node {node.id}: {why}; pass a roofline (memory bandwidth) to time it"
            )
        return self.roofline.memory_bandwidth

    # -- the workload ---------------------------------------------------------------------
    def run(self) -> ImportedGraph:
        traces = self.traces
        if not traces:
            raise TraceError("<workload>: no traces to import")
        if len(traces) > 1:
            check_workload(traces, self.policy)
        else:
            for trace in traces.values():
                check_trace(trace, self.policy)
        rows: list[_Row] = []
        groups: list[tuple[int, tuple[int, ...] | None]] = []
        for rank in sorted(traces):
            trace = traces[rank]
            for node in trace.nodes:
                row, members = self.row(rank, node, trace.label)
                groups.append((len(rows), members))
                rows.append(row)
        # one global order: node id, then rank; a stream runs its tasks in this order
        order = sorted(range(len(rows)), key=lambda i: (rows[i].node.id, rows[i].rank))
        rows = [rows[i] for i in order]
        position = {old: new for new, old in enumerate(order)}
        group_of = {position[i]: m for i, m in groups if m is not None}
        task_of = {(r.rank, r.node.id): i for i, r in enumerate(rows)}

        previous: dict[tuple[int, str], int] = {}
        for i, r in enumerate(rows):
            before = previous.get((r.rank, r.stream))
            previous[(r.rank, r.stream)] = i
            for d in dependencies(r.node, self.policy):
                tid = task_of[(r.rank, d)]
                if tid == before and d not in r.node.data_deps:
                    continue  # a control edge the stream order already gives
                r.deps.append(tid)
        self._pair_messages(rows)
        self._join_collectives(rows, group_of)

        tasks = tuple(self._task(i, r) for i, r in enumerate(rows))
        labels = {rank: traces[rank].label for rank in sorted(traces)}
        graph = TaskGraph(tasks, {"source": "chakra", "ranks": len(traces)})
        self._check_runnable(graph, rows)
        sources = Counter(r.source for r in rows)
        return ImportedGraph(graph, task_of, labels, dict(sorted(sources.items())))

    def _task(self, i: int, r: _Row) -> Task:
        label = r.label

        def label_int(name: str) -> int:
            return attr_int(r.node, name, label, -1)

        return Task(
            id=i,
            name=r.node.name,
            kind=r.kind,
            rank=r.rank,
            stream=r.stream,
            duration_s=r.duration,
            deps=tuple(dict.fromkeys(r.deps)),
            size_bytes=r.size,
            category=r.category,
            phase=attr_str(r.node, "phase", label),
            layer=label_int("layer"),
            micro_batch=label_int("micro_batch"),
            chunk=label_int("chunk"),
        )

    def _pair_messages(self, rows: list[_Row]) -> None:
        """Each receive waits for the send it pairs with (k-th with k-th per key, in node-id
        order; ``check_workload`` has made sure the counts match)."""
        sends: dict[tuple[int, int, int, float], list[int]] = defaultdict(list)
        recvs: dict[tuple[int, int, int, float], list[int]] = defaultdict(list)
        for i in sorted(range(len(rows)), key=lambda i: (rows[i].rank, rows[i].node.id)):
            r = rows[i]
            if attr_bool(r.node, "is_cpu_op", r.label):
                continue
            tag = attr_int(r.node, "comm_tag", r.label, 0)
            if r.kind is TaskKind.SEND:
                dst = attr_int(r.node, "comm_dst", r.label)
                sends[(tag, r.rank, dst, r.size)].append(i)
            elif r.kind is TaskKind.RECV:
                src = attr_int(r.node, "comm_src", r.label)
                recvs[(tag, src, r.rank, r.size)].append(i)
        for key, waiting in recvs.items():
            senders = sends.get(key, [])
            for k, i in enumerate(waiting):
                if k >= len(senders):
                    r = rows[i]
                    raise TraceError(
                        f"{r.label}: node {r.node.id}: receive of {r.size:g} B from rank "
                        f"{key[1]} with tag {key[0]} has no matching send"
                    )
                rows[i].deps.append(senders[k])

    def _join_collectives(self, rows: list[_Row], group_of: Mapping[int, tuple[int, ...]]) -> None:
        """Each instance of a network-costed collective starts when all its members are
        ready: every member waits on the union of the members' dependencies."""
        seq: dict[tuple[tuple[int, ...], int], list[int]] = defaultdict(list)
        for i in sorted(group_of, key=lambda i: (rows[i].rank, rows[i].node.id)):
            seq[(group_of[i], rows[i].rank)].append(i)
        by_group: dict[tuple[int, ...], dict[int, list[int]]] = defaultdict(dict)
        for (members, rank), ids in seq.items():
            by_group[members][rank] = ids
        for members, per_rank in by_group.items():
            if len(members) < 2:
                continue
            counts = {m: len(per_rank.get(m, [])) for m in members}
            if len(set(counts.values())) != 1:
                most = max(counts, key=lambda m: counts[m])
                fewest = min(counts, key=lambda m: counts[m])
                extra = rows[per_rank[most][counts[fewest]]]
                raise TraceError(
                    f"{extra.label}: node {extra.node.id}: collective {counts[fewest] + 1} "
                    f"of group {list(members)} on rank {most}, but rank {fewest} issues "
                    f"only {counts[fewest]} collective(s) on that group"
                )
            for k in range(counts[members[0]]):
                instance = [per_rank[m][k] for m in members]
                union = list(dict.fromkeys(d for i in instance for d in rows[i].deps))
                for i in instance:
                    rows[i].deps = list(union)

    @staticmethod
    def _check_runnable(graph: TaskGraph, rows: list[_Row]) -> None:
        """Kahn's algorithm over dependencies and stream order: a task that never becomes
        ready would deadlock the executor; name it."""
        n = len(graph)
        preds = [list(t.deps) for t in graph.tasks]
        for ids in graph.streams().values():
            for a, b in itertools.pairwise(ids):
                preds[b].append(a)
        left = [len(p) for p in preds]
        succ: list[list[int]] = [[] for _ in range(n)]
        for i, ps in enumerate(preds):
            for p in ps:
                succ[p].append(i)
        ready = [i for i in range(n) if left[i] == 0]
        heapq.heapify(ready)
        done = 0
        while ready:
            i = heapq.heappop(ready)
            done += 1
            for s in succ[i]:
                left[s] -= 1
                if left[s] == 0:
                    heapq.heappush(ready, s)
        if done != n:
            r = rows[min(i for i in range(n) if left[i] > 0)]
            raise TraceError(
                f"{r.label}: node {r.node.id}: can never run: its dependencies, the messages "
                f"it waits for and the order of stream {r.stream!r} (ascending node id) form "
                "a cycle"
            )


def et_to_graph(
    traces: Mapping[int, ExecutionTrace],
    network: CommModel | None = None,
    *,
    groups: GroupResolver | None = None,
    policy: DependencyPolicy = DependencyPolicy.DATA_AND_CTRL,
    roofline: Roofline | None = None,
    compute: ComputeTiming = ComputeTiming.TRACE,
) -> ImportedGraph:
    """Import one ET per rank (``traces[rank]``) as a task graph for
    :func:`deepflow.sim.executor.execute`; see the module docstring for the rules.

    ``network`` costs communication that has no recorded duration; ``groups`` resolves
    ``pg_name`` (without it, ``""`` and ``"0"`` mean every rank); ``roofline`` times
    compute given as FLOPs and bytes. Malformed or unrunnable traces raise
    :class:`~deepflow.errors.TraceError` naming the file, the node and the problem.
    """
    return _Importer(traces, network, groups, policy, roofline, compute).run()
