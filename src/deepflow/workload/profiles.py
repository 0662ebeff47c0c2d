"""Operator profile shapes: the key under which a measured operator time is looked up.

FlexFlow's execution simulator does not model an operator's kernel; it *measures* it: "the
first time an operator with a given configuration is encountered, the simulator runs the
operator a few times on the device and caches the average" (Jia, Zaharia, Aiken, SysML
2019, arXiv 1807.05358, sec. 5.1, assumption A1: the time of an operator depends on its
input and output sizes, not on the data). ``deepflow calibrate`` does the same ahead of
time: it runs every distinct operator of the built-in per-operator workloads (and the
equal partitions that split their batch) with the matching PyTorch module, and records the
forward and forward+backward times under ``kind: operator`` with the op's profile
(:attr:`deepflow.workload.opgraph.Op.profile`) as ``shape``.

This module holds the one definition of that key on both sides:

* :func:`partition_profile` gives the shape of one partition of an op under a partition
  grid (the simulator's lookup);
* :func:`builtin_operator_shapes` enumerates the distinct shapes of the built-in workloads
  (the runner's work list).

A partition's shape follows from the op's by dividing the extent that each split
dimension maps to (sample -> batch or rows, output channels or features, time steps ...).
A split that changes the operator's arithmetic in a way the profile cannot express (a
spatial split of a convolution or a pooling, which needs halo rows; a split of the channel
list of a concatenation) has no profile: the simulator prices it analytically.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence

from deepflow.workload.opgraph import Op, OpGraph, OpKind

__all__ = [
    "BUILTIN_WORKLOADS",
    "builtin_operator_shapes",
    "partition_profile",
]

# profile key that a split of each output dimension divides, per op kind; ``None``: a split
# of that dimension has no profile (see the module docstring)
_SPLITS: dict[OpKind, dict[str, str | None]] = {
    OpKind.CONV2D: {"sample": "batch", "channel": "out_channels", "height": None, "width": None},
    OpKind.POOL2D: {"sample": "batch", "channel": "channels", "height": None, "width": None},
    OpKind.CONCAT: {"sample": "batch", "height": "height", "width": "width", "channel": None},
    OpKind.ELEMENTWISE: {
        "sample": "batch",
        "height": "height",
        "width": "width",
        "channel": "channels",
    },
    OpKind.LINEAR: {
        "sample": "rows",
        "seq": "rows",
        "channel": "out_features",
        "hidden": "out_features",
    },
    OpKind.SOFTMAX: {"sample": "rows", "seq": "rows", "channel": "cols", "hidden": "cols"},
    OpKind.EMBEDDING: {"sample": "batch", "seq": "steps", "hidden": "width"},
    OpKind.LSTM: {"sample": "batch"},
    OpKind.ATTENTION: {"sample": "batch", "seq": "steps"},
}


def _distinct_key(op: str, shape: dict[str, object]) -> str:
    return json.dumps([op, shape], sort_keys=True)


def partition_profile(op: Op, degrees: Sequence[int]) -> tuple[str, dict[str, object]] | None:
    """``(operator name, shape)`` of one of the equal partitions of ``op`` under the grid
    ``degrees`` (one degree per output dimension, as in :class:`deepflow.sim.opsim.OpConfig`),
    or ``None`` when the op has no profile or the split has none."""
    if not op.profile:
        return None
    shape: dict[str, object] = dict(op.profile)
    rules = _SPLITS.get(op.kind, {})
    for dim, k in zip(op.dims, degrees, strict=True):
        if k == 1:
            continue
        key = rules.get(dim.name)
        if key is None:
            return None
        value = shape[key]
        assert isinstance(value, int) and value % k == 0, (op.name, dim.name, value, k)
        shape[key] = value // k
    return op.kind.value, shape


def _workloads() -> dict[str, Callable[..., OpGraph]]:
    # imported here: the builders' modules import this one
    from deepflow.workload.graphs import OPGRAPH_WORKLOADS

    return OPGRAPH_WORKLOADS


BUILTIN_WORKLOADS: tuple[str, ...] = tuple(_workloads())
"""The per-operator workloads of ``deepflow search-ops`` (FlexFlow's evaluation DNNs and
DeepFlow's LSTM language model)."""


def builtin_operator_shapes(
    batch: int | None = None,
    divisors: Iterable[int] = (1,),
    workloads: Iterable[str] = BUILTIN_WORKLOADS,
) -> list[tuple[str, dict[str, object]]]:
    """The distinct ``(operator, shape)`` profiles of the built-in workloads, in first-seen
    order: every op at the workload's default batch (or ``batch``), and the partitions
    that split its sample dimension ``d`` ways for each ``d`` in ``divisors`` that divides
    it (data parallelism over ``d`` devices)."""
    builders = _workloads()
    seen: set[str] = set()
    out: list[tuple[str, dict[str, object]]] = []
    for d in divisors:
        for name in workloads:
            graph = builders[name]() if batch is None else builders[name](batch)
            for op in graph.ops:
                degrees = [1] * len(op.dims)
                i = op.dim_index("sample")
                if d > 1:
                    if i < 0 or op.dims[i].size % d or not op.dims[i].splittable:
                        continue
                    degrees[i] = d
                prof = partition_profile(op, degrees)
                if prof is None:
                    continue
                key = _distinct_key(*prof)
                if key not in seen:
                    seen.add(key)
                    out.append(prof)
    return out
