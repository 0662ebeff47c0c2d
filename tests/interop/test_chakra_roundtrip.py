"""Chakra ET reader/writer: byte-identical round trips on every fixture, and on generated
graphs (Hypothesis)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.interop.paths import ASTRA, CUSTOM_PREFIX, MICROBENCH

from deepflow.errors import TraceError
from deepflow.interop.chakra import (
    Attribute,
    AttrKind,
    CommType,
    ExecutionTrace,
    GlobalMetadata,
    IOInfo,
    Node,
    NodeType,
    decode_et,
    encode_et,
    read_et,
    read_workload,
    write_et,
)

ET_FILES = sorted(ASTRA.rglob("*.et"))


def test_fixture_set_is_complete() -> None:
    assert len(ET_FILES) == 72  # 64 microbenchmarks + 8 custom all-reduce ranks


@pytest.mark.parametrize("path", ET_FILES, ids=lambda p: str(p.relative_to(ASTRA)))
def test_astra_et_round_trip_is_byte_identical(path: Path, tmp_path: Path) -> None:
    original = path.read_bytes()
    trace = read_et(path)
    assert encode_et(trace) == original
    out = tmp_path / path.name
    write_et(trace, out)
    assert out.read_bytes() == original


def test_pytorch_trace_round_trip_and_facts(pytorch_et: Path) -> None:
    original = pytorch_et.read_bytes()
    trace = read_et(pytorch_et)
    assert encode_et(trace) == original
    assert len(original) == 2_978_371
    assert len(trace.nodes) == 3664
    kinds = [n.type for n in trace.nodes]
    assert kinds.count(NodeType.COMP_NODE) == 3643
    assert kinds.count(NodeType.COMM_COLL_NODE) == 21
    assert (trace.nodes[0].id, trace.nodes[-1].id) == (216, 7022)
    assert trace.metadata.version == ""
    assert trace.metadata.attr("pid") == Attribute("pid", AttrKind.UINT64, 114598)
    assert trace.metadata.attr("schema").value == "1.0.1"  # type: ignore[union-attr]
    coll = trace.node_map()[3512]
    assert coll.attr_value("comm_type") == CommType.ALL_REDUCE
    assert coll.attr_value("comm_size") == 31_502_336
    assert coll.attr("involved_dim") == Attribute("involved_dim", AttrKind.BOOL_LIST, (True,))
    assert coll.duration_micros == 9093
    assert sum(len(n.data_deps) for n in trace.nodes) == 181_878


def test_microbenchmark_facts() -> None:
    traces = read_workload(MICROBENCH / "all_reduce/8npus_1MB/all_reduce")
    assert sorted(traces) == list(range(8))
    for rank, trace in traces.items():
        assert trace.metadata == GlobalMetadata("0.0.4")
        (node,) = trace.nodes
        assert node.id == rank
        assert node.type is NodeType.COMM_COLL_NODE
        assert node.attrs == (
            Attribute("is_cpu_op", AttrKind.BOOL, False),
            Attribute("comm_type", AttrKind.INT64, 0),
            Attribute("comm_size", AttrKind.INT64, 1_048_576),
        )


def test_custom_allreduce_facts() -> None:
    traces = read_workload(CUSTOM_PREFIX)
    xml = (CUSTOM_PREFIX.parent / "custom_allreduce.xml").read_text()
    for rank, trace in traces.items():
        assert trace.metadata.attr("input_file").value == xml  # type: ignore[union-attr]
        assert [n.id for n in trace.nodes] == list(range(35))
        assert all(n.data_deps == ((n.id - 1,) if n.id else ()) for n in trace.nodes)
        sends = [n for n in trace.nodes if n.type is NodeType.COMM_SEND_NODE]
        assert len(sends) == 14
        assert {s.attr_value("comm_dst") for s in sends} == {(rank + 1) % 8}


def test_regression_workload_encodes_as_documented() -> None:
    """The 73-byte ET that ASTRA-sim's rt_template generator writes (reference doc 2.7)."""
    node = Node(
        id=1,
        name="All-Reduce",
        type=NodeType.COMM_COLL_NODE,
        attrs=(
            Attribute("is_cpu_op", AttrKind.BOOL, False),
            Attribute("comm_type", AttrKind.INT64, 0),
            Attribute("comm_size", AttrKind.INT64, 1_048_576),
        ),
    )
    data = encode_et(ExecutionTrace(GlobalMetadata("0.0.4"), (node,)))
    assert data.hex() == (
        "070a05302e302e34400801120a416c6c2d5265647563651807520e0a0969735f6370755f6f70d80100"
        "520d0a09636f6d6d5f747970654800520f0a09636f6d6d5f73697a6548808040"
    )


