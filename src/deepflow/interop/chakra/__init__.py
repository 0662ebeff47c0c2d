"""Chakra execution traces (ET): typed objects, protobuf reader and writer, checks, and the
bridge to the simulator's task graphs (export of a lowered graph, import for its executor).

Schema: ``et_def.proto`` (mlcommons/chakra, Apache-2.0, see ``LICENSE-chakra``); the message
classes are generated from it (``et_def_pb2``, regenerate with ``scripts/gen_chakra_pb2.sh``).
"""

from deepflow.interop.chakra.checks import (
    DependencyPolicy,
    attr_bool,
    attr_bool_list,
    attr_int,
    attr_str,
    check_collectives,
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
from deepflow.interop.chakra.from_graph import graph_to_et
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
from deepflow.interop.chakra.to_graph import (
    CommModel,
    ComputeTiming,
    ImportedGraph,
    Roofline,
    et_to_graph,
)

__all__ = [
    "AttrKind",
    "Attribute",
    "CommModel",
    "CommType",
    "ComputeTiming",
    "DependencyPolicy",
    "ExecutionTrace",
    "GlobalMetadata",
    "IOInfo",
    "ImportedGraph",
    "Node",
    "NodeType",
    "Roofline",
    "attr_bool",
    "attr_bool_list",
    "attr_int",
    "attr_str",
    "check_collectives",
    "check_trace",
    "check_workload",
    "decode_et",
    "dependencies",
    "encode_et",
    "et_path",
    "et_to_graph",
    "graph_to_et",
    "read_et",
    "read_workload",
    "topological_order",
    "write_et",
    "write_workload",
]
