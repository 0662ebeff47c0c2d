"""Chakra execution traces (ET): typed objects, protobuf reader and writer, checks.

Schema: ``et_def.proto`` (mlcommons/chakra, Apache-2.0, see ``LICENSE-chakra``); the message
classes are generated from it (``et_def_pb2``, regenerate with ``scripts/gen_chakra_pb2.sh``).
"""

from deepflow.interop.chakra.checks import (
    DependencyPolicy,
    attr_bool,
    attr_bool_list,
    attr_int,
    attr_str,
    check_trace,
    check_workload,
    dependencies,
    topological_order,
)
from deepflow.interop.chakra.codec import (
    decode_et,
    encode_et,
    et_path,
    read_et,
    read_workload,
    write_et,
    write_workload,
)
from deepflow.interop.chakra.model import (
    Attribute,
    AttrKind,
    CommType,
    ExecutionTrace,
    GlobalMetadata,
    IOInfo,
    Node,
    NodeType,
)

__all__ = [
    "AttrKind",
    "Attribute",
    "CommType",
    "DependencyPolicy",
    "ExecutionTrace",
    "GlobalMetadata",
    "IOInfo",
    "Node",
    "NodeType",
    "attr_bool",
    "attr_bool_list",
    "attr_int",
    "attr_str",
    "check_trace",
    "check_workload",
    "decode_et",
    "dependencies",
    "encode_et",
    "et_path",
    "read_et",
    "read_workload",
    "topological_order",
    "write_et",
    "write_workload",
]
