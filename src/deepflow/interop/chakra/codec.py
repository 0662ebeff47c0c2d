"""Read and write Chakra ET files.

Framing (mlcommons/chakra ``src/third_party/utils/protolib.py``; reference doc section 1.1):
a ``.et`` file is a sequence of records ``[length][message]`` where ``length`` is an
unsigned base-128 varint of at most 32 bits. The first message is a ``GlobalMetadata``,
every later one a ``Node``. There is no header and no magic number. Readers of the Python
tools and of the legacy C++ feeder accept gzip-compressed files (magic ``1f 8b``), so
:func:`read_et` does too; ASTRA-sim's ``feeder_v3`` does not, so :func:`write_et` never
compresses.

The messages themselves are encoded and decoded by the ``protobuf`` runtime with the classes
generated from ``et_def.proto`` (:mod:`deepflow.interop.chakra.et_def_pb2`); only the
length prefix is handled here. Protobuf serialises fields in field-number order and
omits proto3 defaults, which is also how every upstream writer produced its files, so a file
read with :func:`read_et` and written with :func:`write_et` comes back byte for byte.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from google.protobuf.message import DecodeError

from deepflow.errors import TraceError
from deepflow.interop.chakra import et_def_pb2 as pb
from deepflow.interop.chakra.model import (
    Attribute,
    AttrKind,
    ExecutionTrace,
    GlobalMetadata,
    IOInfo,
    Node,
    NodeType,
)
from deepflow.specs.files import MAX_TRACE_BYTES, atomic_write, gunzip, read_bytes

__all__ = [
    "decode_et",
    "encode_et",
    "et_path",
    "read_et",
    "read_workload",
    "write_et",
    "write_workload",
]

_MAX_RECORD = 2**32 - 1
_GZIP_MAGIC = b"\x1f\x8b"
_NODE_TYPES = {t.value: t for t in NodeType}


# --- length-prefix framing -----------------------------------------------------------------


def _varint(n: int) -> bytes:
    """Unsigned base-128 varint, least significant group first (protobuf encoding guide)."""
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


MAX_TRACE_NODES = 2_000_000
"""Most nodes read from one ET file (a rank of a 16k-GPU Llama 3 step holds ~100k)."""


def _records(data: bytes, source: str) -> Iterator[tuple[int, bytes]]:
    """Yield ``(record index, message bytes)`` for each length-prefixed record."""
    pos, index, end = 0, 0, len(data)
    while pos < end:
        length, shift, start = 0, 0, pos
        while True:
            if pos >= end:
                raise TraceError(
                    f"{source}: record {index} at byte {start}: file ends inside the length prefix"
                )
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 28:
                raise TraceError(
                    f"{source}: record {index} at byte {start}: length prefix longer than 32 bits"
                )
        if length > _MAX_RECORD:
            raise TraceError(f"{source}: record {index}: length {length} exceeds 32 bits")
        if pos + length > end:
            raise TraceError(
                f"{source}: record {index} at byte {start}: length {length} runs past the end "
                f"of the file ({end - pos} bytes left)"
            )
        if length == 0 and index > 0:
            # Chakra's reader takes a zero length as the end of the stream (encode_et)
            raise TraceError(
                f"{source}: record {index} at byte {start}: zero-length Node record (readers "
                "stop at it; a run of zero bytes is not a trace)"
            )
        if index > MAX_TRACE_NODES:
            raise TraceError(
                f"{source}: more than {MAX_TRACE_NODES:,} nodes, the limit of one ET file"
            )
        yield index, data[pos : pos + length]
        pos += length
        index += 1


# --- protobuf <-> typed objects ------------------------------------------------------------


def _attr_from_pb(a: pb.AttributeProto) -> Attribute:
    branch = a.WhichOneof("value")
    if branch is None:
        return Attribute(a.name, None, None, a.doc_string)
    kind = AttrKind(branch)
    raw = getattr(a, branch)
    value = tuple(raw.values) if kind.is_list else raw
    return Attribute(a.name, kind, value, a.doc_string)


def _attr_to_pb(attr: Attribute, out: pb.AttributeProto) -> None:
    out.name = attr.name
    if attr.doc_string:
        out.doc_string = attr.doc_string
    if attr.kind is None:
        return
    if attr.kind.is_list:
        holder = getattr(out, attr.kind.value)
        holder.SetInParent()
        holder.values.extend(attr.value or ())  # type: ignore[arg-type]
    else:
        setattr(out, attr.kind.value, attr.value)


def _io_from_pb(msg: pb.Node, name: str) -> IOInfo | None:
    if not msg.HasField(name):
        return None
    io = getattr(msg, name)
    return IOInfo(io.values, io.shapes, io.types)


def _io_to_pb(io: IOInfo | None, out: pb.IOInfo) -> None:
    if io is None:
        return
    out.SetInParent()
    out.values, out.shapes, out.types = io.values, io.shapes, io.types


def _node_from_pb(msg: pb.Node) -> Node:
    return Node(
        id=msg.id,
        name=msg.name,
        type=_NODE_TYPES.get(msg.type, msg.type),
        ctrl_deps=tuple(msg.ctrl_deps),
        data_deps=tuple(msg.data_deps),
        start_time_micros=msg.start_time_micros,
        duration_micros=msg.duration_micros,
        inputs=_io_from_pb(msg, "inputs"),
        outputs=_io_from_pb(msg, "outputs"),
        attrs=tuple(_attr_from_pb(a) for a in msg.attr),
    )


def _node_to_pb(node: Node) -> pb.Node:
    msg = pb.Node(
        id=node.id,
        name=node.name,
        type=int(node.type),
        ctrl_deps=node.ctrl_deps,
        data_deps=node.data_deps,
        start_time_micros=node.start_time_micros,
        duration_micros=node.duration_micros,
    )
    _io_to_pb(node.inputs, msg.inputs)
    _io_to_pb(node.outputs, msg.outputs)
    for attr in node.attrs:
        _attr_to_pb(attr, msg.attr.add())
    return msg


def _metadata_from_pb(msg: pb.GlobalMetadata) -> GlobalMetadata:
    return GlobalMetadata(msg.version, tuple(_attr_from_pb(a) for a in msg.attr))


def _metadata_to_pb(meta: GlobalMetadata) -> pb.GlobalMetadata:
    msg = pb.GlobalMetadata(version=meta.version)
    for attr in meta.attrs:
        _attr_to_pb(attr, msg.attr.add())
    return msg


# --- public API ----------------------------------------------------------------------------


def decode_et(data: bytes, source: str = "<bytes>") -> ExecutionTrace:
    """Decode the bytes of an ET file (plain or gzip-compressed) into an ExecutionTrace.

    Only the framing and the protobuf encoding are checked here; the graph checks (ids,
    dependencies, attribute types) are in :mod:`deepflow.interop.chakra.checks`.
    """
    if data[:2] == _GZIP_MAGIC:
        data = gunzip(data, source, MAX_TRACE_BYTES, TraceError)
    metadata: GlobalMetadata | None = None
    nodes: list[Node] = []
    # framing first: the record count is bounded before any message is decoded
    for index, payload in list(_records(data, source)):
        try:
            if index == 0:
                metadata = _metadata_from_pb(pb.GlobalMetadata.FromString(payload))
            else:
                nodes.append(_node_from_pb(pb.Node.FromString(payload)))
        except DecodeError as exc:
            what = "GlobalMetadata" if index == 0 else "Node"
            raise TraceError(
                f"{source}: record {index} is not a valid {what} message: {exc}"
            ) from None
    if metadata is None:
        raise TraceError(f"{source}: empty file; an ET starts with a GlobalMetadata record")
    return ExecutionTrace(metadata, tuple(nodes), source)


def encode_et(trace: ExecutionTrace) -> bytes:
    """Encode an ExecutionTrace into the bytes of an (uncompressed) ET file.

    Raises :class:`TraceError` for a node that would serialise to zero bytes: Chakra's Python
    reader takes a zero length as the end of the stream and would silently drop every node
    after it (reference doc section 1.1, "zero-length pitfall").
    """
    chunks = [_metadata_to_pb(trace.metadata).SerializeToString()]
    for node in trace.nodes:
        payload = _node_to_pb(node).SerializeToString()
        if not payload:
            raise TraceError(
                f"{trace.label}: node {node.id}: every field is at its default, so the node "
                "encodes to zero bytes and readers would stop at it; give it a type or name"
            )
        chunks.append(payload)
    out = bytearray()
    for payload in chunks:
        out += _varint(len(payload))
        out += payload
    return bytes(out)


def read_et(path: str | os.PathLike[str]) -> ExecutionTrace:
    """Read one ``.et`` file."""
    source = os.fspath(path)
    return decode_et(read_bytes(source, MAX_TRACE_BYTES, TraceError), source)


def write_et(trace: ExecutionTrace, path: str | os.PathLike[str]) -> None:
    """Write one ``.et`` file (uncompressed, as ASTRA-sim's ``feeder_v3`` requires)."""
    atomic_write(path, encode_et(trace), "--out")


def et_path(prefix: str | os.PathLike[str], rank: int) -> str:
    """The file of ``rank`` in a workload: ``<prefix>.<rank>.et`` (ASTRA-sim
    ``workload/Workload.cc``)."""
    return f"{os.fspath(prefix)}.{rank}.et"


def read_workload(prefix: str | os.PathLike[str]) -> dict[int, ExecutionTrace]:
    """Read ``<prefix>.0.et``, ``<prefix>.1.et``, ... up to the first missing rank."""
    traces: dict[int, ExecutionTrace] = {}
    while os.path.exists(et_path(prefix, len(traces))):
        rank = len(traces)
        traces[rank] = read_et(et_path(prefix, rank))
    if not traces:
        raise TraceError(f"{et_path(prefix, 0)}: no such file (workload prefix {prefix!s})")
    return traces


def write_workload(traces: dict[int, ExecutionTrace], prefix: str | os.PathLike[str]) -> list[str]:
    """Write one ``<prefix>.<rank>.et`` per rank; return the paths written."""
    paths = []
    for rank in sorted(traces):
        path = et_path(prefix, rank)
        write_et(traces[rank], path)
        paths.append(path)
    return paths
