"""A batch of strategies as a struct of NumPy arrays, for vectorized evaluation.

The closed-form evaluator works on many strategies at once: each knob of
:class:`~deepflow.specs.strategy.StrategySpec` becomes an array (enums as integer codes).
:meth:`StrategyBatch.from_specs` and :meth:`StrategyBatch.spec` convert both ways, so the
one-at-a-time path is the batch path with one element.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter, itemgetter

import numpy as np

from deepflow.specs.accelerator import Precision
from deepflow.specs.fp8 import DEFAULT_FP8_RECIPE, FP8_RECIPES, FP8Recipe
from deepflow.specs.framework import DEFAULT_FRAMEWORK, FRAMEWORKS, SWITCHES, framework_profile
from deepflow.specs.strategy import (
    DEFAULT_RECOMPUTE_MODULES,
    MESH_AXES,
    PipelineSchedule,
    Recompute,
    RecomputeModule,
    StrategySpec,
)
from deepflow.workload.recompute import mask_modules, module_mask

PRECISIONS = tuple(Precision)
RECOMPUTES = tuple(Recompute)
SCHEDULES = tuple(PipelineSchedule)
ALGORITHMS = ("ring", "tree", "auto")
_SELECTIVE = RECOMPUTES.index(Recompute.SELECTIVE)
_FULL = RECOMPUTES.index(Recompute.FULL)
DEFAULT_MODULES_MASK = module_mask(DEFAULT_RECOMPUTE_MODULES)
_FP8 = PRECISIONS.index(Precision.FP8)
_DEFAULT_RECIPE = FP8_RECIPES.index(DEFAULT_FP8_RECIPE)


_TRUE = np.ones(1, dtype=bool)
_TRUE.flags.writeable = False  # shared by every batch of one: read-only


def _column(value: object, dtype: type, n: int) -> np.ndarray:
    """``value`` as ``n`` values of ``dtype``: itself where it is that array already,
    else broadcast (a read-only view)."""
    a = np.asarray(value, dtype=dtype)
    return a if a.shape == (n,) else np.broadcast_to(a, (n,))


@dataclass(frozen=True)
class StrategyBatch:
    """Strategies as parallel arrays (length ``len(self)``).

    ``stride_<axis>`` is the rank distance between consecutive members of that axis's
    communicators, from ``axis_order`` (innermost first): the product of the degrees of the
    axes placed inside it. ``stage_layers`` holds each strategy's explicit pipeline split
    (``strategy.stage_layers``), ``None`` where the default split applies
    (:mod:`deepflow.parallel.pipeline_split`).

    ``framework`` is the index of each strategy's implementation profile in
    :data:`~deepflow.specs.framework.FRAMEWORKS`.

    ``recompute_modules`` is the bitmask (:data:`~deepflow.workload.recompute.MODULES`) of the modules that
    selective recomputation checkpoints, zero unless ``recompute`` is selective;
    ``recompute_layers`` the layers per pipeline chunk that full recomputation checkpoints,
    ``-1`` for all of them.
    """

    dp: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    vpp: np.ndarray
    cp: np.ndarray
    ep: np.ndarray
    etp: np.ndarray  # expert tensor parallelism, resolved (``expert_tp`` or ``tp``)
    sequence_parallel: np.ndarray
    zero: np.ndarray
    shard_degree: np.ndarray  # 0 = the whole dp x cp group
    reshard_after_forward: np.ndarray
    recompute: np.ndarray  # index into RECOMPUTES
    recompute_modules: np.ndarray  # bitmask over workload.recompute.MODULES (selective)
    recompute_layers: np.ndarray  # layers per chunk with full recompute; -1 = all
    micro_batch_size: np.ndarray
    virtual_nodes: np.ndarray  # 0 where not set
    precision: np.ndarray  # index into PRECISIONS
    schedule: np.ndarray  # index into SCHEDULES (effective: vpp > 1 -> interleaved)
    flash_attention: np.ndarray
    overlap_grad_reduce: np.ndarray
    overlap_param_gather: np.ndarray
    fp32_main_grads: np.ndarray
    fused_epilogues: np.ndarray
    framework: np.ndarray  # index into specs.framework.FRAMEWORKS
    algorithm: np.ndarray  # index into ALGORITHMS
    stride_tp: np.ndarray
    stride_cp: np.ndarray
    stride_dp: np.ndarray
    stride_pp: np.ndarray
    axis_orders: tuple[tuple[str, ...], ...]
    stage_layers: tuple[tuple[int, ...] | None, ...]
    # FP8 (deepflow.specs.fp8): index into FP8_RECIPES of the effective recipe, -1 where
    # the precision is not fp8; FP8 primary weights gathered in FP8
    fp8_recipe: np.ndarray | None = None
    fp8_param_gather: np.ndarray | None = None
    # MoE dispatch and combine by DeepEP's kernels (strategy.moe_dispatcher: deepep)
    deepep: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self)
        fp8 = self.precision == _FP8
        if self.fp8_recipe is None:
            object.__setattr__(self, "fp8_recipe", np.where(fp8, _DEFAULT_RECIPE, -1))
        else:
            codes = _column(self.fp8_recipe, np.int64, n)
            codes = np.where(fp8, np.where(codes < 0, _DEFAULT_RECIPE, codes), -1)
            object.__setattr__(self, "fp8_recipe", codes)
        gather = np.zeros(n, bool) if self.fp8_param_gather is None else self.fp8_param_gather
        gather = _column(gather, bool, n) & fp8
        object.__setattr__(self, "fp8_param_gather", gather)
        deepep = np.zeros(n, bool) if self.deepep is None else self.deepep
        object.__setattr__(self, "deepep", _column(deepep, bool, n))

    def __len__(self) -> int:
        return int(self.dp.shape[0])

    @property
    def row(self) -> StrategyRow:
        """The one strategy of a batch of one as NumPy scalars (:class:`StrategyRow`),
        built on first use and kept (the batch is frozen and its arrays are not written)."""
        row = self.__dict__.get("_row")
        if row is None:
            assert len(self) == 1, "row is the strategy of a batch of one"
            row = self.__dict__["_row"] = StrategyRow(self)
        return row

    @property
    def packed_values(self) -> tuple[list[int], list[bool]] | None:
        """For a batch of one whose fields :meth:`from_specs` packed in two arrays (an int64
        and a bool one, :func:`_one_spec`): those arrays as Python lists, built on first use
        and kept; field ``name``'s element is ``packed_values[a][i]`` for ``(a, i) =``
        :data:`PACKED_FIELDS` ``[name]``. ``None`` for any other batch."""
        values = self.__dict__.get("_packed_values")
        if values is None:
            packed = self.__dict__.get("_packed")
            if packed is None:
                return None
            values = self.__dict__["_packed_values"] = (packed[0].tolist(), packed[1].tolist())
        return values

    @property
    def default_split(self) -> np.ndarray:
        """True where the pipeline split is the default rule (no ``stage_layers``)."""
        if not any(self.stage_layers):
            return _TRUE if len(self) == 1 else np.ones(len(self), dtype=bool)
        return np.array([s is None for s in self.stage_layers], dtype=bool)

    @classmethod
    def from_specs(cls, specs: Sequence[StrategySpec]) -> StrategyBatch:
        """Build a batch from strategy specs (``dp`` must already be an integer)."""
        for s in specs:
            assert isinstance(s.dp, int), "resolve dp='auto' before batching"
        if len(specs) == 1:
            one = _one_spec(cls, specs[0])
            if one is not None:
                return one
        columns = tuple(zip(*(_spec_row(s) for s in specs), strict=True)) or ((),) * len(
            _ROW_FIELDS
        )
        values = {
            name: np.array(column, dtype=dtype)
            for (name, dtype), column in zip(_ROW_FIELDS, columns, strict=True)
        }
        orders = tuple(tuple(s.axis_order) for s in specs)
        strides = mesh_strides({a: values[a] for a in ("tp", "cp", "dp", "pp")}, orders)
        return cls(
            **values,
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
        the default one (no ``stage_layers``). ``framework`` (names or codes) sets the
        default of each switch the arrays leave out (:data:`~deepflow.specs.framework.SWITCHES`)."""
        n = max(
            len(v) if k == "recompute_modules" and isinstance(v, (list, tuple)) else np.size(v)
            for k, v in arrays.items()
        )
        default = StrategySpec(dp=1)

        tables = {"precision": PRECISIONS, "recompute": RECOMPUTES, "pipeline_schedule": SCHEDULES}

        frameworks = _framework_codes(arrays.get("framework", DEFAULT_FRAMEWORK), n)

        def arr(name: str, dtype=np.int64) -> np.ndarray:
            if name in SWITCHES and name not in arrays:
                table = np.array(
                    [bool(framework_profile(f).default(name)) for f in FRAMEWORKS], dtype=dtype
                )
                return table[frameworks]
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
        # shard_degree: None (the spec's default) is 0, the whole dp x cp group
        shard = arrays.get("shard_degree")
        shard_degree = np.broadcast_to(
            np.asarray(0 if shard is None else shard, dtype=np.int64), (n,)
        ).copy()
        recompute = arr("recompute")
        modules = _module_masks(arrays.get("recompute_modules"), n)
        layers = arrays.get("recompute_layers")
        layers = np.broadcast_to(
            np.asarray(-1 if layers is None else layers, dtype=np.int64), (n,)
        ).copy()
        # expert_tp: None (the spec's default) is tp (Megatron-Core parallel_state)
        # (0 in an array means the same)
        etp = arrays.get("expert_tp")
        etp_a = np.broadcast_to(np.asarray(0 if etp is None else etp, dtype=np.int64), (n,))
        etp_a = np.where(etp_a > 0, etp_a, degrees["tp"])
        return cls(
            dp=degrees["dp"],
            tp=degrees["tp"],
            pp=degrees["pp"],
            vpp=vpp,
            cp=degrees["cp"],
            ep=arr("ep"),
            etp=etp_a,
            sequence_parallel=arr("sequence_parallel", bool),
            zero=arr("zero"),
            shard_degree=shard_degree,
            reshard_after_forward=arr("reshard_after_forward", bool),
            recompute=recompute,
            recompute_modules=np.where(recompute == _SELECTIVE, modules, 0),
            recompute_layers=np.where(recompute == _FULL, layers, -1),
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
            framework=frameworks,
            algorithm=np.full(n, ALGORITHMS.index(str(arrays.get("collective_algorithm", "ring")))),
            stride_tp=strides["tp"],
            stride_cp=strides["cp"],
            stride_dp=strides["dp"],
            stride_pp=strides["pp"],
            axis_orders=(axis_order,) * n,
            stage_layers=(None,) * n,
            fp8_recipe=_recipe_codes(arrays.get("fp8_recipe"), n),
            fp8_param_gather=np.broadcast_to(
                np.asarray(arrays.get("fp8_param_gather", False), dtype=bool), (n,)
            ).copy(),
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
            expert_tp=None if self.etp[i] == self.tp[i] else int(self.etp[i]),
            sequence_parallel=bool(self.sequence_parallel[i]),
            zero=int(self.zero[i]),
            shard_degree=int(self.shard_degree[i]) or None,
            reshard_after_forward=bool(self.reshard_after_forward[i]),
            recompute=RECOMPUTES[int(self.recompute[i])],
            recompute_modules=self._modules(i),
            recompute_layers=int(self.recompute_layers[i])
            if self.recompute_layers[i] >= 0
            else None,
            micro_batch_size=int(self.micro_batch_size[i]),
            virtual_nodes=int(self.virtual_nodes[i]) or None,
            precision=PRECISIONS[int(self.precision[i])],
            pipeline_schedule=SCHEDULES[int(self.schedule[i])],
            flash_attention=bool(self.flash_attention[i]),
            overlap_grad_reduce=bool(self.overlap_grad_reduce[i]),
            overlap_param_gather=bool(self.overlap_param_gather[i]),
            fp32_main_grads=bool(self.fp32_main_grads[i]),
            fused_epilogues=bool(self.fused_epilogues[i]),
            framework=FRAMEWORKS[int(self.framework[i])],
            axis_order=self.axis_orders[i],  # type: ignore[arg-type]
            collective_algorithm=ALGORITHMS[int(self.algorithm[i])],  # type: ignore[arg-type]
            stage_layers=self.stage_layers[i],
            fp8_recipe=FP8_RECIPES[int(self.fp8_recipe[i])] if self.fp8_recipe[i] >= 0 else None,
            fp8_param_gather=bool(self.fp8_param_gather[i]),
            moe_dispatcher="deepep" if self.deepep[i] else "alltoall",
        )

    def _modules(self, i: int) -> tuple[RecomputeModule, ...] | None:
        """Element ``i``'s ``recompute_modules`` (None for the default and when unused)."""
        mask = int(self.recompute_modules[i])
        if int(self.recompute[i]) != _SELECTIVE or mask == DEFAULT_MODULES_MASK:
            return None
        return mask_modules(mask)

    def take(self, index: np.ndarray) -> StrategyBatch:
        """The sub-batch at ``index`` (integer or boolean array)."""
        idx = np.arange(len(self))[index]
        values = {}
        for f in fields(self):
            v = getattr(self, f.name)
            tuples = f.name in _TUPLE_FIELDS
            values[f.name] = tuple(v[i] for i in idx) if tuples else v[idx]
        return StrategyBatch(**values)


