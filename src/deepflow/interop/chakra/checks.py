"""Checks on Chakra execution traces, one rank at a time and across ranks.

Every failure is a :class:`~deepflow.errors.TraceError` whose message names the file, the
node (or rank and node) and the problem, for example::

    all_reduce.3.et: node 7: data_deps references node 12, which is not in the trace

What is checked, and why (reference doc sections 1.3 and 1.4):

* node types are ones the schema defines, and not ``INVALID_NODE``;
* node ids are unique (dependencies name ids; ``feeder_v3`` indexes by id);
* every dependency names a node of the same file (``feeder_v3`` throws "not found in
  index" on a dangling one);
* the dependency graph has no cycle (a cycle never becomes ready: the run hangs);
* well-known attributes hold the value type ASTRA-sim reads (``comm_size`` an integer,
  ``involved_dim`` a bool list, ...); the legacy feeder reads a value written in another
  branch as 0, ``feeder_v3`` converts between integer branches, so any integer branch is
  accepted for an integer attribute;
* across the ranks of a workload, every send has a receive with the same (source,
  destination, tag, size) and the other way round, counted with multiplicity, since
  ASTRA-sim pairs identical messages in FIFO order (``CommonNetworkApi.cc``).

Which edges gate a node is a :class:`DependencyPolicy`: ASTRA-sim's ``feeder_v3`` waits on
the union of ``data_deps`` and ``ctrl_deps``; the legacy feeder on ``data_deps`` only. PyTorch-
derived traces carry ``ctrl_deps`` to host operators that were never exported, so they pass
only under ``DATA_ONLY``.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from enum import Enum

from deepflow.errors import TraceError
from deepflow.interop.chakra.model import (
    AttrKind,
    CommType,
    ExecutionTrace,
    Node,
    NodeType,
)

__all__ = [
    "DependencyPolicy",
    "attr_bool",
    "attr_bool_list",
    "attr_int",
    "attr_str",
    "check_trace",
    "check_workload",
    "dependencies",
    "topological_order",
]


class DependencyPolicy(str, Enum):
    """Which dependency lists gate a node."""

    DATA_AND_CTRL = "data+ctrl"
    """ASTRA-sim master (``feeder_v3``): the union of ``data_deps`` and ``ctrl_deps``."""
    DATA_ONLY = "data"
    """The legacy mlcommons ``ETFeeder``: ``data_deps`` only."""


_INT_ATTRS = (
    "comm_type",
    "comm_size",
    "comm_src",
    "comm_dst",
    "comm_tag",
    "comm_priority",
    "num_ops",
    "tensor_size",
)
_BOOL_ATTRS = ("is_cpu_op",)
_BOOL_LIST_ATTRS = ("involved_dim",)
_STR_ATTRS = ("pg_name",)


def _where(trace_label: str, node: Node) -> str:
    return f"{trace_label}: node {node.id}"


def _wrong_kind(label: str, node: Node, name: str, want: str, kind: AttrKind | None) -> TraceError:
    got = "no value" if kind is None else kind.value
    return TraceError(f"{_where(label, node)}: attribute {name!r} must be {want}, found {got}")


def attr_int(node: Node, name: str, label: str = "<trace>", default: int | None = None) -> int:
    """The integer attribute ``name`` of ``node``; a missing one gives ``default`` (or an
    error when ``default`` is ``None``); a non-integer one is an error."""
    a = node.attr(name)
    if a is None:
        if default is None:
            raise TraceError(f"{_where(label, node)}: required attribute {name!r} is missing")
        return default
    if a.kind is None or a.kind.is_list or not a.kind.is_integer:
        raise _wrong_kind(label, node, name, "an integer (int64_val)", a.kind)
    return int(a.value)  # type: ignore[arg-type]


def attr_bool(node: Node, name: str, label: str = "<trace>", default: bool = False) -> bool:
    """The bool attribute ``name`` (``bool_val``), or ``default`` when absent."""
    a = node.attr(name)
    if a is None:
        return default
    if a.kind is not AttrKind.BOOL:
        raise _wrong_kind(label, node, name, "a bool (bool_val)", a.kind)
    return bool(a.value)


def attr_bool_list(node: Node, name: str, label: str = "<trace>") -> tuple[bool, ...] | None:
    """The bool-list attribute ``name`` (``bool_list``), or ``None`` when absent."""
    a = node.attr(name)
    if a is None:
        return None
    if a.kind is not AttrKind.BOOL_LIST:
        raise _wrong_kind(label, node, name, "a bool list (bool_list)", a.kind)
    return tuple(bool(v) for v in a.value)  # type: ignore[union-attr]


def attr_str(node: Node, name: str, label: str = "<trace>", default: str = "") -> str:
    """The string attribute ``name`` (``string_val``), or ``default`` when absent."""
    a = node.attr(name)
    if a is None:
        return default
    if a.kind is not AttrKind.STRING:
        raise _wrong_kind(label, node, name, "a string (string_val)", a.kind)
    return str(a.value)


def dependencies(node: Node, policy: DependencyPolicy) -> tuple[int, ...]:
    """The ids that gate ``node`` under ``policy`` (data first, duplicates removed)."""
    if policy is DependencyPolicy.DATA_ONLY:
        return tuple(dict.fromkeys(node.data_deps))
    return tuple(dict.fromkeys((*node.data_deps, *node.ctrl_deps)))


def _check_node(label: str, node: Node) -> None:
    if not isinstance(node.type, NodeType):
        raise TraceError(
            f"{_where(label, node)}: unknown node type {node.type} "
            f"(the schema defines {', '.join(f'{t.value}={t.name}' for t in NodeType)})"
        )
    if node.type is NodeType.INVALID_NODE:
        raise TraceError(f"{_where(label, node)}: node type is INVALID_NODE (0), i.e. unset")
    for name in _INT_ATTRS:
        if node.attr(name) is not None:
            attr_int(node, name, label)
    for name in _BOOL_ATTRS:
        attr_bool(node, name, label)
    for name in _BOOL_LIST_ATTRS:
        attr_bool_list(node, name, label)
    for name in _STR_ATTRS:
        attr_str(node, name, label)
    is_comm = node.type in (
        NodeType.COMM_SEND_NODE,
        NodeType.COMM_RECV_NODE,
        NodeType.COMM_COLL_NODE,
    )
    if not is_comm or attr_bool(node, "is_cpu_op", label):
        # a host-side record of a communication call (PyTorch traces) carries no transfer
        return
    size = attr_int(node, "comm_size", label)
    if size < 0:
        raise TraceError(f"{_where(label, node)}: attribute 'comm_size' is negative ({size})")
    if node.type is NodeType.COMM_SEND_NODE:
        attr_int(node, "comm_dst", label)
    elif node.type is NodeType.COMM_RECV_NODE:
        attr_int(node, "comm_src", label)
    else:
        comm_type = attr_int(node, "comm_type", label)
        if comm_type not in CommType._value2member_map_:
            raise TraceError(
                f"{_where(label, node)}: attribute 'comm_type' = {comm_type} is not a "
                "CollectiveCommType"
            )


def topological_order(
    trace: ExecutionTrace, policy: DependencyPolicy = DependencyPolicy.DATA_AND_CTRL
) -> list[int]:
    """Node ids in an order where every node follows its dependencies (Kahn's algorithm,
    smallest ready id first, the order ASTRA-sim issues ready nodes in). Raises on a
    dangling dependency or a cycle."""
    nodes = trace.node_map()
    label = trace.label
    children: dict[int, list[int]] = defaultdict(list)
    indegree = dict.fromkeys(nodes, 0)
    for node in trace.nodes:
        for dep in dependencies(node, policy):
            if dep not in nodes:
                which = "data_deps" if dep in node.data_deps else "ctrl_deps"
                raise TraceError(
                    f"{label}: node {node.id}: {which} references node {dep}, "
                    "which is not in the trace"
                )
            children[dep].append(node.id)
            indegree[node.id] += 1
    ready = [i for i, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        nid = heapq.heappop(ready)
        order.append(nid)
        for child in children[nid]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, child)
    if len(order) != len(nodes):
        cycle = _find_cycle({i for i, d in indegree.items() if d > 0}, nodes, policy)
        path = " -> ".join(str(i) for i in cycle)
        raise TraceError(f"{label}: node {cycle[0]}: cyclic dependency {path}")
    return order


def _find_cycle(stuck: set[int], nodes: Mapping[int, Node], policy: DependencyPolicy) -> list[int]:
    """One cycle among the nodes Kahn's algorithm could not order, as a closed path."""
    start = min(stuck)
    seen: dict[int, int] = {}
    path: list[int] = []
    current = start
    while current not in seen:
        seen[current] = len(path)
        path.append(current)
        current = min(d for d in dependencies(nodes[current], policy) if d in stuck)
    cycle = path[seen[current] :]
    cycle.reverse()  # show it in execution direction: dependency -> dependant
    first = cycle.index(min(cycle))
    cycle = cycle[first:] + cycle[:first]
    return [*cycle, cycle[0]]


