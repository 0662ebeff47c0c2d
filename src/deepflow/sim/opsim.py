"""Per-operator parallelization strategies and their simulated training step.

This is FlexFlow's execution simulator (Jia, Zaharia, Aiken, SysML 2019, arXiv
1807.05358, sec. 5) on deepflow's cost models and task-graph executor.

**Strategy.** An :class:`OpConfig` gives one operator a degree for each of its output
dimensions (sample, attribute, parameter; 1 on dimensions it does not split) and a device
placement: the ``prod(degrees)`` equal partitions, enumerated row-major over the dimensions
(the last dimension, usually the parameter one, fastest), run on the contiguous device block
``start .. start + parts - 1`` (FlexFlow's 2021 runtime, ``Op::get_random_parallel_config``).
A :data:`Strategy` is one config per operator (paper sec. 4: ``S = {c_i}``).

**Kernel groups.** A config may also split each partition's GEMM over a kernel group of
``g`` devices (DeepFlow's CR / RC kernel parallelism, :mod:`deepflow.sim.kernelpar`):
partition ``v`` then runs on devices ``start + v g .. start + v g + g - 1`` and its tasks
on the first of them (:meth:`OpConfig.device`), priced as the group's GEMMs plus the
group's collectives (DeepFlow's ``GEMM_time + reduction_time``).

**Lowering** (paper sec. 5.1). For a training step:

* *forward*: one compute task per partition, in topological order, priced by the
  calibrated kernel model on the partition's own GEMM shape (:class:`RooflineCost`);
* for each tensor edge and each producer/consumer partition pair whose sub-tensors
  overlap: a dependency when both live on one device, otherwise a point-to-point transfer
  of the overlap (volume = the product, over the producer's dimensions, of the overlap of
  the two index intervals; a consumer needs its own slice of the dimensions the edge
  aligns and all of the others), priced by :func:`deepflow.network.p2p_time` on the
  intra-node or the inter-node level. A convolution or pooling reads its aligned spatial
  dimensions through its sliding window (:class:`~deepflow.workload.opgraph.Window`), so
  a spatially split consumer also receives the halo rows its neighbours produce (halo
  exchange); a consumer split on output channels needs every input channel, so it
  gathers the other partitions' channels (and sends its partial input gradient back to
  each of them in the backward pass);
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

The snapshots hold the ends of every stream of every device, so a resumed simulation sees
the same stream state whatever the configs' kernel groups and placements; a proposal that
changes only an op's kernel split or its start is a changed config like any other (tested
on kernel-parallel walks too).

**Memory.** :meth:`OpSimulator.memory_per_device` counts each device's weight shards with
their gradients and optimizer state and the outputs kept for the backward pass; with
``check_memory`` a strategy that does not fit takes infinite time
(:meth:`OpSimulator.step_time`, with the reason in :class:`StepResult`) and a search sees
a soft penalty (:meth:`OpSimulator.search_cost`, as FlexFlow's 2021 runtime).

Not modelled: the optimizer update, transient buffers of collectives, the summation of
partial input gradients of a channel split (its transfers are modelled), the memory of
halo buffers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from deepflow.errors import ConfigError
from deepflow.estimate.evaluate import OPTIMIZER_STATE_BYTES
from deepflow.graph.ir import GraphBuilder, Task, TaskGraph, TaskKind
from deepflow.hardware.calibrate.profiles import OperatorProfiles
from deepflow.hardware.kernels import shipped_table
from deepflow.hardware.roofline import memory_time, split_k_gemm_time
from deepflow.network import Collective, GroupPlacement, Hierarchy, collective_time, p2p_time
from deepflow.sim.kernelpar import KernelKind, KernelSplit, kernel_problem, kernel_times
from deepflow.specs.accelerator import AcceleratorSpec, Precision
from deepflow.specs.kernels import read_calibration
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
    "gemm_curve_source",
    "with_calibration",
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


def gemm_curve_source(accelerator: AcceleratorSpec, precision: Precision) -> str:
    """Which layer of :func:`deepflow.hardware.kernels.kernel_params` gives
    ``accelerator``'s GEMM curve at ``precision``: ``calibration FILE`` (a calibration file
    attached with :func:`with_calibration` or a scenario's ``system.accelerator.
    calibration``), ``table NAME`` (the shipped table fitted to published
    microbenchmarks), else ``efficiency block`` (one matmul fraction from the spec)."""
    cal = accelerator.calibration
    if cal is not None and precision.value in cal.fitted.gemm:
        return f"calibration {cal.file}"
    if accelerator.kernel_table and precision.value in shipped_table(accelerator.kernel_table).gemm:
        return f"table {accelerator.kernel_table}"
    return "efficiency block"


def with_calibration(system: SystemSpec, path: str) -> SystemSpec:
    """``system`` with the fitted kernel curves of a calibration file (``deepflow
    calibrate``, schema ``deepflow.calibration/1``) attached to its accelerator, as a
    scenario's ``system.accelerator.calibration: FILE`` does: the file's device must match
    the accelerator's ``device_names`` and the file must carry a ``fitted`` block
    (:func:`deepflow.specs.kernels.read_calibration`; a :class:`ConfigError` naming the file
    and the field otherwise)."""
    acc = system.accelerator
    cal = read_calibration(Path(path), acc.device_names, acc.name)
    return system.model_copy(update={"accelerator": acc.model_copy(update={"calibration": cal})})


class OpCostModel(Protocol):
    """Time of one partition of an op on one device (seconds).

    ``degrees`` is the op's partition grid; all partitions are equal (FlexFlow's balanced
    partitions), so one number serves every partition. Implementations must be pure: the
    simulator may cache their answers by ``(op.cost_key, degrees)``.
    """

    def forward_time(self, op: Op, degrees: tuple[int, ...]) -> float: ...

    def backward_time(self, op: Op, degrees: tuple[int, ...]) -> float: ...


class RooflineCost:
    """Partition cost from the calibrated kernel model (:mod:`deepflow.hardware.roofline`,
    whose curves are :mod:`deepflow.hardware.kernels`'): a convolution is priced as its
    implicit GEMM (:class:`~deepflow.workload.opgraph.Gemm`), a fully connected layer or
    LSTM step as its GEMM, both on the GEMM curve *at the simulated precision* (tile and
    wave quantization, K-depth fill, latency, memory roof), and the memory-bound work
    (epilogues, pooling, concatenation, softmax) on the streaming-bandwidth curve. The
    curves come, per precision, from a calibration file attached to the accelerator
    (``deepflow calibrate``; :func:`with_calibration`), else the accelerator's shipped
    table fitted to published microbenchmarks (``deepflow kernels``), else its
    ``efficiency`` block (:func:`deepflow.hardware.kernels.kernel_params`);
    :attr:`curve_source` says which.

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

    @property
    def curve_source(self) -> str:
        """Where the GEMM curve at this precision comes from: ``calibration FILE``,
        ``table NAME`` or ``efficiency block``."""
        return gemm_curve_source(self.accelerator, self.precision)

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
            # the weight gradient reads both operands transposed (MN-major)
            bwd += op.steps * (self._gemm(m, g.k, n, b) + self._gemm(g.k, n, m, b, True))
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

    def _gemm(self, m: int, n: int, k: int, batch: int, mn_major: bool = False) -> float:
        return split_k_gemm_time(
            m, n, k, self.accelerator, self.peak, self.elem_bytes, batch, self.precision, mn_major
        )

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
        self._op_costs: dict[tuple[object, ...], tuple[float, float]] = {}
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
        self.check_memory = check_memory
        self._roofline: RooflineCost | None = None
        self._kernel: dict[tuple[object, ...], tuple[float, float]] = {}
        self._memory: dict[tuple[int, OpConfig], tuple[np.ndarray, np.ndarray]] = {}
        # per op: its weight key when other ops share the weight, else None
        self._shared_weight = [
            op.weight_key if op.params and len(self._weights[op.weight_key]) > 1 else None
            for op in graph.ops
        ]

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

    def memory_per_device(self, strategy: Strategy) -> np.ndarray:
        """Bytes each device holds during a step: its weight shards with their gradients and
        Adam optimizer state (``deepflow.estimate.evaluate.OPTIMIZER_STATE_BYTES``: ZeRO's
        ``2 + 2 + 12`` bytes per parameter in mixed precision, ``4 + 4 + 8`` in fp32; a
        weight shared by several ops with one config counted once), and the output of every
        partition it runs, kept for the backward pass. A kernel group shares its
        partition's weights and outputs (CR: ``1/kp1`` of the output after the
        reduce-scatter; RC: ``1/kp1`` rows after the all-gather over ``kp2``). Transient
        buffers of the collectives are not counted."""
        if len(strategy) != len(self.graph.ops):
            raise ConfigError(
                f"a strategy needs one config per op: {len(self.graph.ops)} ops, "
                f"{len(strategy)} configs",
                "strategy",
            )
        cache = self._memory
        shared = self._shared_weight
        held: set[tuple[str, OpConfig]] = set()
        rows: list[np.ndarray] = []
        for i, cfg in enumerate(strategy):
            hit = cache.get((i, cfg))
            act, both = hit if hit is not None else self._op_memory(i, cfg)
            w = shared[i]
            if w is None:
                # no weight, or one no other op shares: its shards count with its output
                rows.append(both)
            elif (w, cfg) in held:
                # ops sharing a weight with the same config hold the same shards on the same
                # devices: counted once (different configs are counted apart: an upper bound)
                rows.append(act)
            else:
                held.add((w, cfg))
                rows.append(both)
        return np.add.reduce(np.array(rows), axis=0)

    def _op_memory(self, i: int, cfg: OpConfig) -> tuple[np.ndarray, np.ndarray]:
        """Per-device bytes of op ``i``'s stored output, alone and with its weight shards
        with their gradients and optimizer state, under ``cfg`` (cached: a search revisits
        configs)."""
        op = self.graph.ops[i]
        eb = self.elem_bytes
        per_param = 2.0 * eb + OPTIMIZER_STATE_BYTES[4 if eb > 2 else 2]
        g = cfg.group
        out_share = 1 if cfg.kernel is None else cfg.kernel.kp1
        # partition v and its kernel group hold devices start + v g .. start + v g + g - 1:
        # together the block cfg.devices, one partition's share on each device
        block = slice(cfg.devices.start, cfg.devices.stop)
        act = np.zeros(self.num_devices)
        act[block] = op.out_elems * eb / (cfg.parts * out_share)
        both = act
        if op.params:
            pdeg = math.prod(
                k for d, k in zip(op.dims, cfg.degrees, strict=True) if d.kind is DimKind.PARAMETER
            )
            weights = np.zeros(self.num_devices)
            weights[block] = op.params / (pdeg * g) * per_param
            both = act + weights
        out = (act, both)
        self._memory[(i, cfg)] = out
        return out

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
        windows = {w.dim: w for w in e.windows}
        for j, d in enumerate(pop.dims):
            p_lo = pidx[:, j] / pdeg[j]
            p_hi = (pidx[:, j] + 1) / pdeg[j]
            q = cop.dim_index(d.name) if d.name in e.aligned else -1
            if q < 0:
                frac *= (p_hi - p_lo)[:, None]
                continue
            win = windows.get(d.name)
            if win is None:
                c_lo = cidx[:, q] / cdeg[q]
                c_hi = (cidx[:, q] + 1) / cdeg[q]
            else:
                # the input rows a consumer partition's output rows read, halo included
                # (Window.needs), as fractions of the producer's extent
                size, rows = d.size, cop.dims[q].size // cdeg[q]
                need = [win.needs(int(c) * rows, (int(c) + 1) * rows, size) for c in cidx[:, q]]
                c_lo = np.array([a for a, _ in need], dtype=np.float64) / size
                c_hi = np.array([b for _, b in need], dtype=np.float64) / size
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
    def _group_key(self, i: int, cfg: OpConfig) -> tuple[int, tuple[object, ...]]:
        """The kernel group size of op ``i`` under ``cfg`` and the key of its partition
        costs in :attr:`_op_costs`: the degrees, and for a kernel group also its split and
        its start within a node (which places the group's collectives on the hierarchy)."""
        kern = cfg.kernel
        if kern is None:
            return 1, (i, cfg.degrees)
        return kern.size, (i, cfg.degrees, kern, cfg.start % self.per_node)

    def _op_cost(self, i: int, cfg: OpConfig) -> tuple[float, float]:
        """Forward and backward time of one partition of op ``i`` under ``cfg`` (for a
        kernel group, the group's time: :meth:`_kernel_times`)."""
        key = self._group_key(i, cfg)[1]
        hit = self._op_costs.get(key)
        if hit is None:
            op = self.graph.ops[i]
            if cfg.kernel is not None:
                hit = self._kernel_times(op, cfg)
            else:
                degrees = cfg.degrees
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
            # a kernel group splits each shard further (kernelpar: CR k n/kp1, RC k n/kp1kp2)
            pdeg = (*pdeg, cfg.group)
            pdegs.add(pdeg)
            for v, sh in enumerate(shards):
                groups.setdefault(sh, {}).setdefault(cfg.device(v), []).append((i, v))
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

        def compute(i: int, s: int, g: int, t0s: list[float], dur: float, deps, ph: str):
            # partition v runs on device s + v g (the first of its kernel group)
            ends = [t + dur for t in t0s]
            st[s : s + len(ends) * g : g] = ends
            if totals is not None:
                totals[0] += dur * len(ends) * g
                totals[5] += len(ends)
            ids: list[int] = []
            if rec:
                name = str(ops[i].name)
                ids = [
                    builder.add(  # type: ignore[union-attr]
                        name,
                        TaskKind.COMPUTE,
                        s + v * g,
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
        group_key = self._group_key
        for i in range(k0, n):
            op = ops[i]
            cfg = strategy[i]
            s = cfg.start
            deg = cfg.degrees
            parts = parts_of.get(deg) or parts_of.setdefault(deg, cfg.parts)
            g, ckey = group_key(i, cfg)
            hi = s + parts * g
            if save and i % stride == 0:
                snapshots.append(st[:])
            t0s = st[s:hi:g]
            deps: list[list[int]] = [[] for _ in range(parts)] if rec else []
            for j, e in enumerate(op.inputs):
                pcfg = strategy[e.src]
                ps = pcfg.start
                pk = pcfg.kernel
                pg = 1 if pk is None else pk.size
                src_end = fend[e.src]
                hit = overlaps.get((i, j, pcfg.degrees, deg))
                pairs, identity = hit if hit is not None else overlap(i, j, pcfg.degrees, deg)
                if identity and ps == s and pg == g and not rec:
                    # every partition needs only the producer partition on its own device
                    t0s = [x if x > y else y for x, y in zip(src_end, t0s, strict=True)]
                    continue
                vol = out_elems[e.src] * e.fraction * eb
                src_id = fid[e.src]
                for u, v, f in pairs:
                    du, dv = ps + u * pg, s + v * g
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
            dur = op_costs.get(ckey)
            dur = (dur if dur is not None else op_cost(i, cfg))[0]
            if rec or totals is not None:
                fend[i], fid[i] = compute(i, s, g, t0s, dur, deps, "F")
            else:
                fend[i] = ends = [t + dur for t in t0s]
                st[s:hi:g] = ends

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
            g, ckey = group_key(i, cfg)
            hi = s + parts * g
            # each partition also waits for its own forward task, which ended earlier on
            # the same compute stream: st[s + v g] already covers it
            t0s = st[s:hi:g]
            deps = [[fid[i][v]] for v in range(parts)] if rec else []
            vol = out_elems[i] * eb
            for c, j in consumers[i]:
                ccfg = strategy[c]
                cs = ccfg.start
                ck = ccfg.kernel
                cg = 1 if ck is None else ck.size
                dst_end = bend[c]
                hit = overlaps.get((c, j, deg, ccfg.degrees))
                pairs, identity = hit if hit is not None else overlap(c, j, deg, ccfg.degrees)
                if identity and cs == s and cg == g and not rec:
                    t0s = [x if x > y else y for x, y in zip(dst_end, t0s, strict=True)]
                    continue
                frac = ops[c].inputs[j].fraction
                dst_id = bid[c]
                for u, v, f in pairs:
                    du, dv = s + u * g, cs + v * cg
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
            dur = op_costs.get(ckey)
            dur = (dur if dur is not None else op_cost(i, cfg))[1]
            if rec or totals is not None:
                bend[i], bid[i] = compute(i, s, g, t0s, dur, deps, "B")
            else:
                bend[i] = ends = [t + dur for t in t0s]
                st[s:hi:g] = ends
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
                        d = strategy[i].device(v)
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

        With ``check_memory`` (the default), a strategy that does not fit the devices'
        memory (:meth:`memory_problem`) takes infinite time and is not simulated.
        """
        self.evaluations += 1
        if self.check_memory and self.memory_problem(strategy) is not None:
            return math.inf
        return self._simulate(strategy)

    def search_cost(self, strategy: Strategy) -> float:
        """The step time of a strategy that fits in memory (:meth:`step_time`, with delta
        simulation); for one that does not, a soft penalty ``MEMORY_PENALTY_S x`` (largest
        device need / capacity), above any step time, so that a search can descend towards
        strategies that fit (FlexFlow's 2021 runtime also penalizes memory instead of
        forbidding it)."""
        self.evaluations += 1
        if self.check_memory:
            worst = float(self.memory_per_device(strategy).max())
            cap = float(self.system.accelerator.memory_capacity)
            if worst > cap:
                return MEMORY_PENALTY_S * worst / cap
        return self._simulate(strategy)

    def _simulate(self, strategy: Strategy) -> float:
        """The step time of ``strategy``, by delta simulation when ``delta`` is set."""
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
        """The step time with its breakdown (task seconds summed over devices, bytes), the
        largest memory a device needs and, with ``check_memory``, why the strategy does
        not fit (its step time is then infinite)."""
        check_strategy(self.graph, strategy, self.num_devices)
        totals = [0.0] * 6
        t, _ = self._lower(strategy, totals=totals)
        c, tr, s, tb, sb, tasks = totals
        mem = self.memory_per_device(strategy)
        why = self.memory_problem(strategy) if self.check_memory else None
        return StepResult(
            math.inf if why else t, c, tr, s, tb, sb, int(tasks), float(mem.max()), why
        )

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
