"""A two-level network hierarchy and the placement of communication groups on it.

The cluster is a set of scale-up domains (an NVLink/NVSwitch node, an NVL72 rack, a TPU
slice) of ``scale_up_size`` accelerators, joined by a scale-out network. Mesh axes are laid
out on the rank index innermost-first (``tp`` fastest-varying by default), so a
communicator of ``n`` ranks whose consecutive members are ``stride`` ranks apart has
``members_per_domain`` of them inside each scale-up domain and spans ``domains`` domains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepflow.network.dims import DimKind, NetworkDim
from deepflow.specs.identity import IdentityCache
from deepflow.specs.system import SystemSpec


@dataclass(frozen=True)
class Level:
    """One level of the hierarchy: per-accelerator bandwidth per direction, latency, and
    the fraction of that bandwidth collectives achieve (bus-bandwidth efficiency)."""

    name: str
    bandwidth: float
    latency: float
    efficiency: float = 1.0

    @property
    def effective_bandwidth(self) -> float:
        return self.bandwidth * self.efficiency


@dataclass(frozen=True)
class Hierarchy:
    """Scale-up domains of ``scale_up_size`` accelerators joined by a scale-out network."""

    scale_up_size: int
    scale_up: Level
    scale_out: Level

    @classmethod
    def from_system(cls, system: SystemSpec) -> Hierarchy:
        return cls(
            scale_up_size=system.scale_up_size,
            scale_up=Level(
                "scale-up",
                system.intra_node.bandwidth,
                system.intra_node.latency,
                system.intra_node.efficiency,
            ),
            scale_out=Level(
                "scale-out",
                system.inter_node.bandwidth,
                system.inter_node.latency,
                system.inter_node.efficiency,
            ),
        )

    @property
    def levels(self) -> tuple[Level, Level]:
        """The levels, innermost first (dimension 0 is the scale-up domain)."""
        return (self.scale_up, self.scale_out)

    def dims(self, domains: int) -> tuple[NetworkDim, NetworkDim]:
        """This hierarchy as ASTRA-sim dimensions for ``domains`` scale-up domains: two
        switches, per-accelerator bandwidth and latency per message split over the two
        links of a switch traversal."""
        return tuple(  # type: ignore[return-value]
            NetworkDim(DimKind.SWITCH, size, lv.bandwidth, lv.latency / 2.0, lv.efficiency)
            for size, lv in ((self.scale_up_size, self.scale_up), (domains, self.scale_out))
        )


@dataclass(frozen=True)
class GroupPlacement:
    """Where a communicator's ranks sit: ``size`` ranks, ``members_per_domain`` of them in
    each of ``domains`` scale-up domains (arrays broadcast, for batch evaluation)."""

    size: np.ndarray
    members_per_domain: np.ndarray
    domains: np.ndarray


def _scalars_of(g: GroupPlacement) -> GroupPlacement:
    return GroupPlacement(g.size[0], g.members_per_domain[0], g.domains[0])


_SCALAR_PLACEMENTS = IdentityCache(_scalars_of, maxsize=256)


def read_only(g: GroupPlacement) -> bool:
    """True when the arrays of placement ``g`` are read-only (fixed while it lives)."""
    return not (
        g.size.flags.writeable or g.members_per_domain.flags.writeable or g.domains.flags.writeable
    )


def one_float(a: object) -> bool:
    """True when ``a`` is a one-element float64 array (one strategy's value)."""
    return type(a) is np.ndarray and a.shape == (1,) and a.dtype == np.float64  # type: ignore[union-attr]


def one_element(g: GroupPlacement) -> bool:
    """True when every array of placement ``g`` is a one-element float64 array (one
    strategy's placement, :func:`one_float`)."""
    return one_float(g.size) and one_float(g.members_per_domain) and one_float(g.domains)


def scalar_placement(g: GroupPlacement) -> GroupPlacement:
    """A one-strategy placement (:func:`one_element`) as NumPy scalars, for the collective
    formulas' lines on one number each (:mod:`deepflow.network.xp`); kept per object where
    its arrays are read-only, as the placements kept per mesh are."""
    return _SCALAR_PLACEMENTS(g) if read_only(g) else _scalars_of(g)


def place_group(size: object, stride: object, scale_up_size: int) -> GroupPlacement:
    """Place a communicator of ``size`` ranks spaced ``stride`` ranks apart.

    Members per domain = min(size, max(1, scale_up_size // stride)); the rest of the group
    spreads over ``size / members_per_domain`` domains. (Exact when degrees are powers of
    two dividing the domain, the common case; otherwise the count is rounded up.)
    """
    n = np.asarray(size, dtype=np.float64)
    st = np.asarray(stride, dtype=np.float64)
    m = np.minimum(n, np.maximum(1.0, np.floor(scale_up_size / st)))
    k = np.ceil(n / m)
    return GroupPlacement(n, m, k)
