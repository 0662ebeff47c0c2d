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
two to the same makespan, bit for bit.

Not modelled: memory capacity (FlexFlow 2021 adds a soft penalty), the optimizer update,
halo exchanges of spatially split convolutions, and delta simulation (paper sec. 5.3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deepflow.errors import ConfigError
from deepflow.estimate.evaluate import OPTIMIZER_STATE_BYTES
from deepflow.graph.ir import GraphBuilder, Task, TaskGraph, TaskKind
from deepflow.hardware.calibrate.profiles import OperatorProfiles
from deepflow.hardware.roofline import memory_time, split_k_gemm_time
from deepflow.network import Collective, GroupPlacement, Hierarchy, collective_time, p2p_time
from deepflow.sim.kernelpar import KernelKind, KernelSplit, kernel_problem, kernel_times
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


MEMORY_PENALTY_S = 1.0e6
"""Seconds per unit of memory over-subscription in :meth:`OpSimulator.search_cost`."""


@dataclass(frozen=True, slots=True)
class OpConfig:
    """The parallel config of one op: a degree per output dimension and the first device of
    its contiguous block.

    ``kernel`` splits each partition's GEMM further over a kernel group of ``kernel.size``
    devices (DeepFlow's CR / RC kernel parallelism, :mod:`deepflow.sim.kernelpar`):
    partition ``v`` then runs on devices ``start + v g .. start + v g + g - 1``; its tasks
    are placed on the first of them (the group acts as one device whose kernels include
    the group's collectives, as in DeepFlow's ``GEMM_time + reduction_time``)."""

    degrees: tuple[int, ...]
    start: int = 0
    kernel: KernelSplit | None = None

    @property
    def parts(self) -> int:
        return math.prod(self.degrees)

    @property
    def group(self) -> int:
        return 1 if self.kernel is None else self.kernel.size

    @property
    def devices(self) -> range:
        return range(self.start, self.start + self.parts * self.group)

    def device(self, part: int) -> int:
        """The device that runs partition ``part`` (the first of its kernel group)."""
        return self.start + part * self.group


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
        if cfg.kernel is not None:
            if op.gemm is None:
                raise ConfigError(f"kernel split {cfg.kernel} on an op without a GEMM", path)
            m, n, k, _ = partition_gemm(op, cfg.degrees)
            why = kernel_problem(m, n, k, cfg.kernel)
            if why is not None:
                raise ConfigError(f"kernel split {cfg.kernel}: {why}", path)
        last = cfg.start + cfg.parts * cfg.group - 1
        if cfg.start < 0 or last >= num_devices:
            raise ConfigError(f"devices {cfg.start}..{last} outside 0..{num_devices - 1}", path)


def partition_gemm(op: Op, degrees: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``(m, n, k, batch)`` of one partition's GEMM: the op's GEMM view shrunk by the degrees
    of the dimensions on each axis (:class:`RooflineCost`)."""
    g = op.gemm
    assert g is not None
    split = {GemmAxis.M: 1, GemmAxis.N: 1, GemmAxis.BATCH: 1, GemmAxis.NONE: 1}
    for d, k in zip(op.dims, degrees, strict=True):
        split[d.axis] *= k
    return (
        max(1, g.m // split[GemmAxis.M]),
        max(1, g.n // split[GemmAxis.N]),
        g.k,
        max(1, g.batch // split[GemmAxis.BATCH]),
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
            m, n, _, b = partition_gemm(op, degrees)
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
    peak_memory_bytes: float = 0.0
    infeasible: str | None = None


class _Timeline:
    """Emits tasks and computes their times on the fly (in-order streams)."""

    __slots__ = ("builder", "end", "last_sync", "stream_end", "totals")

    def __init__(self, record: bool) -> None:
        self.end: list[float] = []
        self.stream_end: dict[tuple[int, str], float] = {}
        self.builder: GraphBuilder | None = GraphBuilder() if record else None
        # compute, transfer, sync seconds; transfer and sync bytes
        self.totals = [0.0, 0.0, 0.0, 0.0, 0.0]
        self.last_sync: dict[int, int] = {}

    def add(
        self,
        rank: int,
        stream: str,
        duration: float,
        deps: list[int],
        kind: TaskKind,
        name: object,
        size: float = 0.0,
        phase: str = "",
        layer: int = -1,
    ) -> int:
        key = (rank, stream)
        t0 = self.stream_end.get(key, 0.0)
        end = self.end
        for d in deps:
            e = end[d]
            if e > t0:
                t0 = e
        t1 = t0 + duration
        self.stream_end[key] = t1
        end.append(t1)
        if self.builder is not None:
            category = {
                TaskKind.COMPUTE: "compute",
                TaskKind.SEND: "transfer",
                TaskKind.COLLECTIVE: "sync",
            }[kind]
            self.builder.add(
                str(name),
                kind,
                rank,
                stream,
                duration,
                deps,
                size_bytes=float(size),
                category=category,
                phase=phase,
                layer=layer,
            )
        return len(end) - 1


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
        check_memory: bool = True,
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
        self._overlaps: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], list] = {}
        self._p2p: dict[tuple[float, bool], float] = {}
        self._allreduce: dict[tuple[float, int, int, int], float] = {}
        self._weights: dict[str, list[int]] = {}
        for i, op in enumerate(graph.ops):
            if op.params:
                self._weights.setdefault(op.weight_key, []).append(i)
        self.evaluations = 0
        self.check_memory = check_memory
        self._roofline: RooflineCost | None = None
        self._kernel: dict[tuple[object, ...], tuple[float, float]] = {}
        self._memory: dict[tuple[int, OpConfig], tuple[np.ndarray, np.ndarray]] = {}

    # -- kernel parallelism and memory --------------------------------------------------
    def _group_time(self, op: Collective, size: float, start: int, stride: int, p: int) -> float:
        nodes: dict[int, int] = {}
        for i in range(p):
            d = start + i * stride
            nodes[d // self.per_node] = nodes.get(d // self.per_node, 0) + 1
        group = GroupPlacement(
            np.float64(p), np.float64(max(nodes.values())), np.float64(len(nodes))
        )
        return float(collective_time(op, size, group, self.hierarchy))

    def _kernel_times(self, op: Op, cfg: OpConfig) -> tuple[float, float]:
        """Forward and backward seconds of a partition run by a kernel group: ``steps``
        kernel-parallel GEMMs (:func:`deepflow.sim.kernelpar.kernel_times`; the weight
        synchronization collective of an RC split once per step, with the backward pass)
        plus the op's memory-bound traffic shared by the whole group."""
        split = cfg.kernel
        assert split is not None
        key = (op.cost_key, cfg.degrees, split, cfg.start % self.per_node)
        hit = self._kernel.get(key)
        if hit is not None:
            return hit
        m, n, k, b = partition_gemm(op, cfg.degrees)
        if self._roofline is None:
            self._roofline = (
                self.cost
                if isinstance(self.cost, RooflineCost)
                else RooflineCost(self.system.accelerator, self.precision)
            )
        rl = self._roofline
        p1_stride = 1 if split.kind is KernelKind.CR else split.kp2

        def coll(kind: Collective, size: float, p: int) -> float:
            stride = p1_stride if p == split.kp1 and split.kind is KernelKind.RC else 1
            return self._group_time(kind, size, cfg.start, stride, p)

        f, bw, sync = kernel_times(
            m, n, k, split, lambda a, c, d: rl._gemm(a, c, d, b), coll, self.elem_bytes
        )
        share = cfg.parts * split.size
        acc = self.system.accelerator
        fwd = op.steps * f + float(memory_time(op.mem_fwd * self.elem_bytes / share, acc, op.steps))
        bwd = op.steps * bw + sync
        bwd += float(memory_time(op.mem_bwd * self.elem_bytes / share, acc, op.steps))
        self._kernel[key] = (fwd, bwd)
        return fwd, bwd

    def _forward(self, op: Op, cfg: OpConfig) -> float:
        if cfg.kernel is None:
            return self.cost.forward_time(op, cfg.degrees)
        return self._kernel_times(op, cfg)[0]

    def _backward(self, op: Op, cfg: OpConfig) -> float:
        if cfg.kernel is None:
            return self.cost.backward_time(op, cfg.degrees)
        return self._kernel_times(op, cfg)[1]

    def memory_per_device(self, strategy: Strategy) -> np.ndarray:
        """Bytes each device holds during a step: its weight shards with their gradients and
        Adam optimizer state (``deepflow.estimate.evaluate.OPTIMIZER_STATE_BYTES``: ZeRO's
        ``2 + 2 + 12`` bytes per parameter in mixed precision, ``4 + 4 + 8`` in fp32; a
        weight shared by several ops with one config counted once), and the output of every
        partition it runs, kept for the backward pass. A kernel group shares its
        partition's weights and outputs (CR: ``1/kp1`` of the output after the
        reduce-scatter; RC: ``1/kp1`` rows after the all-gather over ``kp2``). Transient
        buffers of the collectives are not counted."""
        mem = np.zeros(self.num_devices)
        held: set[tuple[str, OpConfig]] = set()
        for i, (op, cfg) in enumerate(zip(self.graph.ops, strategy, strict=True)):
            act, weights = self._op_memory(i, cfg)
            mem += act
            # ops sharing a weight with the same config hold the same shards on the same
            # devices: counted once (different configs are counted apart: an upper bound)
            if op.params and (op.weight_key, cfg) not in held:
                held.add((op.weight_key, cfg))
                mem += weights
        return mem

    def _op_memory(self, i: int, cfg: OpConfig) -> tuple[np.ndarray, np.ndarray]:
        """Per-device bytes of op ``i``'s stored output and of its weight shards with their
        gradients and optimizer state, under ``cfg`` (cached: a search revisits configs)."""
        key = (i, cfg)
        hit = self._memory.get(key)
        if hit is not None:
            return hit
        op = self.graph.ops[i]
        eb = self.elem_bytes
        per_param = 2.0 * eb + OPTIMIZER_STATE_BYTES[4 if eb > 2 else 2]
        g = cfg.group
        out_share = 1 if cfg.kernel is None else cfg.kernel.kp1
        act = np.zeros(self.num_devices)
        weights = np.zeros(self.num_devices)
        pdeg = self._shards(op, cfg)[0] if op.params else ()
        w = op.params / (math.prod(pdeg) * g) * per_param if op.params else 0.0
        for v in range(cfg.parts):
            first = cfg.device(v)
            act[first : first + g] += op.out_elems * eb / (cfg.parts * out_share)
            weights[first : first + g] += w
        self._memory[key] = (act, weights)
        return act, weights

    def memory_problem(self, strategy: Strategy) -> str | None:
        """Why ``strategy`` does not fit the devices' memory, or ``None``."""
        mem = self.memory_per_device(strategy)
        cap = float(self.system.accelerator.memory_capacity)
        worst = int(np.argmax(mem))
        if mem[worst] > cap:
            return (
                f"device {worst} needs {mem[worst] / 1e9:.1f} GB (weights, gradients, optimizer "
                f"state, activations) but holds {cap / 1e9:.1f} GB"
            )
        return None

    # -- caches -------------------------------------------------------------------------
    def _overlap(
        self, consumer: int, edge: int, pdeg: tuple[int, ...], cdeg: tuple[int, ...]
    ) -> list[tuple[int, int, float]]:
        """``(producer part, consumer part, fraction of the producer tensor)`` for every
        pair of partitions whose sub-tensors overlap."""
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
        out = [(int(u), int(v), float(frac[u, v])) for u, v in zip(us, vs, strict=True)]
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
    def _transfer(
        self, tl: _Timeline, src: int, dst: int, size: float, dep: int, name: object, phase: str
    ) -> int:
        crosses = src // self.per_node != dst // self.per_node
        stream = "nic" if crosses else f"link->{dst}"
        dur = self._p2p_time(size, crosses)
        tl.totals[1] += dur
        tl.totals[3] += size
        return tl.add(src, stream, dur, [dep], TaskKind.SEND, name, size, phase)

    def _shards(self, op: Op, cfg: OpConfig) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
        """The parameter degrees of ``cfg`` and, per partition, its parameter shard index."""
        pdims = [j for j, d in enumerate(op.dims) if d.kind is DimKind.PARAMETER]
        pdeg = tuple(cfg.degrees[j] for j in pdims)
        shards = [tuple(ix[j] for j in pdims) for ix in np.ndindex(*cfg.degrees)]
        return pdeg, shards

    def _sync(
        self,
        tl: _Timeline,
        strategy: Strategy,
        weight: str,
        bwd: list[list[int]],
        after: list[int] = (),  # type: ignore[assignment]
    ) -> None:
        ops = self._weights[weight]
        first = self.graph.ops[ops[0]]
        full_bytes = first.params * self.elem_bytes
        groups: dict[tuple[int, ...], dict[int, list[int]]] = {}
        pdegs = set()
        for i in ops:
            cfg = strategy[i]
            pdeg, shards = self._shards(self.graph.ops[i], cfg)
            # a kernel group splits each shard further (kernelpar: CR k n/kp1, RC k n/kp1kp2)
            pdeg = (*pdeg, cfg.group)
            pdegs.add(pdeg)
            for v, sh in enumerate(shards):
                groups.setdefault(sh, {}).setdefault(cfg.device(v), []).append(bwd[i][v])
        if len(pdegs) == 1:
            shard_bytes = full_bytes / math.prod(next(iter(pdegs)))
        else:
            # ops sharing the weight split it differently: one group of every holder,
            # synchronizing the largest shard (a conservative simplification)
            merged: dict[int, list[int]] = {}
            for g in groups.values():
                for d, ts in g.items():
                    merged.setdefault(d, []).extend(ts)
            groups = {(): merged}
            shard_bytes = full_bytes / min(math.prod(p) for p in pdegs)
        for members in groups.values():
            if len(members) < 2:
                continue
            devices = sorted(members)
            dur = self._allreduce_time(shard_bytes, devices)
            deps = [t for d in devices for t in members[d]]
            deps.extend(after)
            tl.totals[2] += dur * len(devices)
            tl.totals[4] += shard_bytes * len(devices)
            # a collective is a barrier: every member starts it once all members are
            # ready, so each member's task also waits for the previous sync task of the others
            last = tl.last_sync
            new: list[int] = []
            for d in devices:
                prior = [last[o] for o in devices if o != d and o in last]
                tid = tl.add(
                    d,
                    "sync",
                    dur,
                    deps + prior,
                    TaskKind.COLLECTIVE,
                    f"allreduce {weight}",
                    shard_bytes,
                    "sync",
                )
                new.append(tid)
            last.update(zip(devices, new, strict=True))

    def _lower(self, strategy: Strategy, record: bool) -> _Timeline:
        graph = self.graph
        ops = graph.ops
        eb = self.elem_bytes
        tl = _Timeline(record)
        n = len(ops)
        fwd: list[list[int]] = [[] for _ in range(n)]
        for i, op in enumerate(ops):
            cfg = strategy[i]
            parts = cfg.parts
            deps: list[list[int]] = [[] for _ in range(parts)]
            for j, e in enumerate(op.inputs):
                pcfg = strategy[e.src]
                vol = ops[e.src].out_elems * e.fraction * eb
                src_tasks = fwd[e.src]
                for u, v, f in self._overlap(i, j, pcfg.degrees, cfg.degrees):
                    du, dv = pcfg.device(u), cfg.device(v)
                    if du == dv:
                        deps[v].append(src_tasks[u])
                    else:
                        deps[v].append(
                            self._transfer(tl, du, dv, f * vol, src_tasks[u], op.name, "F")
                        )
            dur = self._forward(op, cfg)
            tl.totals[0] += dur * parts * cfg.group
            fwd[i] = [
                tl.add(
                    cfg.device(v), "compute", dur, deps[v], TaskKind.COMPUTE, op.name, 0.0, "F", i
                )
                for v in range(parts)
            ]
        bwd: list[list[int]] = [[] for _ in range(n)]
        first_user = {ws[0]: w for w, ws in self._weights.items()}
        deferred: list[str] = []
        for i in range(n - 1, -1, -1):
            op = ops[i]
            cfg = strategy[i]
            parts = cfg.parts
            deps = [[fwd[i][v]] for v in range(parts)]
            vol = op.out_elems * eb
            for c, j in graph.consumers[i]:
                ccfg = strategy[c]
                e = ops[c].inputs[j]
                dst_tasks = bwd[c]
                for u, v, f in self._overlap(c, j, cfg.degrees, ccfg.degrees):
                    du, dv = cfg.device(u), ccfg.device(v)
                    if du == dv:
                        deps[u].append(dst_tasks[v])
                    else:
                        deps[u].append(
                            self._transfer(
                                tl, dv, du, f * vol * e.fraction, dst_tasks[v], op.name, "B"
                            )
                        )
            dur = self._backward(op, cfg)
            tl.totals[0] += dur * parts * cfg.group
            bwd[i] = [
                tl.add(
                    cfg.device(v), "compute", dur, deps[v], TaskKind.COMPUTE, op.name, 0.0, "B", i
                )
                for v in range(parts)
            ]
            w = first_user.get(i)
            if w is not None:
                if self.overlap_sync:
                    self._sync(tl, strategy, w, bwd)
                else:
                    deferred.append(w)
        if deferred:
            # FlexFlow's simulators add synchronization after the backward pass (sec. 5)
            ends: dict[int, int] = {}
            for i in range(n):
                for v, tid in enumerate(bwd[i]):
                    d = strategy[i].device(v)
                    ends[d] = max(ends.get(d, -1), tid)
            last = sorted(ends.values())
            for w in deferred:
                self._sync(tl, strategy, w, bwd, last)
        return tl

    # -- public -------------------------------------------------------------------------
    def step_time(self, strategy: Strategy) -> float:
        """Simulated time of one training step under ``strategy`` (seconds)."""
        self.evaluations += 1
        if self.check_memory and self.memory_problem(strategy) is not None:
            return math.inf
        end = self._lower(strategy, record=False).end
        return max(end) if end else 0.0

    def search_cost(self, strategy: Strategy) -> float:
        """The step time of a strategy that fits in memory; for one that does not, a soft
        penalty ``MEMORY_PENALTY_S x`` (largest device need / capacity), above any step
        time, so that a search can descend towards strategies that fit (FlexFlow's 2021
        runtime also penalizes memory instead of forbidding it)."""
        self.evaluations += 1
        if self.check_memory:
            mem = self.memory_per_device(strategy)
            cap = float(self.system.accelerator.memory_capacity)
            if float(mem.max()) > cap:
                return MEMORY_PENALTY_S * float(mem.max()) / cap
        end = self._lower(strategy, record=False).end
        return max(end) if end else 0.0

    def run(self, strategy: Strategy) -> StepResult:
        """The step time with its breakdown (task seconds summed over devices, bytes)."""
        check_strategy(self.graph, strategy, self.num_devices)
        tl = self._lower(strategy, record=False)
        c, t, s, tb, sb = tl.totals
        mem = self.memory_per_device(strategy)
        why = self.memory_problem(strategy) if self.check_memory else None
        step = max(tl.end) if tl.end else 0.0
        return StepResult(
            math.inf if why else step, c, t, s, tb, sb, len(tl.end), float(mem.max()), why
        )

    def task_graph(self, strategy: Strategy) -> TaskGraph:
        """The lowered step as a task graph, for :func:`deepflow.sim.executor.execute` and
        for timeline export; its makespan equals :meth:`step_time`."""
        check_strategy(self.graph, strategy, self.num_devices)
        tl = self._lower(strategy, record=True)
        assert tl.builder is not None
        return tl.builder.build({"workload": self.graph.name, "devices": self.num_devices})


def tasks_of(graph: TaskGraph, rank: int) -> list[Task]:
    """The tasks of one device, in program order (for reports and tests)."""
    return [t for t in graph.tasks if t.rank == rank]
