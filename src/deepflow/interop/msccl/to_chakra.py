"""MSCCL-IR algorithm -> one Chakra ET per rank (send, receive and compute nodes).

Mapping of a step to ET nodes (reference doc section 4, "Complete mapping"; ``->`` is a
data dependency)::

    s     SEND                      r     RECV
    rcs   RECV -> SEND              rrc   RECV -> COMP(reduce)
    rrs   RECV -> COMP(reduce) -> SEND
    rrcs  RECV -> COMP(reduce) -> SEND
    cpy   COMP(copy)                re    COMP(reduce)
    nop   no node; its dependency is forwarded (see ``schedule.rank_schedules``)

The first node of a step depends on the last node of every step it waits on (program order
in its threadblock and ``depid``/``deps``). Sends and receives carry ``comm_tag`` = the
threadblock's channel, so ASTRA-sim's (tag, src, dst, size) matching pairs them.

Sizes are resolved here, because ASTRA-sim ignores the workload node's ``comm_size`` for a
custom collective (``CustomAlgorithm.cc``): a step moves ``cnt`` chunks of
:func:`~deepflow.interop.msccl.schedule.chunk_bytes` each. A reduction reads two operands
and writes one, ``3c`` bytes of local memory traffic, a copy ``2c``; the COMP node lasts
``floor(passes * floor(c / B) / 1000)`` us with ``B`` the local memory bandwidth in bytes/ns,
mirroring ASTRA-sim's reduction cost (``PacketBundle::call``, reference doc section 2.6) and
the collectiveapi converter's ``int(3 * int(size / 50) / 1000)``.

Node names, attribute order and metadata follow astra-sim/collectiveapi's
``mscclang2chakra_converter.py``, so converting ASTRA-sim's ``custom_allreduce.xml`` at 1 MiB
reproduces its shipped ``custom_allreduce.<r>.et`` files byte for byte.
"""

from __future__ import annotations

import math

from deepflow.interop.chakra.model import (
    Attribute,
    AttrKind,
    ExecutionTrace,
    GlobalMetadata,
    Node,
    NodeType,
)
from deepflow.interop.msccl.ir import MscclAlgorithm, StepType
from deepflow.interop.msccl.schedule import ScheduledStep, StepKey, chunk_bytes, rank_schedules

__all__ = ["CHAKRA_SCHEMA", "COPY_PASSES", "REDUCTION_PASSES", "msccl_to_chakra"]

CHAKRA_SCHEMA = "1.0.2-chakra.0.0.4"
"""The ``schema`` metadata the collectiveapi converter writes."""
REDUCTION_PASSES = 3
"""Bytes of local memory traffic per reduced byte: two reads, one write (ASTRA-sim
``PacketBundle::call``)."""
COPY_PASSES = 2
"""Bytes of local memory traffic per copied byte: one read, one write."""


def _duration_micros(passes: int, size: int, local_mem_bw_Bps: float) -> int:
    """``floor(passes * floor(size / B) / 1000)`` us, ``B`` in bytes/ns (collectiveapi's
    ``int(3 * int(size / 50) / 1000)`` with ``B`` = 50 GB/s)."""
    per_ns = local_mem_bw_Bps / 1e9
    return math.floor(passes * math.floor(size / per_ns) / 1000)


def _comm_attrs(
    kind: NodeType, size: int, peer_key: str, peer: int, tag: int
) -> tuple[Attribute, ...]:
    return (
        Attribute("comm_type", AttrKind.INT64, int(kind)),
        Attribute("comm_size", AttrKind.INT64, size),
        Attribute(peer_key, AttrKind.INT32, peer),
        Attribute("comm_tag", AttrKind.INT32, tag),
    )


def _rank_trace(
    algo: MscclAlgorithm,
    steps: tuple[ScheduledStep, ...],
    chunk: int,
    local_mem_bw_Bps: float,
    metadata: GlobalMetadata,
) -> ExecutionTrace:
    nodes: list[Node] = []
    last: dict[StepKey, int] = {}

    def add(kind: NodeType, step: ScheduledStep, deps: tuple[int, ...], **fields) -> int:  # type: ignore[no-untyped-def]
        nid = len(nodes)
        name = f"{kind.name}_tb{step.tb}_step{step.index}"
        nodes.append(Node(id=nid, name=name, type=kind, data_deps=deps, **fields))
        return nid

    for step in steps:
        size = chunk * step.chunks
        deps = tuple(last[k] for k in step.deps)
        if step.op.receives:
            attrs = _comm_attrs(
                NodeType.COMM_RECV_NODE, size, "comm_src", step.recv_peer, step.channel
            )  # type: ignore[arg-type]
            deps = (add(NodeType.COMM_RECV_NODE, step, deps, attrs=attrs),)
        if step.op.reduces:
            dur = _duration_micros(REDUCTION_PASSES, size, local_mem_bw_Bps)
            deps = (add(NodeType.COMP_NODE, step, deps, duration_micros=dur),)
        elif step.op is StepType.COPY:
            dur = _duration_micros(COPY_PASSES, size, local_mem_bw_Bps)
            deps = (add(NodeType.COMP_NODE, step, deps, duration_micros=dur),)
        if step.op.sends:
            attrs = _comm_attrs(
                NodeType.COMM_SEND_NODE, size, "comm_dst", step.send_peer, step.channel
            )  # type: ignore[arg-type]
            deps = (add(NodeType.COMM_SEND_NODE, step, deps, attrs=attrs),)
        (last[step.key],) = deps
    source = f"{algo.source} (rank {steps[0].rank if steps else '?'})"
    return ExecutionTrace(metadata, tuple(nodes), source)


def msccl_to_chakra(
    algo: MscclAlgorithm,
    collective_size: int,
    local_mem_bw_Bps: float = 50e9,
) -> dict[int, ExecutionTrace]:
    """Convert ``algo`` into one ET per rank, for a collective of ``collective_size`` bytes
    (ASTRA-sim ``comm_size`` semantics: the per-rank input for all-gather, the whole
    buffer otherwise).

    ``local_mem_bw_Bps`` (bytes/s) sets the duration of reduction and copy nodes; the
    default, 50 GB/s, is the constant of the collectiveapi converter.
    """
    chunk = chunk_bytes(algo, collective_size)
    metadata = GlobalMetadata(
        attrs=(
            Attribute("schema", AttrKind.STRING, CHAKRA_SCHEMA),
            Attribute("input_file", AttrKind.STRING, algo.xml),
            Attribute("collective", AttrKind.STRING, algo.coll.value),
        )
    )
    return {
        rank: _rank_trace(algo, steps, chunk, local_mem_bw_Bps, metadata)
        for rank, steps in rank_schedules(algo).items()
    }
