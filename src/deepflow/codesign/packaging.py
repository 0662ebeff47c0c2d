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

  The rings follow the strategy (:func:`strategy_rings`): a strategy whose innermost
  collective group has ``g`` consecutive ranks (``tp`` for a transformer, the kernel group
  ``kp1 x kp2`` of an operator graph, 1 for data parallelism) runs ``n / g`` rings of ``g``
  consecutive dies at once (a tp group of 8 along a row of an 8 x 8 mesh) and, for the
  gradient reduction of their replicas, ``g`` rings of stride ``g``; the link takes the
  worse of the two phases (:func:`strategy_layout`). A caller can instead pass explicit
  rings.

:func:`packaged_link` is the one formula; :func:`scale_up_link` applies it to a
generated accelerator and is what :func:`deepflow.codesign.point.system_for` calls, so the
analytical estimator (transformer problems) and the operator simulator (operator-graph
problems) see the same derated link.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

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


def strategy_rings(n: int, inner: int) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """The ring sets that the scale-up collectives of a strategy run, one set at a time, on
    a group of ``n`` dies in rank order, when its innermost collective group has ``inner``
    consecutive ranks (module docstring): the inner groups' rings (``n / inner`` rings of
    ``inner`` consecutive dies) and their replicas' rings (``inner`` rings of stride
    ``inner``). ``inner`` of 1, of ``n`` or more, or not dividing ``n``: one ring of the
    group in rank order (data parallelism, or one collective group spanning the dies).

    ``strategy_rings(8, 4) == (((0, 1, 2, 3), (4, 5, 6, 7)), ((0, 4), (1, 5), (2, 6), (3, 7)))``
    """
    if n < 1:
        raise ValueError(f"a group needs at least one die, got {n}")
    if inner <= 1 or inner >= n or n % inner:
        return ((tuple(range(n)),),)
    inner_rings = tuple(tuple(range(j * inner, (j + 1) * inner)) for j in range(n // inner))
    outer_rings = tuple(tuple(range(j, n, inner)) for j in range(inner))
    return (inner_rings, outer_rings)


@cache
def strategy_layout(n: int, inner: int) -> MeshLayout:
    """The mesh layout of :func:`strategy_rings`: the worst derate and hops of its phases
    (cached: a pure function of two integers)."""
    layouts = [mesh_layout(n, rings) for rings in strategy_rings(n, inner)]
    worst = max(layouts, key=lambda lay: (lay.derate, lay.hops))
    return MeshLayout(
        worst.shape,
        worst.ports,
        max(lay.derate for lay in layouts),
        max(lay.hops for lay in layouts),
    )


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
    inner: int = 1,
) -> LinkSpec:
    """The scale-up link of a group of ``group`` dies on ``packaging`` whose dies each have
    ``bandwidth`` bytes/s per direction of scale-up links of ``hop_latency`` per hop, for
    a strategy whose innermost collective group has ``inner`` ranks
    (:func:`strategy_layout`), or for explicit ``rings`` run at once."""
    if packaging.network == "switch":
        return link.model_copy(update={"bandwidth": bandwidth})
    layout = strategy_layout(group, inner) if rings is None else mesh_layout(group, rings)
    return packaged_link(link, bandwidth, layout.ports, layout.derate, layout.hops, hop_latency)
