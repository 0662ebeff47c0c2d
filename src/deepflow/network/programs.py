"""Step programs: collective algorithms given as per-rank lists of sends and receives.

The built-in algorithms (:mod:`deepflow.network.algorithms`) are generated from a formula.
An algorithm written elsewhere, by MSCCLang or by hand, arrives instead as a *program*: for
each rank, an ordered list of steps, each of which may receive ``c`` chunks from one peer,
combine them with local data, and send ``c`` chunks to one peer, after some earlier steps of
the same rank (the per-threadblock programs of MSCCL-IR, Cowan et al., "MSCCLang", ASPLOS
2023, sec. 4; arXiv 2408.11008 sec. 3). The network layer costs such a program without
knowing where it came from: :mod:`deepflow.interop.msccl` builds one from an XML file.

Semantics (the ones ASTRA-sim gives the per-rank ETs of a custom collective,
docs/reference/chakra-astra-msccl.md sec. 1.4 and 4):

* a step starts when every step it depends on has finished and, if it receives, when its
  message has arrived; the ``k``-th send from ``a`` to ``b`` on channel ``ch`` pairs with
  the ``k``-th receive at ``b`` from ``a`` on ``ch`` (FIFO per connection);
* a step that sends injects its message when it starts and finishes when the message has
  arrived (ASTRA-sim calls the send handler on arrival); a step that only receives finishes
  at the arrival; local work (the reduction of ``rrc``, a copy) takes no time here, as in
  every other algorithm of this layer, which costs links only;
* a message of ``c`` chunks carries ``c * size / chunks`` bytes and follows its route over
  the topology with the link model of :mod:`deepflow.network.simulate`: cut-through
  switching, per-hop latency, each directed link a FIFO server busy ``bytes / bandwidth``;
  links serve messages in the order they are injected (all hops are reserved at injection,
  the same simplification as the round simulator's).

Two costs, as for every algorithm: :func:`simulate_program` on any :class:`Topology`, and
:class:`ProgramAlgorithm.closed_form`, a max of alpha-beta lines derived from the program.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from deepflow.errors import ConfigError
from deepflow.network.ops import Collective
from deepflow.network.simulate import SimResult
from deepflow.network.topologies import switch
from deepflow.network.topology import LinkGraph, Topology

__all__ = ["FIT_RATIOS", "ProgramAlgorithm", "ProgramStep", "StepProgram", "simulate_program"]


@dataclass(frozen=True)
class ProgramStep:
    """One step of one rank.

    ``recv_from``/``send_to`` are peer ranks (``None`` when the step does not receive or
    send); ``chunks`` is how many chunks the step moves; ``channel`` tells connections
    between the same two ranks apart; ``reduce`` marks a step that combines the received
    data with local data (informational: local work is not timed here); ``deps`` are the
    indices, in the rank's list, of the steps that must finish first (each smaller than this
    step's own index).
    """

    recv_from: int | None = None
    send_to: int | None = None
    chunks: int = 1
    channel: int = 0
    reduce: bool = False
    deps: tuple[int, ...] = ()


@dataclass(frozen=True)
class StepProgram:
    """A collective ``op`` over ``ranks`` ranks whose per-rank buffer is cut into ``chunks``
    equal chunks; ``steps[r]`` is rank ``r``'s program in a dependency-respecting order.

    Size convention: the one of :class:`~deepflow.network.ops.Collective` (the full buffer
    of one rank; the gathered output of an all-gather), so one chunk is ``size / chunks``.
    """

    name: str
    op: Collective
    ranks: int
    chunks: int
    steps: tuple[tuple[ProgramStep, ...], ...]

    def __post_init__(self) -> None:
        if len(self.steps) != self.ranks:
            raise ConfigError(
                f"program {self.name!r}: {self.ranks} ranks but {len(self.steps)} step lists",
                "steps",
            )
        if self.chunks < 1:
            raise ConfigError(f"program {self.name!r}: chunks must be >= 1", "chunks")
        for r, steps in enumerate(self.steps):
            for i, st in enumerate(steps):
                where = f"steps[{r}][{i}]"
                for peer in (st.recv_from, st.send_to):
                    if peer is not None and not (0 <= peer < self.ranks and peer != r):
                        raise ConfigError(
                            f"program {self.name!r}: peer {peer} is not another rank", where
                        )
                if any(not 0 <= d < i for d in st.deps):
                    raise ConfigError(
                        f"program {self.name!r}: dependencies {st.deps} must name earlier steps",
                        where,
                    )
                if st.chunks < 1:
                    raise ConfigError(f"program {self.name!r}: chunks must be >= 1", where)

    @cached_property
    def pairs(self) -> dict[tuple[int, int], tuple[int, int]]:
        """``(rank, send step) -> (peer, receive step)``: the ``k``-th send on a connection
        ``(src, dst, channel)`` meets the ``k``-th receive on it. Raises
        :class:`ConfigError` when the counts or chunk counts of a connection disagree."""
        sends: dict[tuple[int, int, int], list[int]] = {}
        recvs: dict[tuple[int, int, int], list[int]] = {}
        for r, steps in enumerate(self.steps):
            for i, st in enumerate(steps):
                if st.send_to is not None:
                    sends.setdefault((r, st.send_to, st.channel), []).append(i)
                if st.recv_from is not None:
                    recvs.setdefault((st.recv_from, r, st.channel), []).append(i)
        out: dict[tuple[int, int], tuple[int, int]] = {}
        for key in sorted(set(sends) | set(recvs)):
            s, d = sends.get(key, []), recvs.get(key, [])
            src, dst, ch = key
            if len(s) != len(d):
                raise ConfigError(
                    f"program {self.name!r}: rank {src} sends {len(s)} message(s) to rank "
                    f"{dst} on channel {ch}, which receives {len(d)}",
                    "steps",
                )
            for a, b in zip(s, d, strict=True):
                if self.steps[src][a].chunks != self.steps[dst][b].chunks:
                    raise ConfigError(
                        f"program {self.name!r}: rank {src} step {a} sends "
                        f"{self.steps[src][a].chunks} chunk(s), rank {dst} step {b} "
                        f"receives {self.steps[dst][b].chunks}",
                        "steps",
                    )
                out[(src, a)] = (dst, b)
        return out

    @property
    def messages(self) -> int:
        return len(self.pairs)


def _hops(
    route: Sequence[int],
    t0: float,
    nbytes: float,
    bw: np.ndarray,
    lat: np.ndarray,
    free: np.ndarray,
    busy: np.ndarray,
    carried: np.ndarray,
) -> float:
    """Cut-through transfer over ``route`` injected at ``t0``; returns the arrival of its
    tail, updating the links' FIFO state (recurrence of :mod:`deepflow.network.simulate`)."""
    head = tail = t0
    for lid in route:
        service = nbytes / bw[lid]
        start = max(head, free[lid])
        finish = max(start + service, tail)
        free[lid] = finish
        busy[lid] += service
        carried[lid] += nbytes
        head, tail = start + lat[lid], finish + lat[lid]
    return tail


