"""Links as shared resources: the congestion-aware analytical network of ASTRA-sim.

A message (a *chunk*) travels a route of devices (NPUs and switches); every directed link is
a FIFO server. This is astra-network-analytical's congestion-aware backend
(``congestion_aware/network/Link.cpp``, ``Chunk.cpp``, ``Device.cpp`` at ``599a047``):

* a link that is free takes the chunk at once; a busy link queues it (``Link::send``,
  ``pending_chunks``, first come first served);
* a link taking a chunk of ``s`` bytes is busy for ``serialization = s / bandwidth`` and
  delivers the chunk to the next device after ``latency + s / bandwidth``
  (``Link::schedule_chunk_transmission``): store-and-forward, the whole chunk crosses each
  link before it enters the next one;
* when a link frees it takes the next queued chunk (``Link::link_become_free``);
* the chunk's callback runs when it reaches the last device of its route
  (``Chunk::chunk_arrived_next_device``).

With ``integer=True`` both delays are truncated to whole time units, as ASTRA-sim casts
them to its integer ``EventTime`` (1 ns): ``int(latency + s / bandwidth)`` and
``int(s / bandwidth)``. With ``integer=False`` they are exact floats (deepflow's simulator,
in seconds).

Routes (``congestion_aware/basic-topology/``): a ``Ring`` is bidirectional and a chunk takes
the shorter direction, clockwise on a tie (``Ring::route``); ``FullyConnected`` has one link
per ordered pair; a ``Switch`` is one extra device with a link each way to every NPU, so a
message crosses two links. ASTRA-sim builds one dimension only (``Helper.cpp``: "only
support 1-dim topology"); here a multi-dimensional network routes dimension by dimension,
lowest first, through every dimension in which the two NPUs' coordinates differ
(dimension-ordered routing, as :func:`deepflow.network.topologies.multi_dim`).

The engine is domain-free: it knows nothing of collectives. It takes a ``schedule(delay,
callback)`` function from the caller's event kernel, so it runs inside the ASTRA-sim replay
(integer ns) and inside deepflow's training-step simulator (float s) alike.

**Symmetric runs** (``symmetric=True``): every topology here is invariant under the
translations of the NPU ids (adding a vector to the mixed-radix coordinates, modulo each
dimension's size), and so is the routing (a ring's shorter direction and its tie rule
depend only on the distance). When every NPU runs the same program shifted by its own id,
the state of link ``L`` at any time is that of ``L`` shifted, so one FIFO server per
*class* of links under translation (a ring's clockwise links of dimension ``d``, all the
up-links of a switch dimension, the ``+k`` links of a fully connected one) carries, as the
representative NPU 0's chunks, exactly the chunks that meet on any one real link of that
class: a chunk of NPU ``r`` on link ``L`` is NPU 0's chunk on ``L`` shifted by ``-r``.
Only NPU 0 sends then (``send(0, dst, ...)``); the translations act freely on links, so
no two real chunks are folded onto one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deepflow.network import dims as net_dims

__all__ = ["LinkDim", "LinkNetwork"]

Schedule = Callable[[float, Callable[[], None]], None]


@dataclass(frozen=True)
class LinkDim:
    """One dimension: wiring, NPUs, per-link bandwidth (bytes per time unit) and latency."""

    kind: net_dims.DimKind
    npus: int
    bandwidth: float
    latency: float


class _Link:
    __slots__ = ("busy", "latency", "pending", "rate")

    def __init__(self, bandwidth: float, latency: float) -> None:
        self.rate = bandwidth
        self.latency = latency
        self.busy = False
        self.pending: deque[_Chunk] = deque()


class _Chunk:
    __slots__ = ("callback", "hop", "route", "size")

    def __init__(self, size: float, route: list[_Link], callback: Callable[[], None]) -> None:
        self.size = size
        self.route = route
        self.hop = 0
        self.callback = callback


class LinkNetwork:
    """The links of a (multi-dimensional) network; :meth:`send` moves one chunk.

    ``dims`` lists the dimensions, dimension 0 fastest in the NPU id (mixed radix, as ASTRA-sim
    numbers NPUs). Links are created on first use, so a 16,384-NPU network costs nothing
    until it carries traffic.
    """

    def __init__(
        self,
        dims: Sequence[LinkDim],
        schedule: Schedule,
        integer: bool = False,
        symmetric: bool = False,
    ):
        self.dims = tuple(dims)
        self.symmetric = symmetric
        self.schedule = schedule
        self.integer = integer
        self.sizes = [d.npus for d in self.dims]
        self.strides = [math.prod(self.sizes[:i]) for i in range(len(self.sizes))]
        self.npus = math.prod(self.sizes)
        self._links: dict[tuple[object, ...], _Link] = {}
        self._routes: dict[tuple[int, int], list[_Link]] = {}
        self.bytes_sent = 0.0

    # -- routing --------------------------------------------------------------------------
    def _link(self, key: tuple[object, ...], dim: LinkDim) -> _Link:
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = _Link(dim.bandwidth, dim.latency)
        return link

    def _dim_route(self, d: int, base: int, a: int, b: int) -> list[_Link]:
        """Links from position ``a`` to ``b`` of the dimension-``d`` line through NPU
        ``base`` (its position in ``d`` set to 0)."""
        dim = self.dims[d]
        if self.symmetric:
            return self._class_route(d, a, b)
        if dim.kind is net_dims.DimKind.SWITCH:
            return [
                self._link(("up", d, base, a), dim),
                self._link(("down", d, base, b), dim),
            ]
        if dim.kind is net_dims.DimKind.FULLY_CONNECTED:
            return [self._link(("fc", d, base, a, b), dim)]
        n = dim.npus
        clockwise = (b - a) % n
        step = -1 if n - clockwise < clockwise else 1
        links = []
        pos = a
        while pos != b:
            nxt = (pos + step) % n
            links.append(self._link(("ring", d, base, pos, nxt), dim))
            pos = nxt
        return links

    def _class_route(self, d: int, a: int, b: int) -> list[_Link]:
        """:meth:`_dim_route` with every link replaced by its class under translation
        (the link shifted so that its source NPU has coordinate 0)."""
        dim = self.dims[d]
        n = dim.npus
        if dim.kind is net_dims.DimKind.SWITCH:
            return [self._link(("up", d), dim), self._link(("down", d), dim)]
        if dim.kind is net_dims.DimKind.FULLY_CONNECTED:
            return [self._link(("fc", d, (b - a) % n), dim)]
        clockwise = (b - a) % n
        step = -1 if n - clockwise < clockwise else 1
        hops = n - clockwise if step < 0 else clockwise
        return [self._link(("ring", d, step % n), dim)] * hops

    def shift(self, npu: int, by: int) -> int:
        """``npu`` translated by ``-by``: each coordinate minus ``by``'s, modulo the size."""
        out = 0
        for size, stride in zip(self.sizes, self.strides, strict=True):
            out += ((npu // stride - by // stride) % size) * stride
        return out

    def route(self, src: int, dst: int) -> list[_Link]:
        """The links a chunk from ``src`` to ``dst`` crosses, in order."""
        key = (src, dst)
        cached = self._routes.get(key)
        if cached is not None:
            return cached
        links: list[_Link] = []
        cur = src
        for d, (size, stride) in enumerate(zip(self.sizes, self.strides, strict=True)):
            a = (cur // stride) % size
            b = (dst // stride) % size
            if a != b:
                base = cur - a * stride
                links += self._dim_route(d, base, a, b)
                cur = base + b * stride
        self._routes[key] = links
        return links

    def named_route(
        self, names: Sequence[object], bandwidth: float, latency: float = 0.0
    ) -> list[_Link]:
        """Links named by the caller rather than by the wiring (one per name, created on
        first use with ``bandwidth`` and ``latency``): the training-step simulator's
        per-rank NIC and NVLink ports (:mod:`deepflow.sim.contention`)."""
        dim = LinkDim(net_dims.DimKind.FULLY_CONNECTED, 1, bandwidth, latency)
        return [self._link(("named", name), dim) for name in names]

    # -- transmission ---------------------------------------------------------------------
    def send(self, src: int, dst: int, size: float, callback: Callable[[], None]) -> None:
        """Inject a chunk of ``size`` bytes at ``src`` now; ``callback()`` runs when it has
        reached ``dst``. A chunk to itself arrives at once."""
        self.send_route(self.route(src, dst), size, callback)

    def send_route(
        self, route: Sequence[_Link], size: float, callback: Callable[[], None]
    ) -> None:
        """Inject a chunk of ``size`` bytes on ``route`` (from :meth:`route` or
        :meth:`named_route`) now; ``callback()`` runs when it has crossed the last link."""
        self.bytes_sent += size
        if not route:
            self.schedule(0, callback)
            return
        self._enter(_Chunk(size, list(route), callback))

    def _enter(self, chunk: _Chunk) -> None:
        link = chunk.route[chunk.hop]
        if link.busy:
            link.pending.append(chunk)
        else:
            self._transmit(link, chunk)

    def _transmit(self, link: _Link, chunk: _Chunk) -> None:
        link.busy = True
        serialization = chunk.size / link.rate
        delay = link.latency + serialization
        if self.integer:
            serialization = int(serialization)
            delay = int(delay)
        self.schedule(delay, lambda: self._arrive(chunk))
        self.schedule(serialization, lambda: self._free(link))

    def _free(self, link: _Link) -> None:
        link.busy = False
        if link.pending:
            self._transmit(link, link.pending.popleft())

    def _arrive(self, chunk: _Chunk) -> None:
        chunk.hop += 1
        if chunk.hop == len(chunk.route):
            chunk.callback()
        else:
            self._enter(chunk)
