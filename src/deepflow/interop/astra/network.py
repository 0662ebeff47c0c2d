"""ASTRA-sim analytical network configuration (YAML) -> :class:`NetworkConfig` in SI units.

Format (astra-network-analytical ``NetworkParser.cpp``; reference doc section 2.2): four
lists of equal length, one entry per network dimension, dimension 0 innermost::

    topology:   [ Ring, FullyConnected, Switch ]
    npus_count: [ 2, 8, 4 ]          # NPUs per dimension, each > 1
    bandwidth:  [ 200.0, 100.0, 50.0 ]  # GB/s per link per direction, GB = 2**30 bytes
    latency:    [ 50.0, 500.0, 2000.0 ] # ns per link

The analytical backend converts bandwidth with 1 GB = 2**30 bytes (``B/ns = GB/s * 2**30 /
1e9``), so ``bandwidth_Bps = GB/s * 2**30``. Comments in the upstream files sometimes
disagree with the values; only values are read. Any other key is an error.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from enum import Enum

from deepflow.errors import TraceError
from deepflow.interop.astra._files import integer, number, parse_yaml_mapping, read_text
from deepflow.network import dims as net_dims
from deepflow.network.topologies import multi_dim
from deepflow.network.topology import LinkGraph

__all__ = ["NETWORK_GB", "NetworkConfig", "NetworkDim", "Topology", "load_network", "parse_network"]

NETWORK_GB = 2**30
"""Bytes in the network YAML's GB (astra-network-analytical; reference doc section 2.2)."""


class Topology(str, Enum):
    """Basic topology of one dimension."""

    RING = "Ring"
    FULLY_CONNECTED = "FullyConnected"
    SWITCH = "Switch"

    @property
    def kind(self) -> net_dims.DimKind:
        """The network layer's name for this wiring."""
        return _KIND[self]


_KIND = {
    Topology.RING: net_dims.DimKind.RING,
    Topology.FULLY_CONNECTED: net_dims.DimKind.FULLY_CONNECTED,
    Topology.SWITCH: net_dims.DimKind.SWITCH,
}


@dataclass(frozen=True)
class NetworkDim:
    """One network dimension: its topology, size, per-link bandwidth (bytes/s, per
    direction) and per-link latency (s)."""

    topology: Topology
    npus: int
    bandwidth_Bps: float
    latency_s: float

    def hops(self, a: int, b: int) -> int:
        """Links a message crosses between positions ``a`` and ``b`` of this dimension in the
        congestion-unaware model: a ring takes the shorter direction, a fully connected
        dimension one link, a switch two (NPU -> switch -> NPU) (reference doc section 2.2);
        the network layer's :func:`deepflow.network.dims.hops`."""
        return net_dims.hops(self.topology.kind, self.npus, a, b)

    def as_network_dim(self) -> net_dims.NetworkDim:
        """This dimension in the network layer's terms (bytes/s and s, as here)."""
        return net_dims.NetworkDim(
            self.topology.kind, self.npus, self.bandwidth_Bps, self.latency_s
        )


@dataclass(frozen=True)
class NetworkConfig:
    """A multi-dimensional analytical network; NPU ids are mixed-radix, dimension 0 fastest."""

    dims: tuple[NetworkDim, ...]
    source: str = field(default="<network>", compare=False)

    @property
    def npus(self) -> int:
        """Total NPUs: the product of ``npus_count``."""
        return math.prod(d.npus for d in self.dims)

    def coordinates(self, npu: int) -> tuple[int, ...]:
        """Position of ``npu`` in each dimension (for [2, 8, 4], 47 -> (1, 7, 2))."""
        if not 0 <= npu < self.npus:
            raise ValueError(f"NPU {npu} is not in 0..{self.npus - 1}")
        return net_dims.coordinates(npu, [d.npus for d in self.dims])

    def link_graph(self) -> LinkGraph:
        """The network as a link-level topology for the network layer's chunk simulators
        (:func:`deepflow.network.simulate`, :func:`deepflow.network.simulate_program`):
        every dimension's rings, cliques and switches with dimension-ordered routing
        (:func:`deepflow.network.topologies.multi_dim`). Unlike ASTRA-sim's
        congestion-unaware backend, whose message uses only the first dimension in which
        the NPUs differ, the link graph routes through every such dimension and queues
        messages on shared links."""
        return multi_dim([d.as_network_dim() for d in self.dims])


_KEYS = ("topology", "npus_count", "bandwidth", "latency")


def parse_network(text: str, source: str = "<network>") -> NetworkConfig:
    """Parse the text of a network YAML."""
    data = parse_yaml_mapping(text, source)
    for key in data:
        if key not in _KEYS:
            raise TraceError(
                f"{source}: {key}: unknown network key (the analytical backend reads "
                f"{', '.join(_KEYS)})"
            )
    lists = {}
    for key in _KEYS:
        if key not in data:
            raise TraceError(f"{source}: {key}: missing (one entry per dimension)")
        value = data[key]
        if not isinstance(value, list) or not value:
            raise TraceError(f"{source}: {key}: expected a non-empty list, found {value!r}")
        lists[key] = value
    lengths = {key: len(v) for key, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise TraceError(
            f"{source}: topology, npus_count, bandwidth and latency must have one entry per "
            f"dimension, found lengths {lengths}"
        )
    dims = []
    for i in range(lengths["topology"]):
        raw_topo = lists["topology"][i]
        try:
            topo = Topology(raw_topo)
        except ValueError:
            allowed = ", ".join(t.value for t in Topology)
            raise TraceError(
                f"{source}: topology[{i}]: {raw_topo!r} is not one of {allowed}"
            ) from None
        npus = integer(lists["npus_count"][i], source, f"npus_count[{i}]", minimum=2)
        gbps = number(lists["bandwidth"][i], source, f"bandwidth[{i}]")
        if gbps <= 0:
            raise TraceError(f"{source}: bandwidth[{i}]: must be > 0 GB/s, found {gbps:g}")
        latency_ns = number(lists["latency"][i], source, f"latency[{i}]", minimum=0)
        dims.append(NetworkDim(topo, npus, gbps * NETWORK_GB, latency_ns * 1e-9))
    return NetworkConfig(tuple(dims), source)


def load_network(path: str | os.PathLike[str]) -> NetworkConfig:
    """Load an ASTRA-sim analytical network YAML."""
    text, source = read_text(path)
    return parse_network(text, source)
