"""Network topologies, collective algorithms and their costs.

Two views of every collective: a vectorized closed form (:func:`collective_time`, the
algorithms' ``closed_form``) for search, and a chunk-level simulation of the same schedule
over a link-level :class:`Topology` (:func:`simulate`) for fidelity and contention.
Algorithms written elsewhere (MSCCL-IR) arrive as a :class:`StepProgram` of per-rank sends
and receives, costed the same two ways (:func:`simulate_program`, :class:`ProgramAlgorithm`).
"""

from deepflow.network.algorithms import (
    ALGORITHMS,
    CollectiveAlgorithm,
    Direct,
    DoubleBinaryTree,
    HalvingDoubling,
    Hierarchical,
    InNetwork,
    Ring,
    bandwidth_bound,
)
from deepflow.network.collectives import (
    bus_bandwidth,
    collective_time,
    level_time,
    p2p_time,
    program_time,
)
from deepflow.network.dims import DimKind, NetworkDim
from deepflow.network.hierarchy import GroupPlacement, Hierarchy, Level, place_group
from deepflow.network.ops import Algorithm, Collective
from deepflow.network.programs import (
    ProgramAlgorithm,
    ProgramStep,
    StepProgram,
    simulate_program,
)
from deepflow.network.rings import ring_bandwidth, ring_count
from deepflow.network.schedule import Round, Schedule, check_outcome, execute_symbolically
from deepflow.network.simulate import SimResult, simulate
from deepflow.network.topology import LinkGraph, Topology, link_loads, shortest_path

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Collective",
    "CollectiveAlgorithm",
    "DimKind",
    "Direct",
    "DoubleBinaryTree",
    "GroupPlacement",
    "HalvingDoubling",
    "Hierarchical",
    "Hierarchy",
    "InNetwork",
    "Level",
    "LinkGraph",
    "NetworkDim",
    "ProgramAlgorithm",
    "ProgramStep",
    "Ring",
    "Round",
    "Schedule",
    "SimResult",
    "StepProgram",
    "Topology",
    "bandwidth_bound",
    "bus_bandwidth",
    "check_outcome",
    "collective_time",
    "execute_symbolically",
    "level_time",
    "link_loads",
    "p2p_time",
    "place_group",
    "program_time",
    "ring_bandwidth",
    "ring_count",
    "shortest_path",
    "simulate",
    "simulate_program",
]