class StrategyRow:
    """The one strategy of a batch of one as NumPy scalars: each array field's element, of
    the array's dtype (the tuple fields as they are). Formulas written for the batch's
    arrays read it like the batch and compute the same values with NumPy scalar arithmetic
    (the same IEEE and int64 operations, the same rounding), which skips the array machinery
    of every operation; integer overflow, silent on arrays, warns on scalars, so callers
    run them under ``np.errstate(over="ignore")``. The batch's ``default_split`` reads as its
    element too, and any other attribute of the batch as its element, on first use."""

    def __init__(self, batch: StrategyBatch) -> None:
        packed = batch.__dict__.get("_packed")
        if packed is None:
            values = dict(zip(_ARRAY_FIELD_NAMES, map(_FIRST, _ARRAY_FIELDS(batch)), strict=False))
        else:  # built by _one_spec: the fields are the elements of two arrays
            ints, flags = packed
            values = dict(zip(_ONE_INTS, ints, strict=False))
            values.update(zip(_ONE_FLAGS, flags, strict=False))
        values.update(axis_orders=batch.axis_orders, stage_layers=batch.stage_layers)
        values.update(default_split=batch.default_split[0], _batch=batch)
        self.__dict__ = values

    def __getattr__(self, name: str) -> object:  # the batch's other attributes
        value = getattr(self._batch, name)
        value = value[0] if type(value) is np.ndarray else value
        self.__dict__[name] = value
        return value


