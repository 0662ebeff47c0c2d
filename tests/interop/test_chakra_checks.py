"""Checks on ETs: every bad input gives a TraceError naming the file, the node and the
problem."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tests.interop.paths import CUSTOM_PREFIX

from deepflow.errors import TraceError
from deepflow.interop.chakra import (
    Attribute,
    AttrKind,
    DependencyPolicy,
    ExecutionTrace,
    GlobalMetadata,
    Node,
    NodeType,
    check_trace,
    check_workload,
    decode_et,
    encode_et,
    read_et,
    read_workload,
    topological_order,
)


def _comp(nid: int, *deps: int, ctrl: tuple[int, ...] = ()) -> Node:
    return Node(id=nid, name=f"op{nid}", type=NodeType.COMP_NODE, data_deps=deps, ctrl_deps=ctrl)


def _trace(*nodes: Node, source: str = "rank.0.et") -> ExecutionTrace:
    return ExecutionTrace(GlobalMetadata("0.0.4"), nodes, source)


def _coll(**attrs: tuple[AttrKind, object]) -> Node:
    return Node(
        id=5,
        name="ar",
        type=NodeType.COMM_COLL_NODE,
        attrs=tuple(Attribute(k, kind, v) for k, (kind, v) in attrs.items()),  # type: ignore[arg-type]
    )


def test_good_traces_pass() -> None:
    check_trace(_trace(_comp(1), _comp(2, 1), _comp(3, 1, 2)))
    check_workload(read_workload(CUSTOM_PREFIX))


def test_dangling_data_dependency() -> None:
    with pytest.raises(
        TraceError, match=r"^rank\.0\.et: node 2: data_deps references node 9, which is not"
    ):
        check_trace(_trace(_comp(1), _comp(2, 9)))


def test_dangling_ctrl_dependency_depends_on_policy() -> None:
    trace = _trace(_comp(1), _comp(2, 1, ctrl=(7,)))
    with pytest.raises(TraceError, match="node 2: ctrl_deps references node 7"):
        check_trace(trace)
    check_trace(trace, DependencyPolicy.DATA_ONLY)


def test_cycle_is_reported_as_a_path() -> None:
    trace = _trace(_comp(1), _comp(2, 1, 4), _comp(3, 2), _comp(4, 3))
    with pytest.raises(
        TraceError, match=r"rank\.0\.et: node 2: cyclic dependency 2 -> 3 -> 4 -> 2"
    ):
        check_trace(trace)


def test_self_loop_through_ctrl_deps() -> None:
    with pytest.raises(TraceError, match="node 1: cyclic dependency 1 -> 1"):
        check_trace(_trace(_comp(1, ctrl=(1,))))


def test_duplicate_id() -> None:
    with pytest.raises(TraceError, match="node 1: duplicate node id"):
        check_trace(_trace(_comp(1), _comp(1)))


def test_unknown_node_type_survives_decoding_and_is_reported() -> None:
    data = encode_et(_trace(Node(id=3, name="x", type=42)))
    trace = decode_et(data, "odd.et")
    assert trace.nodes[0].type == 42
    with pytest.raises(TraceError, match=r"odd\.et: node 3: unknown node type 42"):
        check_trace(trace)


def test_invalid_node_type() -> None:
    with pytest.raises(TraceError, match="node 4: node type is INVALID_NODE"):
        check_trace(_trace(Node(id=4, name="unset")))


def test_comm_size_given_as_string() -> None:
    node = _coll(comm_type=(AttrKind.INT64, 0), comm_size=(AttrKind.STRING, "1048576"))
    with pytest.raises(
        TraceError,
        match=r"rank\.0\.et: node 5: attribute 'comm_size' must be an integer \(int64_val\), "
        "found string_val",
    ):
        check_trace(_trace(node))


def test_other_attribute_type_errors() -> None:
    bad_dims = _coll(
        comm_type=(AttrKind.INT64, 0),
        comm_size=(AttrKind.INT64, 8),
        involved_dim=(AttrKind.INT64_LIST, (1,)),
    )
    with pytest.raises(TraceError, match="'involved_dim' must be a bool list"):
        check_trace(_trace(bad_dims))
    bad_cpu = _coll(is_cpu_op=(AttrKind.INT32, 0))
    with pytest.raises(TraceError, match="'is_cpu_op' must be a bool"):
        check_trace(_trace(bad_cpu))
    no_size = _coll(comm_type=(AttrKind.INT64, 0))
    with pytest.raises(TraceError, match="node 5: required attribute 'comm_size' is missing"):
        check_trace(_trace(no_size))
    bad_type = _coll(comm_type=(AttrKind.INT64, 99), comm_size=(AttrKind.INT64, 8))
    with pytest.raises(TraceError, match="'comm_type' = 99 is not a CollectiveCommType"):
        check_trace(_trace(bad_type))


def test_any_integer_branch_is_accepted_for_integer_attributes() -> None:
    node = _coll(comm_type=(AttrKind.UINT64, 0), comm_size=(AttrKind.UINT32, 8))
    check_trace(_trace(node))


def test_unmatched_receive_across_ranks() -> None:
    traces = dict(read_workload(CUSTOM_PREFIX))
    t3 = traces[3]
    last_send = max(n.id for n in t3.nodes if n.type is NodeType.COMM_SEND_NODE)
    kept = tuple(n for n in t3.nodes if n.id != last_send)
    kept = tuple(
        replace(n, data_deps=tuple(d for d in n.data_deps if d != last_send)) for n in kept
    )
    traces[3] = replace(t3, nodes=kept)
    with pytest.raises(
        TraceError,
        match=r"custom_allreduce\.4\.et: node \d+: unmatched recv: receives 131072 B from "
        r"rank 3 with tag 0, but rank 3 posts 13 matching send\(s\) for 14 receive\(s\)",
    ):
        check_workload(traces)


def test_unmatched_size_names_the_sender() -> None:
    traces = dict(read_workload(CUSTOM_PREFIX))
    t0 = traces[0]
    nodes = list(t0.nodes)
    first_send = nodes[0]
    attrs = tuple(
        Attribute("comm_size", AttrKind.INT64, 1000) if a.name == "comm_size" else a
        for a in first_send.attrs
    )
    nodes[0] = replace(first_send, attrs=attrs)
    traces[0] = replace(t0, nodes=tuple(nodes))
    with pytest.raises(
        TraceError, match=r"custom_allreduce\.0\.et: node 0: unmatched send: sends 1000 B"
    ):
        check_workload(traces)


def test_peer_outside_workload() -> None:
    send = Node(
        id=1,
        name="s",
        type=NodeType.COMM_SEND_NODE,
        attrs=(
            Attribute("comm_size", AttrKind.INT64, 4),
            Attribute("comm_dst", AttrKind.INT32, 5),
        ),
    )
    with pytest.raises(TraceError, match="node 1: peer rank 5 is not in the workload"):
        check_workload({0: _trace(send), 1: _trace(_comp(1), source="rank.1.et")})


def test_pytorch_trace_checks(pytorch_et: Path) -> None:
    trace = read_et(pytorch_et)
    check_trace(trace, DependencyPolicy.DATA_ONLY)
    with pytest.raises(TraceError, match=r"chakra\.0\.et: node 216: ctrl_deps references node 3,"):
        check_trace(trace)
    order = topological_order(trace, DependencyPolicy.DATA_ONLY)
    assert order[0] == 216
    position = {nid: i for i, nid in enumerate(order)}
    assert all(position[d] < position[n.id] for n in trace.nodes for d in n.data_deps)
    children = [n.id for n in trace.nodes if 216 in n.data_deps]
    assert children[:3] == [217, 430, 435]
    assert len(children) == 331