def simulate_program(
    program: StepProgram,
    topology: Topology,
    size: float,
    nodes: Sequence[int] | None = None,
) -> SimResult:
    """Run ``program`` for a ``size``-byte collective on ``topology`` (rank ``r`` on node
    ``nodes[r]``, default ``topology.endpoints[r]``); see the module docstring."""
    n = program.ranks
    node_of = list(nodes) if nodes is not None else list(topology.endpoints[:n])
    if len(node_of) != n:
        raise ConfigError(
            f"program {program.name!r} needs {n} accelerators, the topology has {len(node_of)}",
            "topology",
        )
    _, _, bw, lat = topology.link_arrays()
    free, busy, carried = np.zeros(bw.size), np.zeros(bw.size), np.zeros(bw.size)
    chunk = float(size) / program.chunks
    pairs = program.pairs
    waiting = [[len(st.deps) for st in steps] for steps in program.steps]
    dep_ready = [[0.0] * len(steps) for steps in program.steps]
    arrival: list[list[float | None]] = [[None] * len(steps) for steps in program.steps]
    children: list[list[list[int]]] = [[[] for _ in steps] for steps in program.steps]
    for r, steps in enumerate(program.steps):
        for i, st in enumerate(steps):
            for d in st.deps:
                children[r][d].append(i)
    finish = np.zeros(n)
    heap: list[tuple[float, int, int]] = []

    def offer(r: int, i: int) -> None:
        st = program.steps[r][i]
        if waiting[r][i] or (st.recv_from is not None and arrival[r][i] is None):
            return
        t = max(dep_ready[r][i], arrival[r][i] or 0.0)
        heapq.heappush(heap, (t, r, i))

    for r, steps in enumerate(program.steps):
        for i in range(len(steps)):
            offer(r, i)
    done = 0
    while heap:
        t, r, i = heapq.heappop(heap)
        st = program.steps[r][i]
        end = t
        if st.send_to is not None:
            route = topology.route(node_of[r], node_of[st.send_to])
            end = _hops(route, t, st.chunks * chunk, bw, lat, free, busy, carried)
            peer, j = pairs[(r, i)]
            arrival[peer][j] = end
            finish[peer] = max(finish[peer], end)
            offer(peer, j)
        finish[r] = max(finish[r], end)
        done += 1
        for c in children[r][i]:
            waiting[r][c] -= 1
            dep_ready[r][c] = max(dep_ready[r][c], end)
            offer(r, c)
    total = sum(len(s) for s in program.steps)
    if done != total:
        stuck = next(
            (r, i)
            for r, steps in enumerate(program.steps)
            for i in range(len(steps))
            if waiting[r][i] or (steps[i].recv_from is not None and arrival[r][i] is None)
        )
        raise ConfigError(
            f"program {program.name!r}: deadlock, rank {stuck[0]} step {stuck[1]} never runs "
            f"({total - done} of {total} steps stuck)",
            "steps",
        )
    return SimResult(float(finish.max(initial=0.0)), finish, carried, busy)


