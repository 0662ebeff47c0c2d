"""Export a task graph (a lowered scenario) as per-rank Chakra execution traces.

:func:`graph_to_et` turns a :class:`~deepflow.graph.ir.TaskGraph` into one
:class:`~deepflow.interop.chakra.model.ExecutionTrace` per rank; write them with
:func:`~deepflow.interop.chakra.codec.write_workload` as ``<prefix>.<rank>.et``. The
mapping (reference doc ``chakra-astra-msccl.md`` sections 1.2 to 1.4):

* files: the ``k``-th rank of the graph in ascending order is workload rank ``k``
  (``<prefix>.<k>.et``); the graph's own rank id, which for a lowered scenario is the
  representative global rank of a pipeline stage, is the ``rank`` attribute of the
  ``GlobalMetadata``. Peers (``comm_src``, ``comm_dst``) are workload ranks;
* node ids are task ids (unique in the whole graph, hence in each file); node names are
  task names;
* task kinds map one for one to node types: ``COMPUTE`` -> ``COMP_NODE``, ``COLLECTIVE`` ->
  ``COMM_COLL_NODE``, ``SEND`` -> ``COMM_SEND_NODE``, ``RECV`` -> ``COMM_RECV_NODE``,
  ``MEMORY`` -> ``MEM_LOAD_NODE``;
* ``duration_micros`` is the task's duration rounded to whole microseconds (the field's
  resolution, what ASTRA-sim replays); the exact duration is the ``duration_s`` attribute
  (``double_val``), which :mod:`.to_graph` reads first;
* communication attributes in the branches ASTRA-sim reads: ``is_cpu_op`` (``bool_val``,
  false), ``comm_type`` and ``comm_size`` (``int64_val``), ``comm_src``, ``comm_dst`` and
  ``comm_tag`` (``int32_val``, as the MSCCL-IR converter writes them), ``pg_name``
  (``string_val``); where ``size_bytes`` is not a whole number the exact value is the
  ``size_bytes`` attribute (``double_val``);
* the task's timeline labels are attributes too: ``stream``, ``category`` and ``phase``
  (``string_val``), ``layer``, ``micro_batch`` and ``chunk`` (``int64_val``, written when
  set);
* dependencies: the task's ``deps`` are ``data_deps``; the order of a stream, which the
  executor keeps implicitly, is made explicit as a ``ctrl_deps`` edge to the task before on
  the same stream, so that a reader that knows no streams (ASTRA-sim's ``feeder_v3`` waits
  on data and control edges) runs the same program.

A dependency between ranks cannot be written in Chakra (every id a node names is in its own
file), so each one becomes a message: a ``SEND`` task with a dependant on rank ``b`` sends
to ``b`` (``comm_tag`` = its id), and rank ``b`` gets a ``COMM_RECV_NODE`` with the same
source, tag and size that the dependant waits on instead. A cross-rank edge from a task
that is not a send (or a second peer of one send) gets a zero-byte send of its own, on a
stream of its own and taking no time; a graph's own ``RECV`` task that depends on a send of
another rank is that send's receive; a send no other rank waits for is received by its own
rank, so that every send has its receive. New nodes take ids after the graph's last task, so the
graph's ids are kept.

Which collective a lowered task is, and over which group, is read from its category: the
graph IR has no field for either (``tp_comm`` -> all-reduce over ``tp``, ``cp_comm`` ->
all-gather over ``cp``, ``ep_comm`` -> all-to-all over ``ep``, ``dp_comm`` -> all-reduce
over ``dp``, or for ZeRO-3 an all-gather in the forward and a reduce-scatter in the
backward). A lowered graph holds one representative rank per pipeline stage, so these
groups are not among the exported ranks; the recorded ``duration_s`` is the collective's
time on the full group.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from deepflow.graph.ir import Task, TaskGraph, TaskKind
from deepflow.interop.chakra.model import (
    Attribute,
    AttrKind,
    CommType,
    ExecutionTrace,
    GlobalMetadata,
    Node,
    NodeType,
)

__all__ = ["ET_VERSION", "NODE_TYPE_OF", "graph_to_et"]

ET_VERSION = "0.0.4"
"""``GlobalMetadata.version`` of the written ETs (the one ASTRA-sim's own generators write;
never empty, see the reference doc's zero-length pitfall)."""

NODE_TYPE_OF = {
    TaskKind.COMPUTE: NodeType.COMP_NODE,
    TaskKind.COLLECTIVE: NodeType.COMM_COLL_NODE,
    TaskKind.SEND: NodeType.COMM_SEND_NODE,
    TaskKind.RECV: NodeType.COMM_RECV_NODE,
    TaskKind.MEMORY: NodeType.MEM_LOAD_NODE,
}
"""Chakra node type of each task kind."""

_GROUP_OF = {"tp_comm": "tp", "cp_comm": "cp", "ep_comm": "ep", "dp_comm": "dp"}


def collective_of(task: Task) -> tuple[CommType, str]:
    """The Chakra collective type and group name of a lowered collective task (see the
    module docstring: the IR records neither, the category implies both)."""
    group = _GROUP_OF.get(task.category, "")
    if task.category == "cp_comm":
        return CommType.ALL_GATHER, group
    if task.category == "ep_comm":
        return CommType.ALL_TO_ALL, group
    if task.category == "dp_comm" and "zero3" in task.name:
        return (CommType.REDUCE_SCATTER if task.phase == "B" else CommType.ALL_GATHER), group
    return CommType.ALL_REDUCE, group


def _labels(task: Task) -> list[Attribute]:
    out = [
        Attribute("stream", AttrKind.STRING, task.stream),
        Attribute("category", AttrKind.STRING, task.category),
    ]
    if task.phase:
        out.append(Attribute("phase", AttrKind.STRING, task.phase))
    for name in ("layer", "micro_batch", "chunk"):
        value = getattr(task, name)
        if value >= 0:
            out.append(Attribute(name, AttrKind.INT64, value))
    return out


def _size_attrs(size: float) -> list[Attribute]:
    whole = round(size)
    out = [Attribute("comm_size", AttrKind.INT64, whole)]
    if whole != size:
        out.append(Attribute("size_bytes", AttrKind.DOUBLE, float(size)))
    return out


def _micros(seconds: float) -> int:
    return round(seconds * 1e6)


def _unique(ids: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(ids))


def graph_to_et(graph: TaskGraph) -> dict[int, ExecutionTrace]:
    """One execution trace per rank of ``graph``, keyed by workload rank ``0..n-1`` (the
    graph's ranks in ascending order); see the module docstring for the mapping."""
    ranks = graph.ranks
    index = {r: k for k, r in enumerate(ranks)}
    tasks = graph.tasks
    next_id = len(tasks)

    # the task before each task on its stream: the stream order as a control edge
    before: dict[int, int] = {}
    for ids in graph.streams().values():
        for a, b in itertools.pairwise(ids):
            before[b] = a

    # cross-rank edges become messages: (source task, destination rank) -> recv node id
    peer_of: dict[int, int] = {}  # send task -> its destination workload rank
    recv_of: dict[tuple[int, int], int] = {}
    bound: dict[int, int] = {}  # a graph's own RECV task -> the send it receives
    extra: dict[int, list[Node]] = {k: [] for k in range(len(ranks))}
    for t in tasks:  # the graph's own receives first: other dependants wait on them too
        if t.kind is not TaskKind.RECV:
            continue
        for d in t.deps:
            u = tasks[d]
            if u.rank == t.rank or u.kind is not TaskKind.SEND or (d, t.rank) in recv_of:
                continue
            if peer_of.setdefault(d, index[t.rank]) == index[t.rank]:
                bound[t.id] = d
                recv_of[(d, t.rank)] = t.id
                break
    for t in tasks:
        for d in t.deps:
            u = tasks[d]
            if u.rank == t.rank or (d, t.rank) in recv_of:
                continue
            src, dst = index[u.rank], index[t.rank]
            size = u.size_bytes
            if u.kind is TaskKind.SEND and peer_of.setdefault(d, dst) == dst:
                send_id, send_name = d, u.name
            else:  # a control edge across ranks: a zero-byte message of its own
                send_id, send_name, size = next_id, f"sync {u.name}", 0.0
                next_id += 1
                extra[src].append(
                    Node(
                        id=send_id,
                        name=send_name,
                        type=NodeType.COMM_SEND_NODE,
                        data_deps=(d,),
                        attrs=(
                            Attribute("is_cpu_op", AttrKind.BOOL, False),
                            *_size_attrs(size),
                            Attribute("comm_dst", AttrKind.INT32, dst),
                            Attribute("comm_tag", AttrKind.INT32, send_id),
                            Attribute("duration_s", AttrKind.DOUBLE, 0.0),
                            Attribute("stream", AttrKind.STRING, f"send {send_id}"),
                        ),
                    )
                )
            recv_id = next_id
            next_id += 1
            recv_of[(d, t.rank)] = recv_id
            extra[dst].append(
                Node(
                    id=recv_id,
                    name=f"recv {send_name}",
                    type=NodeType.COMM_RECV_NODE,
                    attrs=(
                        Attribute("is_cpu_op", AttrKind.BOOL, False),
                        *_size_attrs(size),
                        Attribute("comm_src", AttrKind.INT32, src),
                        Attribute("comm_tag", AttrKind.INT32, send_id),
                    ),
                )
            )

    for t in tasks:  # a send no other rank waits for: a message to itself
        if t.kind is TaskKind.SEND and t.id not in peer_of:
            here = index[t.rank]
            peer_of[t.id] = here
            extra[here].append(
                Node(
                    id=next_id,
                    name=f"recv {t.name}",
                    type=NodeType.COMM_RECV_NODE,
                    attrs=(
                        Attribute("is_cpu_op", AttrKind.BOOL, False),
                        *_size_attrs(t.size_bytes),
                        Attribute("comm_src", AttrKind.INT32, here),
                        Attribute("comm_tag", AttrKind.INT32, t.id),
                    ),
                )
            )
            next_id += 1

    nodes: dict[int, list[Node]] = {k: [] for k in range(len(ranks))}
    for t in tasks:
        attrs: list[Attribute] = []
        if t.kind is not TaskKind.MEMORY:
            attrs.append(Attribute("is_cpu_op", AttrKind.BOOL, False))
        if t.kind is TaskKind.COLLECTIVE:
            comm_type, group = collective_of(t)
            attrs.append(Attribute("comm_type", AttrKind.INT64, int(comm_type)))
            attrs += _size_attrs(t.size_bytes)
            if group:
                attrs.append(Attribute("pg_name", AttrKind.STRING, group))
        elif t.kind is TaskKind.SEND:
            attrs += _size_attrs(t.size_bytes)
            attrs.append(Attribute("comm_dst", AttrKind.INT32, peer_of[t.id]))
            attrs.append(Attribute("comm_tag", AttrKind.INT32, t.id))
        elif t.kind is TaskKind.RECV:
            attrs += _size_attrs(t.size_bytes)
            send = bound.get(t.id, t.id)
            attrs.append(Attribute("comm_src", AttrKind.INT32, index[tasks[send].rank]))
            attrs.append(Attribute("comm_tag", AttrKind.INT32, send))
        elif t.kind is TaskKind.MEMORY and t.size_bytes:
            attrs.append(Attribute("tensor_size", AttrKind.UINT64, round(t.size_bytes)))
            if round(t.size_bytes) != t.size_bytes:
                attrs.append(Attribute("size_bytes", AttrKind.DOUBLE, float(t.size_bytes)))
        attrs.append(Attribute("duration_s", AttrKind.DOUBLE, float(t.duration_s)))
        attrs += _labels(t)
        data = _unique(
            d if tasks[d].rank == t.rank else recv_of[(d, t.rank)]
            for d in t.deps
            if bound.get(t.id) != d
        )
        ctrl = (before[t.id],) if t.id in before else ()
        nodes[index[t.rank]].append(
            Node(
                id=t.id,
                name=t.name,
                type=NODE_TYPE_OF[t.kind],
                ctrl_deps=ctrl,
                data_deps=data,
                duration_micros=_micros(t.duration_s),
                attrs=tuple(attrs),
            )
        )

    out: dict[int, ExecutionTrace] = {}
    for k, rank in enumerate(ranks):
        meta = GlobalMetadata(ET_VERSION, (Attribute("rank", AttrKind.INT64, rank),))
        out[k] = ExecutionTrace(meta, (*nodes[k], *extra[k]), source=f"rank {rank}")
    return out