def check_trace(
    trace: ExecutionTrace, policy: DependencyPolicy = DependencyPolicy.DATA_AND_CTRL
) -> None:
    """Check one rank's trace: node types, unique ids, attribute types, dependencies."""
    label = trace.label
    seen: set[int] = set()
    for node in trace.nodes:
        if node.id in seen:
            raise TraceError(f"{label}: node {node.id}: duplicate node id")
        seen.add(node.id)
        _check_node(label, node)
    topological_order(trace, policy)


def _p2p_key(node: Node, rank: int, label: str) -> tuple[int, int, int, int]:
    """(source, destination, tag, size) of a send or receive."""
    size = attr_int(node, "comm_size", label)
    tag = attr_int(node, "comm_tag", label, default=0)
    if node.type is NodeType.COMM_SEND_NODE:
        return rank, attr_int(node, "comm_dst", label), tag, size
    return attr_int(node, "comm_src", label), rank, tag, size


def check_workload(
    traces: Mapping[int, ExecutionTrace],
    policy: DependencyPolicy = DependencyPolicy.DATA_AND_CTRL,
) -> None:
    """Check every rank's trace, then that sends and receives pair up across ranks."""
    for rank in sorted(traces):
        check_trace(traces[rank], policy)
    sends: Counter[tuple[int, int, int, int]] = Counter()
    recvs: Counter[tuple[int, int, int, int]] = Counter()
    first: dict[tuple[str, tuple[int, int, int, int]], tuple[int, Node]] = {}
    for rank in sorted(traces):
        trace = traces[rank]
        for node in _p2p_nodes(trace.nodes):
            key = _p2p_key(node, rank, trace.label)
            peer = key[1] if node.type is NodeType.COMM_SEND_NODE else key[0]
            if peer not in traces:
                raise TraceError(
                    f"{trace.label}: node {node.id}: peer rank {peer} is not in the workload "
                    f"(ranks {min(traces)}..{max(traces)})"
                )
            side = "send" if node.type is NodeType.COMM_SEND_NODE else "recv"
            (sends if side == "send" else recvs)[key] += 1
            first.setdefault((side, key), (rank, node))
    for key in sorted(set(sends) | set(recvs)):
        n_send, n_recv = sends[key], recvs[key]
        if n_send == n_recv:
            continue
        src, dst, tag, size = key
        side = "send" if n_send > n_recv else "recv"
        rank, node = first[(side, key)]
        if side == "send":
            what = f"sends {size} B to rank {dst} with tag {tag}"
            other = f"rank {dst} posts {n_recv} matching receive(s) for {n_send} send(s)"
        else:
            what = f"receives {size} B from rank {src} with tag {tag}"
            other = f"rank {src} posts {n_send} matching send(s) for {n_recv} receive(s)"
        raise TraceError(
            f"{traces[rank].label}: node {node.id}: unmatched {side}: {what}, but {other}"
        )


