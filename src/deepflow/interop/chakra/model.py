"""Typed, immutable Python objects for a Chakra execution trace (ET).

An ET file holds one rank's work: a :class:`GlobalMetadata` record, then :class:`Node`
records (compute, memory, send, receive, collective) linked by ``data_deps`` and
``ctrl_deps``. The objects here mirror the schema ``et_def.proto`` (mlcommons/chakra,
``schema/protobuf/et_def.proto``) one field for one field, so that a file read into them and
written back is byte-identical (:mod:`deepflow.interop.chakra.codec`). They are frozen
dataclasses holding tuples, so equal traces compare equal and can be hashed.

Attributes keep the oneof branch they were written in (:class:`AttrKind`): ASTRA-sim's
legacy feeder reads each well-known attribute from exactly one branch (``comm_size`` from
``int64_val``), so the branch is part of the meaning, not a detail of the encoding.

The enum and field numbers below are those of the schema; see
``docs/reference/chakra-astra-msccl.md`` section 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum

__all__ = [
    "AttrKind",
    "Attribute",
    "CommType",
    "ExecutionTrace",
    "GlobalMetadata",
    "IOInfo",
    "Node",
    "NodeType",
]


class NodeType(IntEnum):
    """``enum NodeType`` of ``et_def.proto``."""

    INVALID_NODE = 0
    METADATA_NODE = 1
    MEM_LOAD_NODE = 2
    MEM_STORE_NODE = 3
    COMP_NODE = 4
    COMM_SEND_NODE = 5
    COMM_RECV_NODE = 6
    COMM_COLL_NODE = 7


class CommType(IntEnum):
    """``enum CollectiveCommType`` of ``et_def.proto`` (the ``comm_type`` attribute)."""

    ALL_REDUCE = 0
    REDUCE = 1
    ALL_GATHER = 2
    GATHER = 3
    SCATTER = 4
    BROADCAST = 5
    ALL_TO_ALL = 6
    REDUCE_SCATTER = 7
    REDUCE_SCATTER_BLOCK = 8
    BARRIER = 9


class AttrKind(str, Enum):
    """The branch of ``AttributeProto.value`` an attribute is stored in.

    The value is the protobuf field name; scalar branches end in ``_val``, list branches in
    ``_list`` (each list message has one field, ``repeated <type> values = 1``).
    """

    DOUBLE = "double_val"
    DOUBLE_LIST = "double_list"
    FLOAT = "float_val"
    FLOAT_LIST = "float_list"
    INT32 = "int32_val"
    INT32_LIST = "int32_list"
    INT64 = "int64_val"
    INT64_LIST = "int64_list"
    UINT32 = "uint32_val"
    UINT32_LIST = "uint32_list"
    UINT64 = "uint64_val"
    UINT64_LIST = "uint64_list"
    SINT32 = "sint32_val"
    SINT32_LIST = "sint32_list"
    SINT64 = "sint64_val"
    SINT64_LIST = "sint64_list"
    FIXED32 = "fixed32_val"
    FIXED32_LIST = "fixed32_list"
    FIXED64 = "fixed64_val"
    FIXED64_LIST = "fixed64_list"
    SFIXED32 = "sfixed32_val"
    SFIXED32_LIST = "sfixed32_list"
    SFIXED64 = "sfixed64_val"
    SFIXED64_LIST = "sfixed64_list"
    BOOL = "bool_val"
    BOOL_LIST = "bool_list"
    STRING = "string_val"
    STRING_LIST = "string_list"
    BYTES = "bytes_val"
    BYTES_LIST = "bytes_list"

    @property
    def is_list(self) -> bool:
        return self.value.endswith("_list")

    @property
    def scalar(self) -> AttrKind:
        """The scalar branch of the same element type (``INT64`` for ``INT64_LIST``)."""
        return AttrKind(self.value.replace("_list", "_val"))

    @property
    def is_integer(self) -> bool:
        return self.scalar in _INTEGER_KINDS


_INTEGER_KINDS = frozenset(
    {
        AttrKind.INT32,
        AttrKind.INT64,
        AttrKind.UINT32,
        AttrKind.UINT64,
        AttrKind.SINT32,
        AttrKind.SINT64,
        AttrKind.FIXED32,
        AttrKind.FIXED64,
        AttrKind.SFIXED32,
        AttrKind.SFIXED64,
    }
)

AttrValue = int | float | bool | str | bytes | tuple[int | float | bool | str | bytes, ...] | None


@dataclass(frozen=True)
class Attribute:
    """One ``AttributeProto``: a name, the oneof branch (``kind``) and its value.

    ``kind`` is ``None`` (and ``value`` ``None``) for an attribute written with no value.
    List values are tuples.
    """

    name: str
    kind: AttrKind | None
    value: AttrValue
    doc_string: str = ""

    @classmethod
    def of(cls, name: str, kind: AttrKind, value: AttrValue) -> Attribute:
        """Build an attribute, turning a list value into a tuple."""
        if kind.is_list and value is not None:
            value = tuple(value)  # type: ignore[arg-type]
        return cls(name, kind, value)


@dataclass(frozen=True)
class IOInfo:
    """``IOInfo``: tensor values, shapes and types, as strings (the PyTorch converter stores
    Python-repr text in them)."""

    values: str = ""
    shapes: str = ""
    types: str = ""


@dataclass(frozen=True)
class Node:
    """One ``Node`` record.

    ``type`` is a :class:`NodeType`, or the raw integer when the file holds a value the
    schema does not define (kept so that such a file still round-trips; the checks in
    :mod:`deepflow.interop.chakra.checks` report it). ``inputs``/``outputs`` are ``None``
    when absent, which is distinct from present-but-empty on the wire.
    """

    id: int
    name: str = ""
    type: NodeType | int = NodeType.INVALID_NODE
    ctrl_deps: tuple[int, ...] = ()
    data_deps: tuple[int, ...] = ()
    start_time_micros: int = 0
    duration_micros: int = 0
    inputs: IOInfo | None = None
    outputs: IOInfo | None = None
    attrs: tuple[Attribute, ...] = ()

    def attr(self, name: str) -> Attribute | None:
        """The first attribute called ``name``, or ``None``."""
        for a in self.attrs:
            if a.name == name:
                return a
        return None

    def attr_value(self, name: str, default: AttrValue = None) -> AttrValue:
        """The value of attribute ``name``, or ``default`` when absent (no type check; see
        :func:`deepflow.interop.chakra.checks.attr_int` for a checked read)."""
        a = self.attr(name)
        return default if a is None else a.value

    @property
    def type_name(self) -> str:
        return self.type.name if isinstance(self.type, NodeType) else f"unknown type {self.type}"


@dataclass(frozen=True)
class GlobalMetadata:
    """``GlobalMetadata``, the first record of every ET file."""

    version: str = ""
    attrs: tuple[Attribute, ...] = ()

    def attr(self, name: str) -> Attribute | None:
        for a in self.attrs:
            if a.name == name:
                return a
        return None


@dataclass(frozen=True)
class ExecutionTrace:
    """One rank's execution trace: its metadata and its nodes in file order.

    ``source`` names the file the trace came from (used in error messages only; it does not
    take part in equality).
    """

    metadata: GlobalMetadata
    nodes: tuple[Node, ...]
    source: str | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """How error messages name this trace."""
        return self.source or "<execution trace>"

    def node_map(self) -> dict[int, Node]:
        """Nodes by id (the last one wins if ids repeat; the checks report repeats)."""
        return {n.id: n for n in self.nodes}
