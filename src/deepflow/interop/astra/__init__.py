"""ASTRA-sim interoperability: configuration import (network YAML, system JSON, communicator
groups, remote memory) in SI units, and a replay of per-rank Chakra ETs with ASTRA-sim's
analytical, congestion-unaware semantics; export of a deepflow scenario as ASTRA-sim inputs."""

from deepflow.interop.astra.executor import (
    Backend,
    RankResult,
    SimulationResult,
    simulate_workload,
)
from deepflow.interop.astra.export import ExportResult, export_scenario
from deepflow.interop.astra.groups import (
    CommGroups,
    MemoryType,
    RemoteMemoryConfig,
    load_comm_groups,
    load_remote_memory,
    parse_comm_groups,
    parse_remote_memory,
)
from deepflow.interop.astra.network import (
    NETWORK_GB,
    NetworkConfig,
    NetworkDim,
    Topology,
    load_network,
    parse_network,
)
from deepflow.interop.astra.system import (
    CollectiveImpl,
    CollectiveOptimization,
    SchedulingPolicy,
    SystemConfig,
    load_system,
    parse_system,
)

__all__ = [
    "NETWORK_GB",
    "Backend",
    "CollectiveImpl",
    "CollectiveOptimization",
    "CommGroups",
    "ExportResult",
    "MemoryType",
    "NetworkConfig",
    "NetworkDim",
    "RankResult",
    "RemoteMemoryConfig",
    "SchedulingPolicy",
    "SimulationResult",
    "SystemConfig",
    "Topology",
    "export_scenario",
    "load_comm_groups",
    "load_network",
    "load_remote_memory",
    "load_system",
    "parse_comm_groups",
    "parse_network",
    "parse_remote_memory",
    "parse_system",
    "simulate_workload",
]
