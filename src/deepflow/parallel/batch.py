"""A batch of strategies as a struct of NumPy arrays, for vectorized evaluation.

The closed-form evaluator works on many strategies at once: each knob of
:class:`~deepflow.specs.strategy.StrategySpec` becomes an array (enums as integer codes).
:meth:`StrategyBatch.from_specs` and :meth:`StrategyBatch.spec` convert both ways, so the
one-at-a-time path is the batch path with one element.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from deepflow.specs.accelerator import Precision
from deepflow.specs.strategy import MESH_AXES, PipelineSchedule, Recompute, StrategySpec

PRECISIONS = tuple(Precision)
RECOMPUTES = tuple(Recompute)
SCHEDULES = tuple(PipelineSchedule)
ALGORITHMS = ("ring", "tree", "auto")


@dataclass(frozen=True)
class StrategyBatch:
    """Strategies as parallel arrays (length ``len(self)``).

    ``stride_<axis>`` is the rank distance between consecutive members of that axis's
    communicators, from ``axis_order`` (innermost first): the product of the degrees of the
    axes placed inside it. ``stage_layers`` holds each strategy's explicit pipeline split
    (``strategy.stage_layers``), ``None`` where the default split applies
    (:mod:`deepflow.parallel.pipeline_split`).
    """

    dp: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    vpp: np.ndarray
    cp: np.ndarray
    ep: np.ndarray
    sequence_parallel: np.ndarray
    zero: np.ndarray
    recompute: np.ndarray  # index into RECOMPUTES
    micro_batch_size: np.ndarray
    virtual_nodes: np.ndarray  # 0 where not set
    precision: np.ndarray  # index into PRECISIONS
    schedule: np.ndarray  # index into SCHEDULES (effective: vpp > 1 -> interleaved)
    flash_attention: np.ndarray
    overlap_grad_reduce: np.ndarray
    overlap_param_gather: np.ndarray
    fp32_main_grads: np.ndarray
    fused_epilogues: np.ndarray
    algorithm: np.ndarray  # index into ALGORITHMS
    stride_tp: np.ndarray
    stride_cp: np.ndarray
    stride_dp: np.ndarray
    stride_pp: np.ndarray
    axis_orders: tuple[tuple[str, ...], ...]
    stage_layers: tuple[tuple[int, ...] | None, ...]

    def __len__(self) -> int:
        return int(self.dp.shape[0])

    @property
    def default_split(self) -> np.ndarray:
        """True where the pipeline split is the default rule (no ``stage_layers``)."""
        if not any(self.stage_layers):
            return np.ones(len(self), dtype=bool)
        return np.array([s is None for s in self.stage_layers], dtype=bool)

    @classmethod
    def from_specs(cls, specs: Sequence[StrategySpec]) -> StrategyBatch:
        """Build a batch from strategy specs (``dp`` must already be an integer)."""

        def col(getter, dtype=np.int64) -> np.ndarray:
            return np.array([getter(s) for s in specs], dtype=dtype)

        for s in specs:
            assert isinstance(s.dp, int), "resolve dp='auto' before batching"
        orders = tuple(tuple(s.axis_order) for s in specs)
        degrees = {
            "tp": col(lambda s: s.tp),
            "cp": col(lambda s: s.cp),
            "dp": col(lambda s: s.dp),
            "pp": col(lambda s: s.pp),
        }
        strides = mesh_strides(degrees, orders)
        return cls(
            dp=degrees["dp"],
            tp=degrees["tp"],
            pp=degrees["pp"],
            vpp=col(lambda s: s.vpp),
            cp=degrees["cp"],
            ep=col(lambda s: s.ep),
            sequence_parallel=col(lambda s: s.sequence_parallel, bool),
            zero=col(lambda s: s.zero),
            recompute=col(lambda s: RECOMPUTES.index(s.recompute)),
            micro_batch_size=col(lambda s: s.micro_batch_size),
            virtual_nodes=col(lambda s: s.virtual_nodes or 0),
            precision=col(lambda s: PRECISIONS.index(s.precision)),
            schedule=col(lambda s: SCHEDULES.index(s.schedule)),
            flash_attention=col(lambda s: s.flash_attention, bool),
            overlap_grad_reduce=col(lambda s: s.overlap_grad_reduce, bool),
            overlap_param_gather=col(lambda s: s.overlap_param_gather, bool),
            fp32_main_grads=col(lambda s: s.fp32_main_grads, bool),
            fused_epilogues=col(lambda s: s.fused_epilogues, bool),
            algorithm=col(lambda s: ALGORITHMS.index(s.collective_algorithm)),
            stride_tp=strides["tp"],
            stride_cp=strides["cp"],
            stride_dp=strides["dp"],
            stride_pp=strides["pp"],
            axis_orders=orders,
            stage_layers=tuple(s.stage_layers for s in specs),
        )

    @classmethod
    def from_arrays(
        cls, *, axis_order: tuple[str, ...] = MESH_AXES, **arrays: object
    ) -> StrategyBatch:
        """Build a batch from arrays (search grids). Missing knobs take the spec defaults;
        enums may be given as codes or as lists of enum values/strings. The pipeline split is
        the default one (no ``stage_layers``)."""
        n = max(np.size(v) for v in arrays.values())
        default = StrategySpec(dp=1)

        tables = {"precision": PRECISIONS, "recompute": RECOMPUTES, "pipeline_schedule": SCHEDULES}

        def arr(name: str, dtype=np.int64) -> np.ndarray:
            value = arrays[name] if name in arrays else getattr(default, name)
            table = tables.get(name)
            if table is not None:
                flat = np.ravel(np.asarray(value, dtype=object))
                codes = [
                    int(v)
                    if isinstance(v, (int, np.integer))
                    else table.index(type(table[0])(getattr(v, "value", v)))
                    for v in flat
                ]
                a = np.asarray(codes).reshape(np.shape(value))
            else:
                a = np.asarray(value)
            return np.broadcast_to(a.astype(dtype), (n,)).copy()

        degrees = {axis: arr(axis) for axis in MESH_AXES}
        vpp = arr("vpp")
        schedule = arr("pipeline_schedule")
        one_f_one_b = SCHEDULES.index(PipelineSchedule.ONE_F_ONE_B)
        schedule = np.where(
            (vpp > 1) & (schedule == one_f_one_b),
            SCHEDULES.index(PipelineSchedule.INTERLEAVED),
            schedule,
        )
        strides = mesh_strides(degrees, (axis_order,) * n)
        return cls(
            dp=degrees["dp"],
            tp=degrees["tp"],
            pp=degrees["pp"],
            vpp=vpp,
            cp=degrees["cp"],
            ep=arr("ep"),
            sequence_parallel=arr("sequence_parallel", bool),
            zero=arr("zero"),
            recompute=arr("recompute"),
            micro_batch_size=arr("micro_batch_size"),
            virtual_nodes=np.broadcast_to(
                np.asarray(arrays.get("virtual_nodes", 0), dtype=np.int64), (n,)
            ).copy(),
            precision=arr("precision"),
            schedule=schedule,
            flash_attention=arr("flash_attention", bool),
            overlap_grad_reduce=arr("overlap_grad_reduce", bool),
            overlap_param_gather=arr("overlap_param_gather", bool),
            fp32_main_grads=arr("fp32_main_grads", bool),
            fused_epilogues=arr("fused_epilogues", bool),
            algorithm=np.full(n, ALGORITHMS.index(str(arrays.get("collective_algorithm", "ring")))),
            stride_tp=strides["tp"],
            stride_cp=strides["cp"],
            stride_dp=strides["dp"],
            stride_pp=strides["pp"],
            axis_orders=(axis_order,) * n,
            stage_layers=(None,) * n,
        )

    def spec(self, i: int) -> StrategySpec:
        """The strategy spec of element ``i``."""
        return StrategySpec(
            dp=int(self.dp[i]),
            tp=int(self.tp[i]),
            pp=int(self.pp[i]),
            vpp=int(self.vpp[i]),
            cp=int(self.cp[i]),
            ep=int(self.ep[i]),
            sequence_parallel=bool(self.sequence_parallel[i]),
            zero=int(self.zero[i]),
            recompute=RECOMPUTES[int(self.recompute[i])],
            micro_batch_size=int(self.micro_batch_size[i]),
            virtual_nodes=int(self.virtual_nodes[i]) or None,
            precision=PRECISIONS[int(self.precision[i])],
            pipeline_schedule=SCHEDULES[int(self.schedule[i])],
            flash_attention=bool(self.flash_attention[i]),
            overlap_grad_reduce=bool(self.overlap_grad_reduce[i]),
            overlap_param_gather=bool(self.overlap_param_gather[i]),
            fp32_main_grads=bool(self.fp32_main_grads[i]),
            fused_epilogues=bool(self.fused_epilogues[i]),
            axis_order=self.axis_orders[i],  # type: ignore[arg-type]
            collective_algorithm=ALGORITHMS[int(self.algorithm[i])],  # type: ignore[arg-type]
            stage_layers=self.stage_layers[i],
        )

    def take(self, index: np.ndarray) -> StrategyBatch:
        """The sub-batch at ``index`` (integer or boolean array)."""
        idx = np.arange(len(self))[index]
        values = {}
        for f in fields(self):
            v = getattr(self, f.name)
            tuples = f.name in ("axis_orders", "stage_layers")
            values[f.name] = tuple(v[i] for i in idx) if tuples else v[idx]
        return StrategyBatch(**values)


def mesh_strides(
    degrees: dict[str, np.ndarray], orders: Sequence[tuple[str, ...]]
) -> dict[str, np.ndarray]:
    """Rank stride of each mesh axis: the product of the degrees of the axes inside it."""
    n = len(orders)
    strides = {axis: np.ones(n, dtype=np.int64) for axis in MESH_AXES}
    for order in set(orders):
        mask = np.array([o == order for o in orders])
        running = np.ones(int(mask.sum()), dtype=np.int64)
        for axis in order:
            strides[axis][mask] = running
            running = running * degrees[axis][mask]
    return strides