_TUPLE_FIELDS = ("axis_orders", "stage_layers")
_ARRAY_FIELD_NAMES = tuple(f.name for f in fields(StrategyBatch) if f.name not in _TUPLE_FIELDS)
_ARRAY_FIELDS = attrgetter(*_ARRAY_FIELD_NAMES)
_FIRST = itemgetter(0)


_ROW_FIELDS: tuple[tuple[str, type], ...] = (
    ("dp", np.int64),
    ("tp", np.int64),
    ("pp", np.int64),
    ("vpp", np.int64),
    ("cp", np.int64),
    ("ep", np.int64),
    ("etp", np.int64),
    ("sequence_parallel", bool),
    ("zero", np.int64),
    ("shard_degree", np.int64),
    ("reshard_after_forward", bool),
    ("recompute", np.int64),
    ("recompute_modules", np.int64),
    ("recompute_layers", np.int64),
    ("micro_batch_size", np.int64),
    ("virtual_nodes", np.int64),
    ("precision", np.int64),
    ("schedule", np.int64),
    ("flash_attention", bool),
    ("overlap_grad_reduce", bool),
    ("overlap_param_gather", bool),
    ("fp32_main_grads", bool),
    ("fused_epilogues", bool),
    ("framework", np.int64),
    ("algorithm", np.int64),
    ("fp8_recipe", np.int64),
    ("fp8_param_gather", bool),
    ("deepep", bool),
)
"""The array fields :meth:`StrategyBatch.from_specs` fills from a spec (:func:`_spec_row`),
with their dtypes."""


