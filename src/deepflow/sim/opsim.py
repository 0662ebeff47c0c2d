"""Per-operator parallelization strategies and their simulated training step.

This is FlexFlow's execution simulator (Jia, Zaharia, Aiken, SysML 2019, arXiv
1807.05358, sec. 5) on deepflow's cost models and task-graph executor.

**Strategy.** An :class:`OpConfig` gives one operator a degree for each of its output
dimensions (sample, attribute, parameter; 1 on dimensions it does not split) and a device
placement: the ``prod(degrees)`` equal partitions, enumerated row-major over the dimensions
(the last dimension, usually the parameter one, fastest), run on the contiguous device block
``start .. start + parts - 1`` (FlexFlow's 2021 runtime, ``Op::get_random_parallel_config``).
A :data:`Strategy` is one config per operator (paper sec. 4: ``S = {c_i}``).

**Lowering** (paper sec. 5.1). For a training step:

* *forward*: one compute task per partition, in topological order, priced by the
  roofline on the partition's own GEMM shape (:class:`RooflineCost`);
* for each tensor edge and each producer/consumer partition pair whose sub-tensors
  overlap: a dependency when both live on one device, otherwise a point-to-point transfer
  of the overlap (volume = the product, over the producer's dimensions, of the overlap of
  the two index intervals; a consumer needs its own slice of the dimensions the edge
  aligns and all of the others), priced by :func:`deepflow.network.p2p_time` on the
  intra-node or the inter-node level;
* *backward*: the same tasks in reverse order with reversed edges (gradients flow from
  consumer partitions to producer partitions);
* *parameter synchronization*: the gradient of a weight held by several partitions (the
  replicas of one parameter shard, across every op that shares the weight) is all-reduced
  among them as soon as the last of them has finished its backward task
  (:func:`deepflow.network.collective_time`, placed on the hierarchy by the actual devices
  of the group); it overlaps the rest of the backward pass, as in data-parallel training
  with gradient buckets.

Each device has an in-order compute stream and a sync stream; an intra-node transfer
holds the link stream of its ordered device pair, an inter-node transfer the sender's
NIC stream (FlexFlow's 2021 machine model: one communication device per GPU pair and per
node link; contention comes only from FIFO order, assumptions A2 and A3 of sec. 5).
All members of an all-reduce start it together (the collective is a barrier).

**Simulation.** All streams are in-order and tasks are created in an order that respects
dependencies and stream order, so the schedule the event-driven executor
(:func:`deepflow.sim.executor.execute`) produces is determined task by task as
``start = max(end of the dependencies, end of the previous task on the stream)``; the
lowering computes exactly these times while it emits the tasks, which is what the search
calls. :meth:`OpSimulator.task_graph` emits the same tasks as a
:class:`~deepflow.graph.ir.TaskGraph` for the executor and for timelines; a test holds the
two to the same makespan, bit for bit. An all-reduce is one barrier: its members start at
the maximum over the group, computed once per group.

**Delta simulation** (paper sec. 5.3). FlexFlow's MCMC proposal changes one op's config;
the paper's simulator then replaces that op's tasks and the transfers on its edges and
re-times the tasks downstream. Here the lowering saves the ends of all streams at the
start of the forward segment of every ``delta_stride``-th op; a proposal that changes op
``i`` resumes at the last such op ``k <= i`` (every task before op ``k``'s forward tasks
keeps its time and is not re-simulated) and lowers the rest. Everything after it is re-timed: with in-order
streams a change in one task's end moves every later task of its device, so the set of
tasks whose times change is, in a data-parallel-like strategy, all of them downstream.
The step time is the full simulation's bit for bit (tested on 1,000 random proposals per
network). FlexFlow reports delta simulation 2.2-6.9x faster than its full simulation; its
full simulation rebuilds the task graph, which this lowering never builds for a search.

Not modelled: memory capacity (FlexFlow 2021 adds a soft penalty), the optimizer update,
halo exchanges of spatially split convolutions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deepflow.errors import ConfigError
from deepflow.graph.ir import GraphBuilder, Task, TaskGraph, TaskKind
from deepflow.hardware.calibrate.profiles import OperatorProfiles
from deepflow.hardware.roofline import memory_time, split_k_gemm_time
from deepflow.network import Collective, GroupPlacement, Hierarchy, collective_time, p2p_time
from deepflow.specs.accelerator import AcceleratorSpec, Precision
from deepflow.specs.system import SystemSpec
from deepflow.workload.opgraph import DimKind, GemmAxis, Op, OpGraph
from deepflow.workload.profiles import partition_profile

__all__ = [
    "MeasuredCost",
    "OpConfig",
    "OpCostModel",
    "OpSimulator",
    "RooflineCost",
    "StepResult",
    "Strategy",
    "check_strategy",
    "data_parallel",
]


@dataclass(frozen=True, slots=True)
class OpConfig:
    """The parallel config of one op: a degree per output dimension and the first device of
    its contiguous block."""

    degrees: tuple[int, ...]
    start: int = 0

    @property
    def parts(self) -> int:
        return math.prod(self.degrees)

    @property
    def devices(self) -> range:
        return range(self.start, self.start + self.parts)


Strategy = tuple[OpConfig, ...]
"""One :class:`OpConfig` per op of the graph, in the graph's order."""