#: Latency-to-transfer-time ratios ``alpha / (S / B)`` at which the closed form is fitted:
#: from bandwidth-bound (1e-4) to latency-bound (1e4), four per decade.
FIT_RATIOS = tuple(float(x) for x in np.logspace(-4.0, 4.0, 33))


class ProgramAlgorithm:
    """A :class:`StepProgram` as a collective algorithm of fixed size.

    The closed form is derived from the program. Along one dependency path of messages the
    alpha-beta cost is ``l * alpha + w * S / B`` (Hockney, Parallel Computing 20, 1994,
    eq. 1, summed along the path as in Thakur et al., IJHPCA 19, 2005, Table 1): ``l``
    messages, ``w`` buffers of bus traffic. The time is the largest such sum, a convex,
    piecewise-linear function of ``(alpha, S / B)`` (the max-plus view of a schedule,
    Baccelli et al., *Synchronization and Linearity*, 1992, sec. 7.2). Simulating the
    program on the reference topology (a non-blocking switch, ``alpha`` per message) at
    the ratios :data:`FIT_RATIOS`, each with a nearby second run for the slope, gives the
    active ``(l, w)`` at each; the closed form is their maximum,

        T(S, B, alpha) = max_j ( l_j * alpha + w_j * S / B ),

    exact at every fitted ratio and for every algorithm with one critical path (the ring:
    ``l = 2(n-1)``, ``w = 2(n-1)/n`` everywhere); between fitted ratios of a pipelined
    program it can only fall below the simulation, by at most the curvature over a quarter
    decade.
    """

    in_network = False

    def __init__(self, program: StepProgram) -> None:
        self.program = program
        self.name = program.name

    def supports(self, op: Collective, n: int) -> bool:
        return op is self.program.op and int(n) == self.program.ranks

    def reference_topology(self, n: int, bandwidth: float, latency: float) -> LinkGraph:
        return switch(n, bandwidth, latency / 2.0)

    def _reference_time(self, ratio: float) -> float:
        """Simulated time with ``S / B = 1`` and ``alpha = ratio``."""
        n = self.program.ranks
        return simulate_program(self.program, switch(n, 1.0, ratio / 2.0), 1.0).time

    @cached_property
    def coefficients(self) -> np.ndarray:
        """Rows ``(l, w)`` of the closed form, one per distinct linear piece."""
        pieces: list[tuple[float, float]] = []
        for ratio in FIT_RATIOS:
            t0, t1 = self._reference_time(ratio), self._reference_time(ratio * 1.001)
            slope = max(0.0, (t1 - t0) / (ratio * 0.001))
            piece = (slope, max(0.0, t0 - slope * ratio))
            if not any(np.allclose(piece, p, rtol=1e-6, atol=1e-9) for p in pieces):
                pieces.append(piece)
        return np.asarray(pieces, dtype=np.float64)

    def closed_form(
        self,
        op: Collective,
        size: object,
        n: object,
        bandwidth: object,
        latency: object,
        chunks: object = None,
    ) -> np.ndarray:
        """``max_j (l_j * alpha + w_j * S / B)`` (vectorized); 0 where ``n`` is 1."""
        s = np.asarray(size, dtype=np.float64)
        b = np.asarray(bandwidth, dtype=np.float64)
        a = np.asarray(latency, dtype=np.float64)
        nn = np.asarray(n, dtype=np.float64)
        msgs, traffic = self.coefficients[:, 0], self.coefficients[:, 1]
        beta = s / b
        t = np.max(msgs * np.expand_dims(a, -1) + traffic * np.expand_dims(beta, -1), axis=-1)
        return np.where(nn > 1, t, 0.0)

    def simulate(self, topology: Topology, size: float) -> SimResult:
        return simulate_program(self.program, topology, size)
