"""Builders of link-level topologies (see :mod:`deepflow.network.topology`).

Bandwidths are bytes/s per direction of one link; latencies seconds per link traversal.
Every builder returns a :class:`LinkGraph` whose first ``n`` nodes are the accelerators.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from deepflow.network.dims import DimKind, NetworkDim, coordinates
from deepflow.network.topology import LinkGraph, link_loads

Link = tuple[int, int, float, float]


def _duplex(a: int, b: int, bw: float, lat: float) -> list[Link]:
    return [(a, b, bw, lat), (b, a, bw, lat)]


def ring(n: int, bandwidth: float, latency: float = 0.0) -> LinkGraph:
    """``n`` accelerators in a bidirectional ring; shortest-direction routing."""
    links: list[Link] = []
    if n == 2:
        links = _duplex(0, 1, bandwidth, latency)
    elif n > 2:
        for i in range(n):
            links += _duplex(i, (i + 1) % n, bandwidth, latency)
    return LinkGraph.build(f"ring{n}", n, range(n), links)


def fully_connected(n: int, bandwidth: float, latency: float = 0.0) -> LinkGraph:
    """A clique: a dedicated link between every ordered pair."""
    links = [(a, b, bandwidth, latency) for a in range(n) for b in range(n) if a != b]
    return LinkGraph.build(f"fc{n}", n, range(n), links)


def switch(n: int, bandwidth: float, latency: float = 0.0) -> LinkGraph:
    """``n`` accelerators on one non-blocking switch (node ``n``): one port of
    ``bandwidth`` per accelerator; a message crosses two links (up, down)."""
    links: list[Link] = []
    for i in range(n):
        links += _duplex(i, n, bandwidth, latency)
    return LinkGraph.build(f"switch{n}", n + 1, range(n), links)


def switched_domain(
    n: int = 72,
    links_per_gpu: int = 18,
    link_bandwidth: float = 50e9,
    latency: float = 0.0,
    planes: int = 1,
) -> LinkGraph:
    """A large switched scale-up domain (NVL72: 72 GPUs, 18 NVLink-5 links of 50 GB/s per
    direction each, spread over 18 NVSwitch chips; NVIDIA GB200 NVL72 data sheet, 2024).

    ``planes`` switch nodes each get ``links_per_gpu / planes`` of every GPU's links; a
    message uses plane ``(src + dst) mod planes``. ``planes=1`` aggregates the chips into
    one logical switch, the usual model when NCCL stripes every message over all links.
    """
    per_plane = links_per_gpu * link_bandwidth / planes
    links: list[Link] = []
    for p in range(planes):
        for i in range(n):
            links += _duplex(i, n + p, per_plane, latency)

    def router(g: LinkGraph, a: int, b: int) -> tuple[int, ...]:
        sw = n + (a + b) % planes
        return (g.link_between(a, sw), g.link_between(sw, b))

    return LinkGraph.build(f"switched{n}x{planes}", n + planes, range(n), links, router)


def torus(shape: Sequence[int], bandwidth: float, latency: float = 0.0) -> LinkGraph:
    """A 2D/3D (any-D) torus with wrap-around links and dimension-order routing: correct
    dimension 0 first, each along the shorter direction (Dally and Towles, *Principles
    and Practices of Interconnection Networks*, 2004, sec. 14.2; deadlock-free with two
    virtual channels per ring, which a fluid link model does not need)."""
    shape = tuple(int(s) for s in shape)
    n = prod(shape)
    strides = [prod(shape[:i]) for i in range(len(shape))]
    links: list[Link] = []
    seen: set[tuple[int, int]] = set()
    for node in range(n):
        c = coordinates(node, shape)
        for d, size in enumerate(shape):
            if size == 1:
                continue
            nxt = node + (((c[d] + 1) % size) - c[d]) * strides[d]
            for a, b in ((node, nxt), (nxt, node)):
                if (a, b) not in seen:
                    seen.add((a, b))
                    links.append((a, b, bandwidth, latency))

    def router(g: LinkGraph, a: int, b: int) -> tuple[int, ...]:
        path: list[int] = []
        cur = a
        ca, cb = list(coordinates(a, shape)), coordinates(b, shape)
        for d, size in enumerate(shape):
            fwd = (cb[d] - ca[d]) % size
            step = 1 if fwd <= size - fwd else -1
            while ca[d] != cb[d]:
                nc = (ca[d] + step) % size
                nxt = cur + (nc - ca[d]) * strides[d]
                path.append(g.link_between(cur, nxt))
                cur, ca[d] = nxt, nc
        return tuple(path)

    return LinkGraph.build("torus" + "x".join(map(str, shape)), n, range(n), links, router)


def mesh(shape: Sequence[int], bandwidth: float, latency: float = 0.0) -> LinkGraph:
    """A 2D (any-D) mesh without wrap-around links and with dimension-order (X-Y) routing:
    the on-wafer network of a wafer-scale system of dies (DeepFlow/CrossFlow's wafer mesh,
    ``nanocad-lab/DeepFlow``, ``deviceMapping.py``, class ``Projection``: ring neighbours
    routed X then Y on ``wafer_dim x wafer_dim`` meshes)."""
    shape = tuple(int(s) for s in shape)
    n = prod(shape)
    strides = [prod(shape[:i]) for i in range(len(shape))]
    links: list[Link] = []
    for node in range(n):
        c = coordinates(node, shape)
        for d, size in enumerate(shape):
            if c[d] + 1 < size:
                nxt = node + strides[d]
                links += [(node, nxt, bandwidth, latency), (nxt, node, bandwidth, latency)]

    def router(g: LinkGraph, a: int, b: int) -> tuple[int, ...]:
        path: list[int] = []
        cur = a
        ca, cb = list(coordinates(a, shape)), coordinates(b, shape)
        for d in range(len(shape)):
            step = 1 if cb[d] > ca[d] else -1
            while ca[d] != cb[d]:
                nxt = cur + step * strides[d]
                path.append(g.link_between(cur, nxt))
                cur, ca[d] = nxt, ca[d] + step
        return tuple(path)

    return LinkGraph.build("mesh" + "x".join(map(str, shape)), n, range(n), links, router)


def ring_link_derate(graph: LinkGraph, rings: Sequence[Sequence[int]]) -> int:
    """The most ring flows that share one directed link when, in every ring of ``rings``
    at once, each member sends to the next (the last to the first) along the graph's
    routes: a ring collective then gets ``1 / derate`` of a link's bandwidth per step.
    DeepFlow derates its wafer links the same way (the maximum flows per x-edge and y-edge
    become the derates; ``deviceMapping.Projection``). 0 when no ring has two members."""
    src: list[int] = []
    dst: list[int] = []
    for ring in rings:
        members = list(ring)
        if len(members) > 1:
            src += members
            dst += members[1:] + members[:1]
    if not src:
        return 0
    return round(float(link_loads(graph, src, dst, 1.0).max()))


def fat_tree(
    hosts_per_leaf: int,
    leaves: int,
    spines: int,
    bandwidth: float,
    latency: float = 0.0,
    oversubscription: float = 1.0,
) -> LinkGraph:
    """A two-tier leaf-spine (folded Clos) fabric.

    Each leaf has ``hosts_per_leaf`` host links of ``bandwidth`` and one uplink to each of
    ``spines`` spines; the uplink bandwidth is ``hosts_per_leaf * bandwidth /
    (spines * oversubscription)``, so ``oversubscription = 1`` is non-blocking and ``2``
    halves the bisection (Leiserson, "Fat-trees", IEEE Trans. Computers 1985; Al-Fares et
    al., SIGCOMM 2008, sec. 2.1). Inter-leaf traffic takes spine ``(src + dst) mod spines``,
    a deterministic stand-in for ECMP hashing.
    """
    n = hosts_per_leaf * leaves
    leaf0, spine0 = n, n + leaves
    up = hosts_per_leaf * bandwidth / (spines * oversubscription)
    links: list[Link] = []
    for h in range(n):
        links += _duplex(h, leaf0 + h // hosts_per_leaf, bandwidth, latency)
    for lf in range(leaves):
        for sp in range(spines):
            links += _duplex(leaf0 + lf, spine0 + sp, up, latency)

    def router(g: LinkGraph, a: int, b: int) -> tuple[int, ...]:
        la, lb = leaf0 + a // hosts_per_leaf, leaf0 + b // hosts_per_leaf
        if la == lb:
            return (g.link_between(a, la), g.link_between(la, b))
        sp = spine0 + (a + b) % spines
        return (
            g.link_between(a, la),
            g.link_between(la, sp),
            g.link_between(sp, lb),
            g.link_between(lb, b),
        )

    name = f"fattree{leaves}x{hosts_per_leaf}/{spines}s@{oversubscription:g}"
    return LinkGraph.build(name, n + leaves + spines, range(n), links, router)


def rail_optimized(
    nodes: int,
    gpus_per_node: int,
    scale_up_bandwidth: float,
    scale_out_bandwidth: float,
    scale_up_latency: float = 0.0,
    scale_out_latency: float = 0.0,
) -> LinkGraph:
    """A rail-optimized multi-plane scale-out: GPU ``i`` of every node hangs off rail switch
    ``i`` (its own plane), and the GPUs of a node share a scale-up switch (NVIDIA DGX
    SuperPOD reference architecture, 2023, "rail-optimized" compute fabric).

    Routing: inside a node over the scale-up switch; between nodes on the same rail over
    that rail; across rails, first over NVLink to the peer GPU on the destination's rail,
    then over that rail (NCCL's PXN, "PCI x NVLink", NCCL 2.12 release notes).
    """
    n = nodes * gpus_per_node
    node_sw0, rail0 = n, n + nodes
    links: list[Link] = []
    for g in range(n):
        links += _duplex(g, node_sw0 + g // gpus_per_node, scale_up_bandwidth, scale_up_latency)
        links += _duplex(g, rail0 + g % gpus_per_node, scale_out_bandwidth, scale_out_latency)

    def router(g: LinkGraph, a: int, b: int) -> tuple[int, ...]:
        na, nb = a // gpus_per_node, b // gpus_per_node
        ra, rb = a % gpus_per_node, b % gpus_per_node
        path: list[int] = []
        if na == nb:
            sw = node_sw0 + na
            return (g.link_between(a, sw), g.link_between(sw, b))
        cur = a
        if ra != rb:  # PXN hop to the GPU of this node on the destination's rail
            peer = na * gpus_per_node + rb
            sw = node_sw0 + na
            path += [g.link_between(cur, sw), g.link_between(sw, peer)]
            cur = peer
        rail = rail0 + rb
        path += [g.link_between(cur, rail), g.link_between(rail, b)]
        return tuple(path)

    return LinkGraph.build(
        f"rail{nodes}x{gpus_per_node}", n + nodes + gpus_per_node, range(n), links, router
    )


def multi_dim(dims: Sequence[NetworkDim]) -> LinkGraph:
    """ASTRA-sim's multi-dimensional network as a link graph.

    NPU ids are mixed-radix, dimension 0 fastest; every dimension-``d`` group gets its own
    ring, clique or switch node. Routing is dimension-ordered: dimension 0 first, a ring
    along its shorter direction (ASTRA-sim analytical backend; chakra-astra-msccl.md
    sec. 2.2). Link bandwidth is ``bandwidth * efficiency`` of the dimension.
    """
    sizes = [d.size for d in dims]
    n = prod(sizes)
    strides = [prod(sizes[:i]) for i in range(len(sizes))]
    links: list[Link] = []
    switch_of: dict[tuple[int, int], int] = {}
    next_node = n
    for d, dim in enumerate(dims):
        bw, lat = dim.bandwidth * dim.efficiency, dim.latency
        if dim.size == 1:
            continue
        for base in range(n):
            c = coordinates(base, sizes)
            if c[d] != 0:
                continue
            members = [base + i * strides[d] for i in range(dim.size)]
            if dim.kind is DimKind.SWITCH:
                sw = next_node
                next_node += 1
                for m in members:
                    links += _duplex(m, sw, bw, lat)
                    switch_of[(m, d)] = sw
            elif dim.kind is DimKind.RING:
                pairs = (
                    [(0, 1)]
                    if dim.size == 2
                    else [(i, (i + 1) % dim.size) for i in range(dim.size)]
                )
                for i, j in pairs:
                    links += _duplex(members[i], members[j], bw, lat)
            else:
                links += [(a, b, bw, lat) for a in members for b in members if a != b]

    def router(g: LinkGraph, a: int, b: int) -> tuple[int, ...]:
        path: list[int] = []
        cur = a
        ca, cb = list(coordinates(a, sizes)), coordinates(b, sizes)
        for d, dim in enumerate(dims):
            if ca[d] == cb[d]:
                continue
            target = cur + (cb[d] - ca[d]) * strides[d]
            if dim.kind is DimKind.SWITCH:
                sw = switch_of[(cur, d)]
                path += [g.link_between(cur, sw), g.link_between(sw, target)]
            elif dim.kind is DimKind.FULLY_CONNECTED:
                path.append(g.link_between(cur, target))
            else:
                size = dim.size
                step = 1 if (cb[d] - ca[d]) % size <= (ca[d] - cb[d]) % size else -1
                while ca[d] != cb[d]:
                    nc = (ca[d] + step) % size
                    nxt = cur + (nc - ca[d]) * strides[d]
                    path.append(g.link_between(cur, nxt))
                    cur, ca[d] = nxt, nc
            cur, ca[d] = target, cb[d]
        return tuple(path)

    name = "multidim[" + ",".join(f"{d.kind.value}:{d.size}" for d in dims) + "]"
    return LinkGraph.build(name, next_node, range(n), links, router)


#: NVLink cables between the eight V100s of a DGX-1 (hybrid cube-mesh): pairs and how many
#: NVLink-2 links join them; each GPU uses all six of its links (NVIDIA DGX-1 with Tesla
#: V100 system architecture white paper, 2017, fig. 4; the ``nvidia-smi topo -m`` matrix
#: of a DGX-1V shows the same NV1/NV2 entries).
DGX1_NVLINKS: tuple[tuple[int, int, int], ...] = (
    (0, 1, 1), (0, 2, 1), (0, 3, 2), (0, 4, 2),
    (1, 2, 2), (1, 3, 1), (1, 5, 2),
    (2, 3, 2), (2, 6, 1),
    (3, 7, 1),
    (4, 5, 1), (4, 6, 1), (4, 7, 2),
    (5, 6, 2), (5, 7, 1),
    (6, 7, 2),
)  # fmt: skip


def hybrid_cube_mesh(link_bandwidth: float = 25e9, latency: float = 0.0) -> LinkGraph:
    """The DGX-1 (V100) NVLink hybrid cube-mesh: two fully connected quads (GPUs 0-3 and
    4-7) joined GPU ``i`` to GPU ``i + 4``, with six NVLink-2 links of 25 GB/s per direction
    per GPU (V100 SXM2 data sheet: 300 GB/s aggregate over six links), some pairs doubled
    (:data:`DGX1_NVLINKS`). A doubled pair is one link of twice the bandwidth."""
    links: list[Link] = []
    for a, b, k in DGX1_NVLINKS:
        links += _duplex(a, b, k * link_bandwidth, latency)
    return LinkGraph.build("dgx1-v100", 8, range(8), links)


def from_dims_kind(kind: DimKind, n: int, bandwidth: float, latency: float) -> LinkGraph:
    """The one-dimensional topology of ``kind`` (ring, clique or switch)."""
    if kind is DimKind.RING:
        return ring(n, bandwidth, latency)
    if kind is DimKind.FULLY_CONNECTED:
        return fully_connected(n, bandwidth, latency)
    return switch(n, bandwidth, latency)