def test_gzip_compressed_file_is_read(tmp_path: Path) -> None:
    path = MICROBENCH / "all_gather/4npus_1MB/all_gather.2.et"
    packed = tmp_path / "all_gather.2.et"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert read_et(packed) == read_et(path)


def test_truncated_file_names_file_and_record(tmp_path: Path) -> None:
    data = (MICROBENCH / "all_reduce/4npus_1MB/all_reduce.1.et").read_bytes()
    bad = tmp_path / "cut.1.et"
    bad.write_bytes(data[:-5])
    with pytest.raises(TraceError, match=r"cut\.1\.et: record 1 at byte 8: length 74 runs past"):
        read_et(bad)


def test_garbage_record_is_a_trace_error() -> None:
    with pytest.raises(TraceError, match=r"x\.et: record 1 is not a valid Node"):
        decode_et(b"\x00\x02\xff\xff", "x.et")


def test_empty_file_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="empty file"):
        decode_et(b"", "e.et")
    with pytest.raises(TraceError, match=r"nothing\.0\.et: no such file"):
        read_workload(tmp_path / "nothing")


def test_all_default_node_is_refused_on_write() -> None:
    trace = ExecutionTrace(GlobalMetadata("1.0.0"), (Node(id=0),), "zero.et")
    with pytest.raises(TraceError, match=r"zero\.et: node 0: .*zero bytes"):
        encode_et(trace)


# --- Hypothesis: write -> read on generated graphs ------------------------------------------

_INT_RANGES = {
    AttrKind.INT32: (-(2**31), 2**31 - 1),
    AttrKind.SINT32: (-(2**31), 2**31 - 1),
    AttrKind.SFIXED32: (-(2**31), 2**31 - 1),
    AttrKind.INT64: (-(2**63), 2**63 - 1),
    AttrKind.SINT64: (-(2**63), 2**63 - 1),
    AttrKind.SFIXED64: (-(2**63), 2**63 - 1),
    AttrKind.UINT32: (0, 2**32 - 1),
    AttrKind.FIXED32: (0, 2**32 - 1),
    AttrKind.UINT64: (0, 2**64 - 1),
    AttrKind.FIXED64: (0, 2**64 - 1),
}


def _scalar(kind: AttrKind) -> st.SearchStrategy[object]:
    if kind in _INT_RANGES:
        lo, hi = _INT_RANGES[kind]
        return st.integers(lo, hi)
    return {
        AttrKind.DOUBLE: st.floats(allow_nan=False),
        AttrKind.FLOAT: st.floats(allow_nan=False, width=32),
        AttrKind.BOOL: st.booleans(),
        AttrKind.STRING: st.text(max_size=12),
        AttrKind.BYTES: st.binary(max_size=12),
    }[kind]


@st.composite
def attributes(draw: st.DrawFn) -> Attribute:
    kind = draw(st.sampled_from(list(AttrKind)))
    values = _scalar(kind.scalar)
    value = tuple(draw(st.lists(values, max_size=4))) if kind.is_list else draw(values)
    doc = draw(st.sampled_from(["", "doc"]))
    return Attribute(draw(st.text(max_size=10)), kind, value, doc)  # type: ignore[arg-type]


io_infos = st.none() | st.builds(
    IOInfo, st.text(max_size=8), st.text(max_size=8), st.text(max_size=8)
)
u64 = st.integers(0, 2**64 - 1)


@st.composite
def traces(draw: st.DrawFn) -> ExecutionTrace:
    ids = draw(st.lists(u64, min_size=0, max_size=12, unique=True))
    nodes = []
    for nid in ids:
        deps = st.lists(st.sampled_from(ids), max_size=3) if ids else st.just([])
        nodes.append(
            Node(
                id=nid,
                name=draw(st.text(min_size=1, max_size=12)),
                type=draw(st.sampled_from(list(NodeType)[1:])),
                ctrl_deps=tuple(draw(deps)),
                data_deps=tuple(draw(deps)),
                start_time_micros=draw(u64),
                duration_micros=draw(u64),
                inputs=draw(io_infos),
                outputs=draw(io_infos),
                attrs=tuple(draw(st.lists(attributes(), max_size=4))),
            )
        )
    meta = GlobalMetadata(
        draw(st.text(max_size=8)), tuple(draw(st.lists(attributes(), max_size=3)))
    )
    return ExecutionTrace(meta, tuple(nodes))


@settings(max_examples=150, deadline=None)
@given(traces())
def test_write_read_round_trip(trace: ExecutionTrace) -> None:
    data = encode_et(trace)
    back = decode_et(data)
    assert back == trace
    assert encode_et(back) == data
