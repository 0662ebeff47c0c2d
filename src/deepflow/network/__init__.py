"""Network topologies, placement of communication groups, and collective costs."""

from deepflow.network.collectives import (
    Algorithm,
    Collective,
    bus_bandwidth,
    collective_time,
    p2p_time,
)
from deepflow.network.hierarchy import GroupPlacement, Hierarchy, Level, place_group

__all__ = [
    "Algorithm",
    "Collective",
    "GroupPlacement",
    "Hierarchy",
    "Level",
    "bus_bandwidth",
    "collective_time",
    "p2p_time",
    "place_group",
]