def data_parallel(graph: OpGraph, num_devices: int) -> Strategy:
    """Every op split on its sample dimension over as many devices as divide the batch (all
    of them when the batch is a multiple of the device count), starting at device 0."""
    out = []
    for op in graph.ops:
        degrees = []
        for d in op.dims:
            if d.kind is DimKind.SAMPLE and d.splittable:
                k = max(k for k in range(1, num_devices + 1) if d.size % k == 0)
                degrees.append(k)
            else:
                degrees.append(1)
        out.append(OpConfig(tuple(degrees), 0))
    return tuple(out)


def check_strategy(graph: OpGraph, strategy: Sequence[OpConfig], num_devices: int) -> None:
    """Raise :class:`ConfigError` naming the op and the rule a strategy breaks."""
    if len(strategy) != len(graph.ops):
        raise ConfigError(
            f"a strategy needs one config per op: {len(graph.ops)} ops, {len(strategy)} configs",
            "strategy",
        )
    for op, cfg in zip(graph.ops, strategy, strict=True):
        path = f"strategy.{op.name}"
        if len(cfg.degrees) != len(op.dims):
            raise ConfigError(
                f"{len(cfg.degrees)} degrees for {len(op.dims)} dimensions "
                f"({', '.join(d.name for d in op.dims)})",
                path,
            )
        for d, k in zip(op.dims, cfg.degrees, strict=True):
            if k < 1 or d.size % k or (k > 1 and not d.splittable):
                why = "is not splittable" if not d.splittable else f"has size {d.size}"
                raise ConfigError(f"degree {k} on dimension {d.name!r}, which {why}", path)
        if cfg.start < 0 or cfg.start + cfg.parts > num_devices:
            raise ConfigError(
                f"devices {cfg.start}..{cfg.start + cfg.parts - 1} outside 0..{num_devices - 1}",
                path,
            )


class OpCostModel(Protocol):
    """Time of one partition of an op on one device (seconds).

    ``degrees`` is the op's partition grid; all partitions are equal (FlexFlow's balanced
    partitions), so one number serves every partition. Implementations must be pure: the
    simulator may cache their answers by ``(op.cost_key, degrees)``.
    """

    def forward_time(self, op: Op, degrees: tuple[int, ...]) -> float: ...

    def backward_time(self, op: Op, degrees: tuple[int, ...]) -> float: ...