_INT_FIELDS = tuple(i for i, (_, dtype) in enumerate(_ROW_FIELDS) if dtype is np.int64)
_BOOL_FIELDS = tuple(i for i, (_, dtype) in enumerate(_ROW_FIELDS) if dtype is bool)


_STRIDE_AXES = ("tp", "cp", "dp", "pp")
_ROW_INTS = itemgetter(*_INT_FIELDS)
_ROW_FLAGS = itemgetter(*_BOOL_FIELDS)
_ONE_INTS = (*(_ROW_FIELDS[i][0] for i in _INT_FIELDS), *(f"stride_{a}" for a in _STRIDE_AXES))
_ONE_FLAGS = tuple(_ROW_FIELDS[i][0] for i in _BOOL_FIELDS)
PACKED_FIELDS: dict[str, tuple[int, int]] = {
    **{name: (0, i) for i, name in enumerate(_ONE_INTS)},
    **{name: (1, i) for i, name in enumerate(_ONE_FLAGS)},
}
"""Where each field of a batch of one packed by :func:`_one_spec` lies: ``(0, i)`` for
element ``i`` of its int64 array, ``(1, i)`` for element ``i`` of its bool array
(:attr:`StrategyBatch.packed_values`)."""
_DEGREE_INDEX = {axis: [name for name, _ in _ROW_FIELDS].index(axis) for axis in MESH_AXES}