def check_collectives(traces: Mapping[int, ExecutionTrace], pg_names_are_ids: bool) -> None:
    """Collectives must agree across the ranks that run them: the k-th collective of a
    communicator on every member rank has the same ``comm_type`` and ``comm_size`` (NCCL
    matches collectives by issue order within a communicator; a mismatch hangs or corrupts
    the job, ``ncclInvalidUsage`` at best). Ranks are compared in id order; the first
    disagreement names both nodes.

    A collective without ``pg_name`` runs on every rank. ``pg_name`` names one communicator
    only where a communicator-group file gives each group its own id (ASTRA-sim
    ``--comm-group-configuration``, ``pg_names_are_ids``); elsewhere (deepflow's lowered
    graphs name every tensor-parallel group ``tp``) those collectives are not compared."""
    sequences: dict[str, dict[int, list[tuple[int, int, Node]]]] = {}
    for rank in sorted(traces):
        trace = traces[rank]
        for node in sorted(trace.nodes, key=lambda n: n.id):
            if node.type is not NodeType.COMM_COLL_NODE:
                continue
            group = node.attr_value("pg_name", "") or "<all ranks>"
            if group != "<all ranks>" and not pg_names_are_ids:
                continue
            size = attr_int(node, "comm_size", trace.label)
            kind = attr_int(node, "comm_type", trace.label)
            sequences.setdefault(str(group), {}).setdefault(rank, []).append((kind, size, node))
    for group, by_rank in sorted(sequences.items()):
        ranks = sorted(by_rank)
        ref_rank = ranks[0]
        ref = by_rank[ref_rank]
        for rank in ranks[1:]:
            seq = by_rank[rank]
            for k, ((kind0, size0, n0), (kind, size, node)) in enumerate(zip(ref, seq, strict=False)):
                if (kind0, size0) != (kind, size):
                    raise TraceError(
                        f"{traces[rank].label}: node {node.id}: collective #{k} of group "
                        f"{group} is {CommType(kind).name} of {size} B, but rank {ref_rank} "
                        f"(node {n0.id}) runs {CommType(kind0).name} of {size0} B"
                    )
            if len(seq) != len(ref):
                raise TraceError(
                    f"{traces[rank].label}: group {group}: {len(seq)} collectives, but rank "
                    f"{ref_rank} runs {len(ref)}"
                )


def _p2p_nodes(nodes: Iterable[Node]) -> Iterable[Node]:
    for node in nodes:
        if node.type in (NodeType.COMM_SEND_NODE, NodeType.COMM_RECV_NODE):
            yield node
