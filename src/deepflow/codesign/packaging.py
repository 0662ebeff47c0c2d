"""The scale-up link a packaging technology gives a group of dies.

A generated accelerator has one aggregate scale-up bandwidth per direction
(:func:`deepflow.tech.generator.generate`). How much of it a ring collective over the
scale-up group sees depends on the packaging's ``network``
(:class:`deepflow.tech.library.Packaging`):

* ``switch`` (monolithic, MCM through an I/O die, CoWoS packages in a switched node): every
  die reaches the switch with all its lanes; the link is the system's, with the generated
  bandwidth (no derate, latency unchanged).
* ``mesh`` (wafer-scale): the ``n`` dies of the group sit on the most nearly square
  ``a x b`` mesh (:func:`mesh_shape`, :func:`deepflow.network.topologies.mesh`, X-Y routing,
  no wrap-around). DeepFlow splits a die's link bandwidth over its ``d`` mesh neighbours
  (``d = 4`` for its intra-node mesh) and divides the bandwidth of a parallelism dimension
  by the most ring flows that share one mesh edge (its link "derate", from
  ``deviceMapping.Projection``; ``crossflow-deepflow.md`` sec. 4, "Bandwidth per
  dimension" and "Mapping"). So, with ``d = 2 x`` the mesh's dimensions of size > 1,
  ``r`` = :func:`deepflow.network.topologies.ring_link_derate` of the group's rings and
  ``h`` the most hops between ring neighbours::

      bandwidth = B / (d r)        latency = h x hop latency

  The rings default to one ring over the group in rank order (a data-parallel all-reduce
  on deepflow's default mesh order); a caller can pass the rings of its own layout.

:func:`packaged_link` is the one formula; :func:`scale_up_link` applies it to a
generated accelerator and is what :func:`deepflow.codesign.point.system_for` calls, so the
analytical estimator (transformer problems) and the operator simulator (operator-graph
problems) see the same derated link.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from deepflow.network.topologies import mesh, ring_link_derate
from deepflow.specs.system import LinkSpec
from deepflow.tech.library import Packaging


@dataclass(frozen=True)
class MeshLayout:
    """A scale-up group on a mesh: its shape, mesh ports per die, ring derate and the
    most hops between ring neighbours."""

    shape: tuple[int, int]
    ports: int
    derate: int
    hops: int


def mesh_shape(n: int) -> tuple[int, int]:
    """The most nearly square ``(a, b)`` with ``a * b = n`` and ``a >= b``: 64 -> (8, 8),
    32 -> (8, 4), 2 -> (2, 1), 7 -> (7, 1)."""
    if n < 1:
        raise ValueError(f"a mesh needs at least one die, got {n}")
    b = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return n // b, b


def mesh_layout(n: int, rings: Sequence[Sequence[int]] | None = None) -> MeshLayout:
    """Ports, derate and hops of ``rings`` (default: one ring of ``0 .. n-1``) on the mesh
    of ``n`` dies (module docstring)."""
    shape = mesh_shape(n)
    rings = [list(range(n))] if rings is None else [list(r) for r in rings]
    graph = mesh(shape, 1.0)
    ports = 2 * sum(1 for s in shape if s > 1)
    hops = 0
    for ring in rings:
        if len(ring) > 1:
            for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
                hops = max(hops, len(graph.route(a, b)))
    return MeshLayout(shape, ports, ring_link_derate(graph, rings), hops)


def packaged_link(
    link: LinkSpec, bandwidth: float, ports: int, derate: int, hops: int, hop_latency: float
) -> LinkSpec:
    """``link`` with bandwidth ``bandwidth / (ports x derate)`` and latency ``hops x
    hop_latency`` (module docstring). ``ports`` or ``derate`` of 0 (a group of one die)
    leaves the bandwidth undivided."""
    if ports < 0 or derate < 0 or hops < 0:
        raise ValueError(f"ports, derate and hops must be >= 0, got {ports}, {derate}, {hops}")
    share = max(ports, 1) * max(derate, 1)
    return link.model_copy(update={"bandwidth": bandwidth / share, "latency": hops * hop_latency})


def scale_up_link(
    packaging: Packaging,
    link: LinkSpec,
    bandwidth: float,
    group: int,
    hop_latency: float,
    rings: Sequence[Sequence[int]] | None = None,
) -> LinkSpec:
    """The scale-up link of a group of ``group`` dies on ``packaging`` whose dies each have
    ``bandwidth`` bytes/s per direction of scale-up links of ``hop_latency`` per hop."""
    if packaging.network == "switch":
        return link.model_copy(update={"bandwidth": bandwidth})
    layout = mesh_layout(group, rings)
    return packaged_link(link, bandwidth, layout.ports, layout.derate, layout.hops, hop_latency)