class RooflineCost:
    """Partition cost from the roofline (:mod:`deepflow.hardware.roofline`).

    The op's GEMM view shrinks by the degrees of the dimensions on each axis (``M`` by the
    sample and spatial or time degrees, ``N`` by the parameter degree, the GEMM count by a
    sample degree on a batched GEMM), and ``steps`` such GEMMs run one after another. The
    backward pass is two GEMMs per step: the input gradient ``[m, n] x [n, k]`` and the
    weight gradient ``[k, m] x [m, n]``. Every GEMM runs at its best split-K factor
    (:func:`~deepflow.hardware.roofline.split_k_gemm_time`). Memory-bound traffic shrinks
    by the number of partitions. Answers are cached by content: ``(op.cost_key, degrees)``
    on this accelerator and precision (FlexFlow measures each distinct (op, config) once,
    sec. 5.1).
    """

    def __init__(self, accelerator: AcceleratorSpec, precision: Precision = Precision.FP32):
        self.accelerator = accelerator
        self.precision = precision
        self.peak = accelerator.peak(precision)
        if self.peak <= 0:
            raise ConfigError(f"{accelerator.name} has no {precision.value} peak", "precision")
        self.elem_bytes = float(precision.activation_bytes)
        self._cache: dict[tuple[object, ...], tuple[float, float]] = {}

    def _times(self, op: Op, degrees: tuple[int, ...]) -> tuple[float, float]:
        key = (op.cost_key, degrees)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        parts = math.prod(degrees)
        acc, eb = self.accelerator, self.elem_bytes
        fwd = bwd = 0.0
        g = op.gemm
        if g is not None:
            split = {GemmAxis.M: 1, GemmAxis.N: 1, GemmAxis.BATCH: 1, GemmAxis.NONE: 1}
            for d, k in zip(op.dims, degrees, strict=True):
                split[d.axis] *= k
            m = max(1, g.m // split[GemmAxis.M])
            n = max(1, g.n // split[GemmAxis.N])
            b = max(1, g.batch // split[GemmAxis.BATCH])
            fwd += op.steps * self._gemm(m, n, g.k, b)
            bwd += op.steps * (self._gemm(m, g.k, n, b) + self._gemm(g.k, n, m, b))
        elif op.flops_fwd > 0:
            # element-wise arithmetic without a GEMM: at the vector rate if it ever binds
            fwd += op.flops_fwd / parts / acc.peak_flops.fp32
            bwd += op.flops_bwd / parts / acc.peak_flops.fp32
        kernels = op.steps
        fwd += float(memory_time(op.mem_fwd * eb / parts, acc, kernels))
        bwd += float(memory_time(op.mem_bwd * eb / parts, acc, kernels))
        out = (fwd, bwd)
        self._cache[key] = out
        return out

    def _gemm(self, m: int, n: int, k: int, batch: int) -> float:
        return split_k_gemm_time(m, n, k, self.accelerator, self.peak, self.elem_bytes, batch)

    def forward_time(self, op: Op, degrees: tuple[int, ...]) -> float:
        return self._times(op, degrees)[0]

    def backward_time(self, op: Op, degrees: tuple[int, ...]) -> float:
        return self._times(op, degrees)[1]


class MeasuredCost:
    """Partition cost from measured operator profiles, as FlexFlow's simulator prices an
    operator: by running it on the device (Jia et al. 2019, sec. 5.1, assumption A1).

    A partition whose shape (:func:`deepflow.workload.profiles.partition_profile`) was
    measured at this precision by ``deepflow calibrate`` costs its measured forward and
    backward time; any other partition (a shape the calibration lacks, a spatial split)
    costs what ``fallback`` says. ``measured`` and ``modelled`` count the distinct
    partitions priced each way so far.
    """

    def __init__(
        self, profiles: OperatorProfiles, fallback: OpCostModel, precision: Precision
    ) -> None:
        self.profiles = profiles
        self.fallback = fallback
        self.precision = precision
        self.measured = 0
        self.modelled = 0
        self._cache: dict[tuple[object, ...], tuple[float, float]] = {}

    def _times(self, op: Op, degrees: tuple[int, ...]) -> tuple[float, float]:
        key = (op.cost_key, op.profile, degrees)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        prof = partition_profile(op, degrees)
        found = self.profiles.lookup(*prof, self.precision.value) if prof else None
        if found is not None:
            out = (found.forward_s, found.backward_s)
            self.measured += 1
        else:
            out = (
                self.fallback.forward_time(op, degrees),
                self.fallback.backward_time(op, degrees),
            )
            self.modelled += 1
        self._cache[key] = out
        return out

    def forward_time(self, op: Op, degrees: tuple[int, ...]) -> float:
        return self._times(op, degrees)[0]

    def backward_time(self, op: Op, degrees: tuple[int, ...]) -> float:
        return self._times(op, degrees)[1]


@dataclass(frozen=True)
class StepResult:
    """A simulated training step: its time and what the tasks spent it on (seconds of task
    time summed over devices, and bytes moved)."""

    step_time_s: float
    compute_s: float
    transfer_s: float
    sync_s: float
    transfer_bytes: float
    sync_bytes: float
    tasks: int


@dataclass(frozen=True, slots=True)
class _SyncGroup:
    """One all-reduce of a weight's gradient: its devices, duration, bytes per member and
    the ``(op, partition)`` backward tasks it waits for."""

    devices: tuple[int, ...]
    duration: float
    shard_bytes: float
    refs: tuple[tuple[int, int], ...]
    span: tuple[int, int] | None
    """``(first, last + 1)`` when the devices are contiguous"""
    whole_ops: tuple[int, ...]
    """ops all of whose partitions are in ``refs``"""
    part_refs: tuple[tuple[int, int], ...]
    """the other refs"""


@dataclass(frozen=True, slots=True)
class _Checkpoints:
    """What delta simulation resumes from: a simulated strategy, the stream ends at the
    start of the forward segment of every ``stride``-th op (``snapshots[i // stride]``;
    filled from ``first`` on by the run that made them) and the end of each forward task
    (``forward_ends[i][v]``)."""

    strategy: Strategy
    first: int
    snapshots: list[list[float]]
    forward_ends: list[list[float]]
    step_time: float


class OpSimulator:
    """Simulates training steps of one op graph on one system under many strategies.

    Caches (all by content, so they serve every strategy of a search): partition costs
    (in the cost model), the overlap pattern of an edge for a pair of partition grids,
    point-to-point transfer times by size and level, and all-reduce times by size and
    group placement.

    ``profiles`` (from a calibration file, :class:`OperatorProfiles`) prices every
    partition that was measured on the device by its measured time
    (:class:`MeasuredCost`), the rest by ``cost`` (default: the roofline).
    """

    def __init__(
        self,
        graph: OpGraph,
        system: SystemSpec,
        precision: Precision = Precision.FP32,
        cost: OpCostModel | None = None,
        *,
        overlap_sync: bool = True,
        profiles: OperatorProfiles | None = None,
        delta: bool = True,
        delta_keep: int = 4,
        delta_stride: int | None = None,
    ) -> None:
        self.graph = graph
        self.overlap_sync = overlap_sync
        self.system = system
        self.num_devices = system.num_accelerators
        self.per_node = system.scale_up_size
        self.hierarchy = Hierarchy.from_system(system)
        self.precision = precision
        self.elem_bytes = float(precision.activation_bytes)
        self.cost: OpCostModel = cost or RooflineCost(system.accelerator, precision)
        if profiles is not None:
            # measured operator profiles first, the cost model for what was not measured
            self.cost = MeasuredCost(profiles, self.cost, precision)
        self._overlaps: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], tuple] = {}
        self._out_elems = [op.out_elems for op in graph.ops]
        self._parts: dict[tuple[int, ...], int] = {}
        self._p2p: dict[tuple[float, bool], float] = {}
        self._allreduce: dict[tuple[float, int, int, int], float] = {}
        self._weights: dict[str, list[int]] = {}
        for i, op in enumerate(graph.ops):
            if op.params:
                self._weights.setdefault(op.weight_key, []).append(i)
        self._first_user = {ws[0]: w for w, ws in self._weights.items()}
        self._op_costs: dict[tuple[int, tuple[int, ...]], tuple[float, float]] = {}
        self._sync_plans: dict[tuple[object, ...], list[_SyncGroup]] = {}
        self.delta = delta
        self.delta_keep = max(1, delta_keep)
        # stream ends are saved every `delta_stride` ops (default: 16 snapshots a step)
        self.delta_stride = max(1, delta_stride or len(graph.ops) // 16)
        self._recent: list[_Checkpoints] = []
        self.evaluations = 0
        self.resumed = 0
        """evaluations that delta simulation resumed past the first op"""
        self.skipped_segments = 0
        """forward segments (one per op) that delta simulation did not re-simulate"""

    # -- caches -------------------------------------------------------------------------
    def _overlap(
        self, consumer: int, edge: int, pdeg: tuple[int, ...], cdeg: tuple[int, ...]
    ) -> tuple[list[tuple[int, int, float]], bool]:
        """``(producer part, consumer part, fraction of the producer tensor)`` for every
        pair of partitions whose sub-tensors overlap, and whether the pairs are exactly
        ``(v, v)`` for every partition (partition ``v`` needs only partition ``v``)."""
        key = (consumer, edge, pdeg, cdeg)
        hit = self._overlaps.get(key)
        if hit is not None:
            return hit
        cop = self.graph.ops[consumer]
        e = cop.inputs[edge]
        pop = self.graph.ops[e.src]
        pidx = np.array(list(np.ndindex(*pdeg)), dtype=np.float64).reshape(-1, len(pdeg))
        cidx = np.array(list(np.ndindex(*cdeg)), dtype=np.float64).reshape(-1, len(cdeg))
        frac = np.ones((len(pidx), len(cidx)))
        for j, d in enumerate(pop.dims):
            p_lo = pidx[:, j] / pdeg[j]
            p_hi = (pidx[:, j] + 1) / pdeg[j]
            q = cop.dim_index(d.name) if d.name in e.aligned else -1
            if q < 0:
                frac *= (p_hi - p_lo)[:, None]
                continue
            c_lo = cidx[:, q] / cdeg[q]
            c_hi = (cidx[:, q] + 1) / cdeg[q]
            ov = np.minimum(p_hi[:, None], c_hi[None, :]) - np.maximum(p_lo[:, None], c_lo[None, :])
            frac *= np.maximum(ov, 0.0)
        us, vs = np.nonzero(frac > 1e-12)
        pairs = [(int(u), int(v), float(frac[u, v])) for u, v in zip(us, vs, strict=True)]
        identity = len(pairs) == len(cidx) and all(u == v for u, v, _ in pairs)
        out = (pairs, identity)
        self._overlaps[key] = out
        return out

    def _p2p_time(self, size: float, crosses: bool) -> float:
        key = (size, crosses)
        t = self._p2p.get(key)
        if t is None:
            t = float(p2p_time(size, crosses, self.hierarchy))
            self._p2p[key] = t
        return t

    def _allreduce_time(self, size: float, devices: Sequence[int]) -> float:
        nodes: dict[int, int] = {}
        for d in devices:
            nodes[d // self.per_node] = nodes.get(d // self.per_node, 0) + 1
        n, m, k = len(devices), max(nodes.values()), len(nodes)
        key = (size, n, m, k)
        t = self._allreduce.get(key)
        if t is None:
            group = GroupPlacement(np.float64(n), np.float64(m), np.float64(k))
            t = float(collective_time(Collective.ALL_REDUCE, size, group, self.hierarchy))
            self._allreduce[key] = t
        return t

    # -- lowering -----------------------------------------------------------------------
    def _op_cost(self, i: int, degrees: tuple[int, ...]) -> tuple[float, float]:
        """Forward and backward time of one partition of op ``i`` under ``degrees``."""
        key = (i, degrees)
        hit = self._op_costs.get(key)
        if hit is None:
            op = self.graph.ops[i]
            hit = (self.cost.forward_time(op, degrees), self.cost.backward_time(op, degrees))
            self._op_costs[key] = hit
        return hit

    def _shards(self, op: Op, cfg: OpConfig) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
        """The parameter degrees of ``cfg`` and, per partition, its parameter shard index."""
        pdims = [j for j, d in enumerate(op.dims) if d.kind is DimKind.PARAMETER]
        pdeg = tuple(cfg.degrees[j] for j in pdims)
        shards = [tuple(ix[j] for j in pdims) for ix in np.ndindex(*cfg.degrees)]
        return pdeg, shards

    def _sync_plan(self, strategy: Strategy, weight: str) -> list[_SyncGroup]:
        """The all-reduce groups of ``weight`` under the configs of the ops that share it:
        per group its devices (sorted), duration, shard bytes and the ``(op, partition)``
        backward tasks it waits for (cached by those configs)."""
        ops = self._weights[weight]
        key = (weight, strategy[ops[0]]) if len(ops) == 1 else (weight, *(strategy[i] for i in ops))
        hit = self._sync_plans.get(key)
        if hit is not None:
            return hit
        first = self.graph.ops[ops[0]]
        full_bytes = first.params * self.elem_bytes
        groups: dict[tuple[int, ...], dict[int, list[tuple[int, int]]]] = {}
        pdegs = set()
        for i in ops:
            cfg = strategy[i]
            pdeg, shards = self._shards(self.graph.ops[i], cfg)
            pdegs.add(pdeg)
            for v, sh in enumerate(shards):
                groups.setdefault(sh, {}).setdefault(cfg.start + v, []).append((i, v))
        if len(pdegs) == 1:
            shard_bytes = full_bytes / math.prod(next(iter(pdegs)))
        else:
            # ops sharing the weight split it differently: one group of every holder,
            # synchronizing the largest shard (a conservative simplification)
            merged: dict[int, list[tuple[int, int]]] = {}
            for g in groups.values():
                for d, ts in g.items():
                    merged.setdefault(d, []).extend(ts)
            groups = {(): merged}
            shard_bytes = full_bytes / min(math.prod(p) for p in pdegs)
        plan = []
        for members in groups.values():
            if len(members) < 2:
                continue
            devices = sorted(members)
            dur = self._allreduce_time(shard_bytes, devices)
            refs = tuple(r for d in devices for r in members[d])
            contiguous = devices[-1] - devices[0] + 1 == len(devices)
            span = (devices[0], devices[-1] + 1) if contiguous else None
            seen: dict[int, set[int]] = {}
            for i, v in refs:
                seen.setdefault(i, set()).add(v)
            whole = tuple(i for i, vs in seen.items() if len(vs) == strategy[i].parts)
            rest = tuple(r for r in refs if r[0] not in whole)
            plan.append(_SyncGroup(tuple(devices), dur, shard_bytes, refs, span, whole, rest))
        self._sync_plans[key] = plan
        return plan

    def _lower(
        self,
        strategy: Strategy,
        builder: GraphBuilder | None = None,
        totals: list[float] | None = None,
        resume: _Checkpoints | None = None,
    ) -> tuple[float, _Checkpoints]:
        """Lower ``strategy`` and time its tasks as they are emitted; return the step time and
        the checkpoints of the forward pass (for delta simulation).

        The stream ends live in one list ``st``: the compute stream of device ``d`` at
        ``d``, its sync stream at ``D + d``, the link ``s -> d`` at ``2D + s D + d`` and
        the NIC of ``s`` at ``2D + D^2 + s``. A task on stream ``k`` with dependencies
        ending at ``e_1 .. e_m`` starts at ``max(st[k], e_1 .. e_m)`` and ends ``duration``
        later (the executor's rule for in-order streams). ``builder`` also emits the
        tasks (with their ids as dependencies), ``totals`` sums compute, transfer and sync
        seconds and transfer and sync bytes. ``resume`` restarts at the forward segment of
        op ``resume.first`` from the stream ends and forward ends saved there.
        """
        graph = self.graph
        ops = graph.ops
        n = len(ops)
        nd = self.num_devices
        pn = self.per_node
        eb = self.elem_bytes
        link0 = 2 * nd
        nic0 = 2 * nd + nd * nd
        p2p = self._p2p_time
        overlap = self._overlap
        op_cost = self._op_cost
        rec = builder is not None
        stride = self.delta_stride
        if resume is None:
            k0 = 0
            st = [0.0] * (nic0 + nd)
            fend: list[list[float]] = [[] for _ in range(n)]
            snapshots: list[list[float]] = []
        else:
            k0 = resume.first
            assert k0 % stride == 0
            st = resume.snapshots[k0 // stride][:]
            fend = [*resume.forward_ends[:k0], *([] for _ in range(n - k0))]
            snapshots = resume.snapshots[: k0 // stride]
        fid: list[list[int]] = [[] for _ in range(n)]
        bid: list[list[int]] = [[] for _ in range(n)]

        p2p_cache = self._p2p
        overlaps = self._overlaps
        save = self.delta and not rec and totals is None

        def send(src: int, dst: int, size: float, dep_end: float, dep_id: int, name: str, ph: str):
            crosses = src // pn != dst // pn
            dur = p2p_cache.get((size, crosses))
            if dur is None:
                dur = p2p(size, crosses)
            k = nic0 + src if crosses else link0 + src * nd + dst
            t = st[k]
            if dep_end > t:
                t = dep_end
            t += dur
            st[k] = t
            if totals is not None:
                totals[1] += dur
                totals[3] += size
                totals[5] += 1
            tid = -1
            if rec:
                stream = "nic" if crosses else f"link->{dst}"
                tid = builder.add(  # type: ignore[union-attr]
                    name,
                    TaskKind.SEND,
                    src,
                    stream,
                    dur,
                    [dep_id],
                    size_bytes=float(size),
                    category="transfer",
                    phase=ph,
                    layer=-1,
                )
            return t, tid

        def compute(i: int, s: int, t0s: list[float], dur: float, deps, ph: str):
            ends = [t + dur for t in t0s]
            st[s : s + len(ends)] = ends
            if totals is not None:
                totals[0] += dur * len(ends)
                totals[5] += len(ends)
            ids: list[int] = []
            if rec:
                name = str(ops[i].name)
                ids = [
                    builder.add(  # type: ignore[union-attr]
                        name,
                        TaskKind.COMPUTE,
                        s + v,
                        "compute",
                        dur,
                        deps[v],
                        size_bytes=0.0,
                        category="compute",
                        phase=ph,
                        layer=i,
                    )
                    for v in range(len(ends))
                ]
            return ends, ids

        out_elems = self._out_elems
        parts_of = self._parts
        op_costs = self._op_costs
        for i in range(k0, n):
            op = ops[i]
            cfg = strategy[i]
            s = cfg.start
            deg = cfg.degrees
            parts = parts_of.get(deg) or parts_of.setdefault(deg, cfg.parts)
            if save and i % stride == 0:
                snapshots.append(st[:])
            t0s = st[s : s + parts]
            deps: list[list[int]] = [[] for _ in range(parts)] if rec else []
            for j, e in enumerate(op.inputs):
                pcfg = strategy[e.src]
                ps = pcfg.start
                src_end = fend[e.src]
                hit = overlaps.get((i, j, pcfg.degrees, deg))
                pairs, identity = hit if hit is not None else overlap(i, j, pcfg.degrees, deg)
                if identity and ps == s and not rec:
                    # every partition needs only the producer partition on its own device
                    t0s = [x if x > y else y for x, y in zip(src_end, t0s, strict=True)]
                    continue
                vol = out_elems[e.src] * e.fraction * eb
                src_id = fid[e.src]
                for u, v, f in pairs:
                    du, dv = ps + u, s + v
                    if du == dv:
                        x = src_end[u]
                        if rec:
                            deps[v].append(src_id[u])
                    else:
                        x, tid = send(
                            du, dv, f * vol, src_end[u], src_id[u] if rec else -1, str(op.name), "F"
                        )
                        if rec:
                            deps[v].append(tid)
                    if x > t0s[v]:
                        t0s[v] = x
            dur = op_costs.get((i, deg))
            dur = (dur if dur is not None else op_cost(i, deg))[0]
            if rec or totals is not None:
                fend[i], fid[i] = compute(i, s, t0s, dur, deps, "F")
            else:
                fend[i] = ends = [t + dur for t in t0s]
                st[s : s + parts] = ends

        bend: list[list[float]] = [[] for _ in range(n)]
        consumers = graph.consumers
        deferred: list[str] = []
        last_sync: dict[int, int] = {}
        for i in range(n - 1, -1, -1):
            op = ops[i]
            cfg = strategy[i]
            s = cfg.start
            deg = cfg.degrees
            parts = parts_of[deg]
            # each partition also waits for its own forward task, which ended earlier on
            # the same compute stream: st[s + v] already covers it
            t0s = st[s : s + parts]
            deps = [[fid[i][v]] for v in range(parts)] if rec else []
            vol = out_elems[i] * eb
            for c, j in consumers[i]:
                ccfg = strategy[c]
                cs = ccfg.start
                dst_end = bend[c]
                hit = overlaps.get((c, j, deg, ccfg.degrees))
                pairs, identity = hit if hit is not None else overlap(c, j, deg, ccfg.degrees)
                if identity and cs == s and not rec:
                    t0s = [x if x > y else y for x, y in zip(dst_end, t0s, strict=True)]
                    continue
                frac = ops[c].inputs[j].fraction
                dst_id = bid[c]
                for u, v, f in pairs:
                    du, dv = s + u, cs + v
                    if du == dv:
                        x = dst_end[v]
                        if rec:
                            deps[u].append(dst_id[v])
                    else:
                        x, tid = send(
                            dv,
                            du,
                            f * vol * frac,
                            dst_end[v],
                            dst_id[v] if rec else -1,
                            str(op.name),
                            "B",
                        )
                        if rec:
                            deps[u].append(tid)
                    if x > t0s[u]:
                        t0s[u] = x
            dur = op_costs.get((i, deg))
            dur = (dur if dur is not None else op_cost(i, deg))[1]
            if rec or totals is not None:
                bend[i], bid[i] = compute(i, s, t0s, dur, deps, "B")
            else:
                bend[i] = ends = [t + dur for t in t0s]
                st[s : s + parts] = ends
            w = self._first_user.get(i)
            if w is not None:
                if self.overlap_sync:
                    self._sync(st, strategy, w, bend, bid, 0.0, [], builder, last_sync, totals)
                else:
                    deferred.append(w)
        if deferred:
            # FlexFlow's simulators add synchronization after the backward pass (sec. 5):
            # every all-reduce waits for the last backward task of every device, which is
            # the last task of its compute stream
            after = max(st[:nd])
            last_ids: list[int] = []
            if rec:
                ends: dict[int, int] = {}
                for i in range(n):
                    for v, tid in enumerate(bid[i]):
                        d = strategy[i].start + v
                        ends[d] = max(ends.get(d, -1), tid)
                last_ids = sorted(ends.values())
            for w in deferred:
                self._sync(st, strategy, w, bend, bid, after, last_ids, builder, last_sync, totals)
        t = max(st)
        return t, _Checkpoints(strategy, k0, snapshots, fend, t)

    def _sync(
        self,
        st: list[float],
        strategy: Strategy,
        weight: str,
        bend: list[list[float]],
        bid: list[list[int]],
        after: float,
        after_ids: list[int],
        builder: GraphBuilder | None,
        last_sync: dict[int, int],
        totals: list[float] | None,
    ) -> None:
        """All-reduce the gradient of ``weight`` in each group of its holders.

        A collective is a barrier: each member's task waits for the backward tasks of all
        members and for the previous sync task of every member, so all members start
        together, at ``max(sync stream ends of the group, backward ends, after)``.
        """
        sync0 = self.num_devices
        for g in self._sync_plan(strategy, weight):
            # the maximum of the same values in another order: the same number
            k = len(g.devices)
            if g.span is not None:
                lo, hi = g.span
                t0 = max(after, max(st[sync0 + lo : sync0 + hi]))
            else:
                t0 = max(after, max([st[sync0 + d] for d in g.devices]))
            for i in g.whole_ops:
                x = max(bend[i])
                if x > t0:
                    t0 = x
            for i, v in g.part_refs:
                x = bend[i][v]
                if x > t0:
                    t0 = x
            t1 = t0 + g.duration
            if g.span is not None:
                st[sync0 + lo : sync0 + hi] = [t1] * k
            else:
                for d in g.devices:
                    st[sync0 + d] = t1
            if totals is not None:
                totals[2] += g.duration * k
                totals[4] += g.shard_bytes * k
                totals[5] += k
            if builder is not None:
                deps = [bid[i][v] for i, v in g.refs]
                deps.extend(after_ids)
                new: list[int] = []
                for d in g.devices:
                    prior = [last_sync[o] for o in g.devices if o != d and o in last_sync]
                    new.append(
                        builder.add(
                            f"allreduce {weight}",
                            TaskKind.COLLECTIVE,
                            d,
                            "sync",
                            g.duration,
                            deps + prior,
                            size_bytes=float(g.shard_bytes),
                            category="sync",
                            phase="sync",
                            layer=-1,
                        )
                    )
                last_sync.update(zip(g.devices, new, strict=True))

    # -- public -------------------------------------------------------------------------
    def step_time(self, strategy: Strategy) -> float:
        """Simulated time of one training step under ``strategy`` (seconds).

        With ``delta`` (the default) this is FlexFlow's delta simulation (sec. 5.3): the
        strategy is compared with the recently simulated ones (kept by most recent use);
        from the one that agrees with it on the longest prefix of ops, the simulation
        resumes from the stream ends saved at the start of the forward segment of op
        ``k``, the last snapshot (one every ``delta_stride`` ops) at or before the first
        op whose config differs; the tasks before op ``k``'s forward tasks are not
        re-simulated. The result is bit for bit the full simulation's (the times are
        computed by the same operations on the same inputs; a property test checks 1,000
        random proposals per network).
        """
        self.evaluations += 1
        if not self.delta:
            return self._lower(strategy)[0]
        n = len(strategy)
        best: _Checkpoints | None = None
        best_k = -1
        for cp in self._recent:
            bs = cp.strategy
            k = 0
            while k < n and (strategy[k] is bs[k] or strategy[k] == bs[k]):
                k += 1
            if k == n:
                self._recent.remove(cp)
                self._recent.insert(0, cp)
                return cp.step_time
            if k > best_k:
                best, best_k = cp, k
        resume = None
        # resume at the last snapshot at or before the first changed op
        k0 = best_k - best_k % self.delta_stride
        if best is not None and k0 > 0:
            resume = _Checkpoints(best.strategy, k0, best.snapshots, best.forward_ends, 0.0)
            self.resumed += 1
            self.skipped_segments += k0
            self._recent.remove(best)
            self._recent.insert(0, best)
        t, cp = self._lower(strategy, resume=resume)
        self._recent.insert(1 if resume is not None else 0, cp)
        del self._recent[self.delta_keep :]
        return t

    def run(self, strategy: Strategy) -> StepResult:
        """The step time with its breakdown (task seconds summed over devices, bytes)."""
        check_strategy(self.graph, strategy, self.num_devices)
        totals = [0.0] * 6
        t, _ = self._lower(strategy, totals=totals)
        c, tr, s, tb, sb, tasks = totals
        return StepResult(t, c, tr, s, tb, sb, int(tasks))

    def task_graph(self, strategy: Strategy) -> TaskGraph:
        """The lowered step as a task graph, for :func:`deepflow.sim.executor.execute` and
        for timeline export; its makespan equals :meth:`step_time`."""
        check_strategy(self.graph, strategy, self.num_devices)
        builder = GraphBuilder()
        self._lower(strategy, builder=builder)
        return builder.build({"workload": self.graph.name, "devices": self.num_devices})


def tasks_of(graph: TaskGraph, rank: int) -> list[Task]:
    """The tasks of one device, in program order (for reports and tests)."""
    return [t for t in graph.tasks if t.rank == rank]
