"""Operator graphs with FlexFlow's parallelizable dimensions (the SOAP space).

FlexFlow (Jia, Zaharia, Aiken, "Beyond Data and Model Parallelism for Deep Neural
Networks", SysML 2019, arXiv 1807.05358, sec. 3-4) describes a DNN as a graph of operators
whose edges are tensors. Each operator ``o_i`` has a set ``P_i`` of *parallelizable
dimensions*: the divisible dimensions of its **output** tensor, each of one kind (paper,
Table 2):

* **sample** - the batch; always present; splitting it is data parallelism;
* **attribute** - any other dimension that does not split the weights: image height and
  width, sequence length, the channels of a pooling layer;
* **parameter** - a dimension whose split also splits the operator's weights: the output
  channels of a convolution, the output features of a matrix multiplication.

*Operation* parallelism is not a tensor dimension; it comes from placing different
operators on different devices.

This module holds the hardware-free description of such a graph: an :class:`Op` knows its
output :class:`Dim` s, its FLOPs and memory traffic forward and backward, its parameters
(and which operators share them), and a GEMM view of its arithmetic so that a cost model
can price a *partition* of it by its shape, not only by a FLOP share. How to split, where
to place and what it costs live in :mod:`deepflow.sim.opsim`; the builders of the
evaluation DNNs live in :mod:`deepflow.workload.cnn` and :mod:`deepflow.workload.rnn`.

Counts are in elements (memory traffic, tensor sizes, parameters), FLOPs in FLOP; the
simulator multiplies by the element width of the chosen precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "Dim",
    "DimKind",
    "Edge",
    "Gemm",
    "GemmAxis",
    "Op",
    "OpGraph",
    "OpKind",
    "Window",
]


class DimKind(str, Enum):
    """The kind of a parallelizable dimension (FlexFlow, Table 2)."""

    SAMPLE = "sample"
    ATTRIBUTE = "attribute"
    PARAMETER = "parameter"


class OpKind(str, Enum):
    """Operator families of the evaluation DNNs."""

    CONV2D = "conv2d"
    POOL2D = "pool2d"
    LINEAR = "linear"
    EMBEDDING = "embedding"
    LSTM = "lstm"
    ATTENTION = "attention"
    SOFTMAX = "softmax"
    CONCAT = "concat"
    ELEMENTWISE = "elementwise"


class GemmAxis(str, Enum):
    """Which axis of the op's GEMM view a dimension scales: its rows (``M``), its columns
    (``N``), the count of independent GEMMs (``BATCH``), or none (memory traffic only)."""

    M = "m"
    N = "n"
    BATCH = "batch"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Dim:
    """One dimension of an op's output tensor.

    ``splittable`` is False for dimensions that cannot be partitioned with equal-sized,
    independent pieces in this op (the time steps inside one LSTM chunk run in sequence;
    time parallelism comes from unrolling the recurrence into chunk operators instead).
    """

    name: str
    size: int
    kind: DimKind
    axis: GemmAxis = GemmAxis.M
    splittable: bool = True

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"dimension {self.name!r} has size {self.size}")


@dataclass(frozen=True, slots=True)
class Gemm:
    """The op's arithmetic as ``batch`` GEMMs ``[m, k] x [k, n]`` per step (whole op).

    A convolution is an implicit GEMM with ``m = N H_out W_out``, ``n = C_out`` and
    ``k = C_in k_h k_w`` (Chetlur et al., "cuDNN", arXiv 1410.0759, sec. 3); a fully
    connected layer has ``m`` = samples (x positions), ``n`` = output features, ``k`` =
    input features; one LSTM time step is ``m`` = samples, ``n = 4H``, ``k = D_in + H``
    (input and recurrent weights of the four gates, Hochreiter & Schmidhuber 1997).
    """

    m: int
    n: int
    k: int
    batch: int = 1

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k * self.batch


@dataclass(frozen=True, slots=True)
class Window:
    """The sliding window of a convolution or pooling along one aligned spatial dimension:
    output index ``o`` reads input indices ``o stride - pad .. o stride - pad + kernel - 1``
    (clipped to the input), the definition of ``torch.nn.Conv2d`` / ``MaxPool2d``
    (``H_out = (H_in + 2 pad - kernel) // stride + 1``, dilation 1). A consumer partition
    that owns output rows ``[a, b)`` therefore needs input rows
    ``[a stride - pad, (b - 1) stride - pad + kernel)``: its own slice plus a *halo* of
    ``kernel - 1`` rows that neighbouring partitions produce when the producer is split on
    the same dimension (spatial parallelism of convolutions, Dryden et al., "Improving
    Strong-Scaling of CNN Training by Exploiting Finer-Grained Parallelism", IPDPS 2019,
    arXiv 1903.06681, sec. III-A: halo exchange)."""

    dim: str
    kernel: int
    stride: int = 1
    pad: int = 0

    def __post_init__(self) -> None:
        if self.kernel < 1 or self.stride < 1 or self.pad < 0:
            raise ValueError(
                f"window on {self.dim!r}: kernel {self.kernel}, stride "
                f"{self.stride}, pad {self.pad}"
            )

    def needs(self, lo: int, hi: int, size: int) -> tuple[int, int]:
        """Input rows ``[first, last + 1)`` (within ``0 .. size``) that output rows
        ``[lo, hi)`` read."""
        return (
            max(0, lo * self.stride - self.pad),
            min(size, (hi - 1) * self.stride - self.pad + self.kernel),
        )


@dataclass(frozen=True, slots=True)
class Edge:
    """A tensor flowing from op ``src`` into the op that lists the edge.

    ``fraction`` is the share of the producer's output the consumer reads (an LSTM chunk
    reads only the last step's ``(h, c)`` of the previous chunk). ``aligned`` names the
    producer dimensions that map one to one onto the consumer's dimensions of the same name:
    a consumer partition needs only its own slice of them, and the full extent of every other
    producer dimension (a matrix multiplication needs every input feature of its samples).
    ``windows`` give, for aligned spatial dimensions of a convolution or pooling, the
    sliding window through which the consumer reads them (:class:`Window`): a consumer
    partition then needs its slice plus the halo rows.
    """

    src: int
    fraction: float = 1.0
    aligned: tuple[str, ...] = ("sample",)
    windows: tuple[Window, ...] = ()


@dataclass(frozen=True, slots=True)
class Op:
    """One operator of a graph.

    ``flops_fwd`` and ``flops_bwd`` count the whole op; the backward pass of a GEMM computes
    the input gradient and the weight gradient, twice the forward FLOPs (Narayanan et al.
    2021, arXiv 2104.04473, sec. 5.1). ``mem_fwd`` / ``mem_bwd`` count the elements that the
    memory-bound part reads and writes (the whole op for pooling, softmax, concat; the fused
    bias, batch-norm and activation for a convolution; the gate arithmetic of an LSTM cell).
    ``steps`` is the number of kernels run one after another (time steps of an LSTM chunk).
    ``weight`` names the parameter tensor; operators unrolled from one layer (the chunks of
    an LSTM layer, the per-chunk embeddings) share it and synchronize it together.
    ``stage`` groups ops of one layer for expert placements (0 = the input side).
    ``branch`` names the parallel branch of a multi-branch module the op belongs to
    (``"Mixed_5b.branch5x5"``; empty for ops outside one): the ops of a branch form a chain
    from the module's input to its concatenation, independent of the other branches, so the
    search can place a whole branch on its own devices (FlexFlow's operation parallelism,
    Jia et al. 2019, sec. 3; the Inception-v3 case study, sec. 8.5).
    ``profile`` is the op's shape as the framework module that runs it sees it (the
    arguments of ``torch.nn.Conv2d`` and its input size, the rows and features of a
    ``Linear`` ...), as ``(key, value)`` pairs: the key under which a measured operator
    profile is looked up (:mod:`deepflow.workload.profiles`). It is left out of
    :attr:`cost_key`: the analytical cost does not read it.
    """

    name: str
    kind: OpKind
    dims: tuple[Dim, ...]
    inputs: tuple[Edge, ...] = ()
    flops_fwd: float = 0.0
    flops_bwd: float = 0.0
    mem_fwd: float = 0.0
    mem_bwd: float = 0.0
    params: int = 0
    gemm: Gemm | None = None
    steps: int = 1
    weight: str = ""
    stage: int = 0
    profile: tuple[tuple[str, object], ...] = ()
    branch: str = ""

    @property
    def out_elems(self) -> int:
        """Elements of the output tensor."""
        return math.prod(d.size for d in self.dims)

    @property
    def weight_key(self) -> str:
        return self.weight or self.name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(d.size for d in self.dims)

    @property
    def cost_key(self) -> tuple[object, ...]:
        """Everything a cost model may read: equal keys cost the same (the name is left
        out, so the 23 identical bottlenecks of ResNet-101's third stage are priced once)."""
        return (
            self.kind,
            tuple((d.size, d.axis, d.kind) for d in self.dims),
            self.gemm,
            self.mem_fwd,
            self.mem_bwd,
            self.flops_fwd,
            self.flops_bwd,
            self.steps,
        )

    def dim_index(self, name: str) -> int:
        for i, d in enumerate(self.dims):
            if d.name == name:
                return i
        return -1


@dataclass(frozen=True)
class OpGraph:
    """Operators in topological order (every edge points to an earlier op).

    ``source`` cites where the architecture and its shapes come from.
    """

    name: str
    ops: tuple[Op, ...]
    batch: int
    source: str = ""
    consumers: tuple[tuple[tuple[int, int], ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names: set[str] = set()
        cons: list[list[tuple[int, int]]] = [[] for _ in self.ops]
        for i, op in enumerate(self.ops):
            if op.name in names:
                raise ValueError(f"{self.name}: duplicate op name {op.name!r}")
            names.add(op.name)
            for j, e in enumerate(op.inputs):
                if not 0 <= e.src < i:
                    raise ValueError(
                        f"{self.name}: op {op.name!r} reads op {e.src}, which is not earlier"
                    )
                cons[e.src].append((i, j))
        object.__setattr__(self, "consumers", tuple(tuple(c) for c in cons))

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def parameter_count(self) -> int:
        """Parameters, counting each shared weight once."""
        seen: dict[str, int] = {}
        for op in self.ops:
            if op.params:
                seen.setdefault(op.weight_key, op.params)
        return sum(seen.values())

    @property
    def flops_fwd(self) -> float:
        return float(sum(op.flops_fwd for op in self.ops))

    @property
    def flops_step(self) -> float:
        """Forward plus backward FLOPs of one training step."""
        return float(sum(op.flops_fwd + op.flops_bwd for op in self.ops))

    @property
    def branches(self) -> tuple[tuple[int, ...], ...]:
        """The ops of each named branch (:attr:`Op.branch`), in graph order, branches in the
        order they first appear."""
        out: dict[str, list[int]] = {}
        for i, op in enumerate(self.ops):
            if op.branch:
                out.setdefault(op.branch, []).append(i)
        return tuple(tuple(v) for v in out.values())

    def op(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)


class GraphBuilder:
    """Appends ops and returns their indices; used by the model builders."""

    def __init__(self, name: str, batch: int, source: str = "") -> None:
        if batch < 1:
            raise ValueError(f"batch must be positive, got {batch}")
        self.name = name
        self.batch = batch
        self.source = source
        self.ops: list[Op] = []

    def add(self, op: Op) -> int:
        self.ops.append(op)
        return len(self.ops) - 1

    def build(self) -> OpGraph:
        return OpGraph(self.name, tuple(self.ops), self.batch, self.source)


def gemm_op(
    name: str,
    kind: OpKind,
    dims: tuple[Dim, ...],
    inputs: tuple[Edge, ...],
    gemm: Gemm,
    params: int,
    *,
    mem: float = 0.0,
    steps: int = 1,
    weight: str = "",
    stage: int = 0,
    profile: tuple[tuple[str, object], ...] = (),
    branch: str = "",
) -> Op:
    """An op whose arithmetic is ``steps`` x ``gemm``; backward is twice the forward GEMM
    FLOPs and twice the memory-bound traffic (read the output gradient and the saved value,
    write the input gradient)."""
    f = gemm.flops * steps
    return Op(
        name,
        kind,
        dims,
        inputs,
        flops_fwd=f,
        flops_bwd=2.0 * f,
        mem_fwd=mem * steps,
        mem_bwd=2.0 * mem * steps,
        params=params,
        gemm=gemm,
        steps=steps,
        weight=weight,
        stage=stage,
        profile=profile,
        branch=branch,
    )


def memory_op(
    name: str,
    kind: OpKind,
    dims: tuple[Dim, ...],
    inputs: tuple[Edge, ...],
    mem_fwd: float,
    *,
    flops: float = 0.0,
    params: int = 0,
    bwd_factor: float = 1.5,
    weight: str = "",
    stage: int = 0,
    profile: tuple[tuple[str, object], ...] = (),
    branch: str = "",
) -> Op:
    """A memory-bound op moving ``mem_fwd`` elements forward and ``bwd_factor`` times as
    many backward (read the output gradient and the saved tensor, write the input gradient:
    ``3/2`` of a read-plus-write forward pass)."""
    return Op(
        name,
        kind,
        dims,
        inputs,
        flops_fwd=flops,
        flops_bwd=flops,
        mem_fwd=mem_fwd,
        mem_bwd=bwd_factor * mem_fwd,
        params=params,
        weight=weight,
        stage=stage,
        profile=profile,
        branch=branch,
    )
