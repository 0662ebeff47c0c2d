"""Per-strategy quantities every part of the estimate needs, computed once per batch."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from deepflow.network.hierarchy import GroupPlacement, Hierarchy, place_group
from deepflow.network.ops import Algorithm
from deepflow.network.programs import ProgramAlgorithm
from deepflow.network.xp import f64, maximum, select
from deepflow.parallel.batch import PRECISIONS, StrategyBatch, StrategyRow
from deepflow.parallel.experts import ExpertGroups, expert_groups
from deepflow.parallel.sharding import DataParallelGroups, data_parallel_groups
from deepflow.specs.accelerator import Precision
from deepflow.specs.identity import IdentityCache
from deepflow.specs.model import ModelSpec
from deepflow.specs.system import SystemSpec


def _system_constants(
    system: SystemSpec,
) -> tuple[Hierarchy, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    acc = system.accelerator
    peaks = np.array([acc.peak(p) for p in PRECISIONS])
    # under fp8, the unquantized matrix math runs in bf16 (Megatron-Core's fp8 training
    # keeps bf16 parameters and activations outside the TE linear layers)
    high = peaks.copy()
    high[PRECISIONS.index(Precision.FP8)] = acc.peak(Precision.BF16)
    elems = np.array([float(p.activation_bytes) for p in PRECISIONS])
    # an unsupported precision (peak 0) is infeasible by rule; keep its arithmetic finite
    rates, rates_high = np.maximum(peaks, 1.0), np.maximum(high, 1.0)
    for table in (peaks, high, elems, rates, rates_high):
        table.flags.writeable = False
    return Hierarchy.from_system(system), peaks, high, elems, rates, rates_high


system_constants = IdentityCache(_system_constants)
"""The network hierarchy of a system and its accelerator's tables per precision code (dense
peak, the 16-bit peak that stands in under fp8, activation bytes, and the two peaks at
least 1 FLOP/s, the rates :class:`Env` divides by): the same for every strategy on that
system object, built once per object (read-only tables)."""


Placements = tuple[ExpertGroups, DataParallelGroups, GroupPlacement, GroupPlacement]
_PLACEMENT_INPUTS = (
    "tp", "cp", "dp", "pp", "ep", "etp", "shard_degree",
    "stride_tp", "stride_cp", "stride_dp", "stride_pp",
)  # fmt: skip
_PLACEMENT_VALUES = attrgetter(*_PLACEMENT_INPUTS)
_PLACEMENTS: OrderedDict[tuple[object, ...], Placements] = OrderedDict()
_PLACEMENTS_LOCK = threading.Lock()
PLACEMENTS_MAXSIZE = 512
"""Meshes whose placements one-strategy batches keep (least recently used out first)."""


def _place(b: StrategyBatch, size: int) -> Placements:
    experts = expert_groups(b.tp, b.cp, b.dp, b.pp, b.ep, b.etp, b.stride_pp, size)
    groups = data_parallel_groups(
        b.dp, b.cp, b.ep, b.shard_degree, b.stride_dp, b.stride_cp, size, experts
    )
    return (
        experts,
        groups,
        place_group(b.tp, b.stride_tp, size),
        place_group(b.cp, b.stride_cp, size),
    )


def _read_only(placement: GroupPlacement) -> None:
    for a in (placement.size, placement.members_per_domain, placement.domains):
        if isinstance(a, np.ndarray):
            a.flags.writeable = False


def placements(b: StrategyBatch, size: int) -> Placements:
    """The expert groups, the data-parallel groups and the tensor- and context-parallel
    groups of ``b`` on scale-up domains of ``size`` accelerators.

    They depend on the mesh alone (the degrees, ``shard_degree`` and the strides named in
    ``_PLACEMENT_INPUTS``), which an optimizer that predicts one strategy at a time
    revisits often: for a batch of one, the placements are kept per mesh (the key is those
    inputs as the NumPy scalars of :attr:`StrategyBatch.row`, by type and value, and the
    domain size), as read-only arrays."""
    if len(b) != 1:
        return _place(b, size)
    values = _PLACEMENT_VALUES(b.row)
    key = (size, values, tuple(map(type, values)))
    with _PLACEMENTS_LOCK:
        hit = _PLACEMENTS.get(key)
        if hit is not None:
            _PLACEMENTS.move_to_end(key)
            return hit
    value = _place(b, size)
    experts, groups, tp_group, cp_group = value
    for placement in (*vars(experts).values(), *vars(groups).values(), tp_group, cp_group):
        _read_only(placement)
    with _PLACEMENTS_LOCK:
        _PLACEMENTS[key] = value
        while len(_PLACEMENTS) > PLACEMENTS_MAXSIZE:
            _PLACEMENTS.popitem(last=False)
    return value


@dataclass(frozen=True)
class Env:
    """A model and system with a strategy batch, plus derived arrays.

    ``tokens`` is the token count of one micro-batch on one rank inside the tensor-parallel
    region: ``micro_batch_size * seq_len / cp`` (context parallelism splits the sequence;
    Liu et al. 2023, ring attention).

    ``experts`` are the MoE layers' folded groups (:mod:`deepflow.parallel.experts`);
    ``expert_rows`` the tokens whose routed copies one rank's experts compute, per
    micro-batch (times ``top_k`` and the expert load for the rows of its grouped GEMMs).

    ``dp_groups`` are the communicators of (sharded) data parallelism over the ``dp x cp``
    ranks, expert parallelism included (:mod:`deepflow.parallel.sharding`).

    ``peak`` is the dense rate of the linear layers' GEMMs at the strategy's precision;
    ``peak_high`` the rate of the matrix math that stays in 16 bits under ``fp8`` (attention
    core, MoE router, LM head: Transformer Engine quantizes only its linear layers inside
    ``fp8_autocast``), the same as ``peak`` at every other precision.

    ``matmul_scale`` multiplies, per strategy, the peak-achievable fraction of every GEMM
    (:func:`deepflow.hardware.roofline.gemm_time`'s ``eta_scale``): ones, except where a
    co-design point gives each tensor-parallel degree the hierarchical-roofline efficiency
    of its own sharded GEMMs (:mod:`deepflow.codesign.point`).

    ``algorithms`` maps a mesh axis (``"tp"``, ``"dp"``, ``"ep"``) to the algorithm of that
    axis's collectives when it is not the batch's built-in one, e.g. an imported MSCCL-IR
    program (:class:`~deepflow.network.programs.ProgramAlgorithm`); empty by default.
    """

    model: ModelSpec
    system: SystemSpec
    batch: StrategyBatch
    global_batch_size: int
    hierarchy: Hierarchy
    peak: np.ndarray
    peak_high: np.ndarray
    precision_high: np.ndarray  # precision code of that 16-bit math (bf16 under fp8)
    elem: np.ndarray
    grad_bytes: np.ndarray  # bytes per gradient element in the accumulation buffers
    tokens: np.ndarray
    micro_batches: np.ndarray
    sp_div: np.ndarray  # tp where sequence parallelism shards, else 1
    tp_group: GroupPlacement
    cp_group: GroupPlacement
    dp_groups: DataParallelGroups
    ep_group: GroupPlacement
    experts: ExpertGroups
    expert_rows: np.ndarray  # tokens one rank's experts compute per micro-batch, / top_k
    pp_crosses_domain: np.ndarray
    algorithms: Mapping[str, Algorithm | ProgramAlgorithm]
    matmul_scale: np.ndarray

    @classmethod
    def build(
        cls,
        model: ModelSpec,
        system: SystemSpec,
        batch: StrategyBatch,
        global_batch_size: int,
        algorithms: Mapping[str, Algorithm | ProgramAlgorithm] | None = None,
        matmul_scale: np.ndarray | None = None,
    ) -> Env:
        """The environment of ``batch``. For a batch of one, :func:`_derived` runs on the
        strategy's NumPy scalars (:attr:`StrategyBatch.row`) and :func:`_one_element` puts
        each value in a one-element array of its dtype: the same values as on the arrays,
        without NumPy's array machinery per operation."""
        hierarchy, _, _, elems, rates, rates_high = system_constants(system)
        size = hierarchy.scale_up_size
        experts, groups, tp_group, cp_group = placements(batch, size)
        n = len(batch)
        if n == 1:
            # int64 products wrap silently on arrays and warn on scalars: the same values
            with np.errstate(over="ignore"):
                values = _derived(
                    model, global_batch_size, batch.row, rates, rates_high, elems, size
                )
            if matmul_scale is None:
                values["matmul_scale"] = _ONE
            derived = _one_element(values)
        else:
            derived = _derived(model, global_batch_size, batch, rates, rates_high, elems, size)
        env = object.__new__(cls)  # frozen: every field set at once, as __init__ would
        env.__dict__.update(
            derived,
            model=model,
            system=system,
            batch=batch,
            global_batch_size=global_batch_size,
            hierarchy=hierarchy,
            tp_group=tp_group,
            cp_group=cp_group,
            dp_groups=groups,
            ep_group=groups.ep,
            experts=experts,
            algorithms=dict(algorithms or {}),
        )
        if "matmul_scale" not in derived:
            env.__dict__["matmul_scale"] = (
                np.ones(n)
                if matmul_scale is None
                else np.broadcast_to(np.asarray(matmul_scale, dtype=np.float64), (n,))
            )
        return env


_ONE = np.float64(1.0)
_FP8 = PRECISIONS.index(Precision.FP8)
_BF16 = PRECISIONS.index(Precision.BF16)
_PRECISION_HIGH = np.where(np.arange(len(PRECISIONS)) == _FP8, _BF16, np.arange(len(PRECISIONS)))
"""Per precision code, the code of the matrix math that stays in 16 bits: bf16 under fp8
(Transformer Engine quantizes only its linear layers), else the code itself."""
_PRECISION_HIGH.flags.writeable = False


def _derived(
    model: ModelSpec,
    global_batch_size: int,
    b: StrategyBatch | StrategyRow,
    rates: np.ndarray,
    rates_high: np.ndarray,
    elems: np.ndarray,
    size: int,
) -> dict[str, object]:
    """The per-strategy fields of :class:`Env` computed from the strategies ``b``: a batch
    (arrays) or the row of a batch of one (NumPy scalars; :func:`~deepflow.network.xp.select`,
    :func:`~deepflow.network.xp.maximum` and :func:`~deepflow.network.xp.f64` are
    ``np.where``, ``np.maximum`` and the float64 conversion, keeping float scalars scalar).
    ``rates``, ``rates_high`` and ``elems`` are :data:`system_constants`' tables per
    precision code."""
    tokens = b.micro_batch_size * model.seq_len / b.cp
    sp_div = select(b.sequence_parallel, f64(b.tp), 1.0)
    elem = elems[b.precision]
    return {
        "peak": rates[b.precision],
        "peak_high": rates_high[b.precision],
        "precision_high": _PRECISION_HIGH[b.precision],
        "elem": elem,
        "grad_bytes": select(b.fp32_main_grads, 4.0, elem),
        "tokens": tokens,
        "micro_batches": maximum(1.0, np.floor(global_batch_size / (b.dp * b.micro_batch_size))),
        "sp_div": sp_div,
        # each rank routes its own tokens (tokens / tp under sequence parallelism) and
        # its expert-tensor-parallel group all-gathers what the all-to-all brought
        # (Megatron-Core MoEAlltoAllTokenDispatcher: gather over the expert tp group);
        # without sequence parallelism the tp ranks hold the same tokens (etp = tp)
        "expert_rows": select(b.sequence_parallel | (b.tp == 1), tokens / sp_div * b.etp, tokens),
        "pp_crosses_domain": b.stride_pp >= size,
    }


def _one_element(values: dict[str, object]) -> dict[str, np.ndarray]:
    """The NumPy scalars of :func:`_derived` for one strategy as one-element arrays of their
    dtypes (``x[None]``)."""
    return {k: v[None] for k, v in values.items()}  # type: ignore[index]