def _one_spec(cls: type[StrategyBatch], s: StrategySpec) -> StrategyBatch | None:
    """The batch of the one spec ``s``, built with two NumPy calls: the integer fields and
    the strides in one int64 array, the flags in one bool array, each field a one-element
    view of them. The same arrays (values, dtypes, shapes) as the general path of
    :meth:`StrategyBatch.from_specs`, whose ``__post_init__`` it skips: :func:`_spec_row`
    already holds the effective FP8 recipe and gather flag that it derives (applied again,
    it leaves them as they are), and the arrays have the length one it broadcasts to.

    The strides come from :func:`_order_strides` on the row's Python integers (exact);
    where one lies beyond int64, NumPy's conversion raises and the general path, whose
    int64 products wrap, builds the batch instead (``None`` here). Where the exact product
    fits int64 it equals the wrapped one (both agree modulo 2**64)."""
    row = _spec_row(s)
    order = tuple(s.axis_order)
    strides = _order_strides({a: row[i] for a, i in _DEGREE_INDEX.items()}, order)
    try:
        ints = np.array(
            [*_ROW_INTS(row), *(strides.get(a, 1) for a in _STRIDE_AXES)], dtype=np.int64
        )
    except OverflowError:
        return None
    flags = np.array(_ROW_FLAGS(row), dtype=bool)
    batch = object.__new__(cls)  # frozen: the fields go in as the dataclass's __init__ would
    batch.__dict__.update(zip(_ONE_INTS, ints.reshape(-1, 1), strict=False))
    batch.__dict__.update(zip(_ONE_FLAGS, flags.reshape(-1, 1), strict=False))
    batch.__dict__.update(axis_orders=(order,), stage_layers=(s.stage_layers,))
    batch.__dict__["_packed"] = (ints, flags)  # for its row (StrategyRow): same elements
    return batch


def _spec_row(s: StrategySpec) -> tuple[object, ...]:
    """The values of :data:`_ROW_FIELDS` for one spec (enums as codes), with the FP8 recipe
    and gather flag in effect (what :meth:`StrategyBatch.__post_init__` derives from them)."""
    return (
        s.dp,
        s.tp,
        s.pp,
        s.vpp,
        s.cp,
        s.ep,
        s.etp,
        s.sequence_parallel,
        s.zero,
        s.shard_degree or 0,
        s.reshard_after_forward,
        RECOMPUTES.index(s.recompute),
        module_mask(s.effective_recompute_modules),
        -1 if s.recompute_layers is None else s.recompute_layers,
        s.micro_batch_size,
        s.virtual_nodes or 0,
        PRECISIONS.index(s.precision),
        SCHEDULES.index(s.schedule),
        s.flash_attention,
        s.overlap_grad_reduce,
        s.overlap_param_gather,
        s.fp32_main_grads,
        s.fused_epilogues,
        FRAMEWORKS.index(s.framework),
        ALGORITHMS.index(s.collective_algorithm),
        -1 if (recipe := s.effective_fp8_recipe) is None else FP8_RECIPES.index(recipe),
        s.fp8_param_gather and s.precision is Precision.FP8,
        s.moe_dispatcher == "deepep",
    )


def _framework_codes(value: object, n: int) -> np.ndarray:
    """``framework`` of :meth:`StrategyBatch.from_arrays` as ``n`` codes: one name or code,
    or one per strategy."""
    items = [value] if isinstance(value, (str, int, np.integer)) else list(value)  # type: ignore[call-overload]
    codes = [
        int(v) if isinstance(v, (int, np.integer)) else FRAMEWORKS.index(str(v)) for v in items
    ]
    return np.broadcast_to(np.asarray(codes, dtype=np.int64), (n,)).copy()


def _recipe_codes(value: object, n: int) -> np.ndarray:
    """``fp8_recipe`` of :meth:`StrategyBatch.from_arrays` as ``n`` codes (None or -1: the
    default recipe where the precision is fp8): one name or code, or one per strategy."""
    if value is None:
        return np.full(n, -1, dtype=np.int64)
    one = isinstance(value, (str, int, np.integer))
    items = [value] if one else list(value)  # type: ignore[call-overload]

    def code(v: object) -> int:
        if isinstance(v, (int, np.integer)):
            return int(v)
        return -1 if v is None else FP8_RECIPES.index(FP8Recipe(getattr(v, "value", v)))

    codes = [code(v) for v in items]
    return np.broadcast_to(np.asarray(codes, dtype=np.int64), (n,)).copy()


def _module_masks(value: object, n: int) -> np.ndarray:
    """``recompute_modules`` of :meth:`StrategyBatch.from_arrays` as ``n`` bitmasks: None
    (the default), bitmasks (an integer or an integer array), one list of modules for every
    strategy, or one list (or bitmask) per strategy."""
    if value is None:
        masks: object = DEFAULT_MODULES_MASK
    elif isinstance(value, (int, np.integer)) or (
        isinstance(value, np.ndarray) and value.dtype.kind in "iu"
    ):
        masks = value
    else:
        items = list(value)  # type: ignore[call-overload]
        if all(isinstance(x, (str, RecomputeModule)) for x in items):
            masks = module_mask(items)
        else:
            masks = [x if isinstance(x, (int, np.integer)) else module_mask(x) for x in items]
    return np.broadcast_to(np.asarray(masks, dtype=np.int64), (n,)).copy()


def _order_strides(degrees: Mapping[str, object], order: Sequence[str]) -> dict[str, object]:
    """Rank stride of each axis of ``order`` (innermost first): the product of the degrees
    of the axes inside it, ``1`` for the innermost. The degrees may be integers or arrays."""
    strides: dict[str, object] = {}
    running: object = 1
    for axis in order:
        strides[axis] = running
        running = running * degrees[axis]  # type: ignore[operator]
    return strides


def mesh_strides(
    degrees: dict[str, np.ndarray], orders: Sequence[tuple[str, ...]]
) -> dict[str, np.ndarray]:
    """Rank stride of each mesh axis (:func:`_order_strides`) per strategy, as int64 arrays;
    ``1`` for an axis its order leaves out."""
    n = len(orders)
    distinct = set(orders)
    if len(distinct) == 1:  # one order (always, for one strategy): no masks
        strides = _order_strides(degrees, orders[0])
        return {
            axis: stride
            if isinstance(stride := strides.get(axis, 1), np.ndarray)
            else np.ones(n, dtype=np.int64)
            for axis in MESH_AXES
        }
    out = {axis: np.ones(n, dtype=np.int64) for axis in MESH_AXES}
    for order in distinct:
        mask = np.array([o == order for o in orders])
        masked = {axis: degrees[axis][mask] for axis in order}
        for axis, stride in _order_strides(masked, order).items():
            out[axis][mask] = stride
    return out
