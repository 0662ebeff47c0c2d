"""Structural feasibility of strategies: divisibility and support rules, vectorized.

Each :class:`Rule` flags the strategies of a batch that cannot run and explains why in one
sentence. Memory capacity is checked by the evaluator, which knows the footprint.
The rules follow Megatron-LM's argument checks (``megatron/training/arguments.py``) and
the papers that define each parallelism.

Each rule is one expression for a batch and for one strategy: for a batch of one,
:func:`structural_violations` runs it on the strategy's NumPy scalars
(:attr:`~deepflow.parallel.batch.StrategyBatch.row`), where NumPy's scalar arithmetic gives
the element the arrays would. The rules use operators (``%`` is ``np.mod`` on NumPy
operands) rather than ufunc calls where both are the same, since an operator on scalars
skips the ufunc machinery, and a condition on the model alone comes first with ``and``
(``moe is None and ...``): a plain ``False`` where it fails, which the batch loop broadcasts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deepflow.parallel.batch import PRECISIONS, SCHEDULES, StrategyBatch
from deepflow.specs.accelerator import AcceleratorSpec
from deepflow.specs.framework import FRAMEWORKS, framework_profile
from deepflow.specs.identity import IdentityCache
from deepflow.specs.model import ModelSpec
from deepflow.specs.strategy import PipelineSchedule, StrategySpec, folds
from deepflow.specs.system import SystemSpec


@dataclass(frozen=True)
class Context:
    """What the rules look at besides the strategy."""

    model: ModelSpec
    system: SystemSpec
    global_batch_size: int


@dataclass(frozen=True)
class Rule:
    """``violated(ctx, batch)`` is True where the strategy is infeasible; ``explain(ctx, s)``
    says why for one strategy."""

    name: str
    violated: Callable[[Context, StrategyBatch], np.ndarray]
    explain: Callable[[Context, StrategySpec], str]


def _expert_ffn(model: ModelSpec) -> int:
    if model.moe is None:
        return 1
    return model.moe.expert_ffn_hidden_size or model.ffn_hidden_size


def _micro_batches(ctx: Context, b: StrategyBatch) -> np.ndarray:
    return ctx.global_batch_size / (b.dp * b.micro_batch_size)


def _no_matrix_units(accelerator: AcceleratorSpec) -> np.ndarray:
    """Per precision code: the accelerator has no dense peak at that precision."""
    return np.array([accelerator.peak(p) <= 0 for p in PRECISIONS])


_NO_MATRIX_UNITS = IdentityCache(_no_matrix_units)


def _peak_zero(ctx: Context, b: StrategyBatch) -> np.ndarray:
    return _NO_MATRIX_UNITS(ctx.system.accelerator)[b.precision]


_AXES = ("tp", "pp", "vpp", "cp", "ep")


def _support_table() -> dict[str, np.ndarray]:
    """Per framework code: whether it runs each axis above 1, sequence parallelism, and
    each ZeRO level without and with pipeline parallelism (``zero{k}``, ``zero{k}_pp``)."""
    profiles = [framework_profile(f).supports for f in FRAMEWORKS]
    table = {axis: np.array([getattr(p, axis) for p in profiles]) for axis in _AXES}
    table["sequence_parallel"] = np.array([p.sequence_parallel for p in profiles])
    for k in range(4):
        table[f"zero{k}"] = np.array([k in p.zero for p in profiles])
        table[f"zero{k}_pp"] = np.array([k in p.zero_with_pp for p in profiles])
    return table


_SUPPORT = _support_table()
_LACKS = {key: ~_SUPPORT[key] for key in (*_AXES, "sequence_parallel")}
# [framework, pp > 1, zero level]: the framework runs that ZeRO level
_ZERO_OK = np.stack(
    [
        np.stack([_SUPPORT[f"zero{k}"] for k in range(4)], axis=-1),
        np.stack([_SUPPORT[f"zero{k}_pp"] for k in range(4)], axis=-1),
    ],
    axis=1,
)


_ZERO_UNSUPPORTED = ~_ZERO_OK
_AXIS_LACKS = tuple((axis, _LACKS[axis]) for axis in _AXES)


def _imax(x: object, low: int) -> object:
    """``np.maximum(x, low)`` of integers: Python's ``max`` on a NumPy scalar (the same
    integer, without a ufunc call's machinery), NumPy's on arrays."""
    return max(x, low) if isinstance(x, np.generic) else np.maximum(x, low)  # type: ignore[call-overload]


def _imin(x: object, high: int) -> object:
    """``np.minimum(x, high)`` of integers, as :func:`_imax`."""
    return min(x, high) if isinstance(x, np.generic) else np.minimum(x, high)  # type: ignore[call-overload]


def _index(flag: object) -> object:
    """A boolean as a table index (0 or 1): ``int`` of a NumPy scalar, ``astype(np.intp)``
    of an array."""
    return int(flag) if isinstance(flag, np.generic) else flag.astype(np.intp)  # type: ignore[attr-defined]


def _framework_unsupported(c: Context, b: StrategyBatch) -> np.ndarray:
    f = b.framework
    bad = b.sequence_parallel & (b.tp > 1) & _LACKS["sequence_parallel"][f]
    for axis, lacks in _AXIS_LACKS:
        bad = bad | (getattr(b, axis) > 1) & lacks[f]
    return bad | _ZERO_UNSUPPORTED[f, _index(b.pp > 1), _imin(_imax(b.zero, 0), 3)]


def unsupported_keys(strategy: StrategySpec) -> list[str]:
    """The strategy keys (``key=value``) that ``strategy.framework`` cannot run."""
    sup = framework_profile(strategy.framework).supports
    out = [
        f"{a}={getattr(strategy, a)}"
        for a in _AXES
        if getattr(strategy, a) > 1 and not getattr(sup, a)
    ]
    if strategy.sequence_parallel and strategy.tp > 1 and not sup.sequence_parallel:
        out.append("sequence_parallel=true")
    levels = sup.zero_with_pp if strategy.pp > 1 else sup.zero
    if strategy.zero not in levels:
        out.append(f"zero={strategy.zero}" + (f" with pp={strategy.pp}" if strategy.pp > 1 else ""))
    return out


def _explain_framework(c: Context, s: StrategySpec) -> str:
    sup = framework_profile(s.framework).supports
    return f"framework {s.framework} cannot run {', '.join(unsupported_keys(s))}" + (
        f" ({sup.source})" if sup.source else ""
    )


_ZERO_BUBBLE = SCHEDULES.index(PipelineSchedule.ZERO_BUBBLE)

RULES: tuple[Rule, ...] = (
    Rule(
        "mesh",
        lambda c, b: b.dp * b.tp * b.pp * b.cp != c.system.num_accelerators,
        lambda c, s: (
            f"dp*tp*pp*cp = {s.dp}*{s.tp}*{s.pp}*{s.cp} = "
            f"{s.dp * s.tp * s.pp * s.cp} does not equal "  # type: ignore[operator]
            f"num_accelerators={c.system.num_accelerators}"
        ),
    ),
    Rule(
        "tp-heads",
        lambda c, b: c.model.num_attention_heads % b.tp != 0,
        lambda c, s: f"tp={s.tp} does not divide num_attention_heads={c.model.num_attention_heads}",
    ),
    # Megatron-Core accepts tp that divides the key/value heads or is a multiple of them
    # (transformer_config.py: "num_query_groups must be a multiple or divisor of
    # tensor_model_parallel_size"); with more ranks than heads each rank keeps one
    Rule(
        "tp-kv-heads",
        lambda c, b: (
            c.model.mla is None
            and (c.model.num_kv_heads % b.tp != 0) & (b.tp % c.model.num_kv_heads != 0)
        ),
        lambda c, s: (
            f"tp={s.tp} neither divides nor is a multiple of num_kv_heads={c.model.num_kv_heads}"
        ),
    ),
    Rule(
        # the default pipeline split (parallel/pipeline_split.py) gives every virtual chunk
        # a layer, the embedding or the loss while pp*vpp <= num_layers + 2; an explicit
        # strategy.stage_layers is taken as given
        "pp-layers",
        lambda c, b: b.default_split & (b.pp * b.vpp > c.model.num_layers + 2),
        lambda c, s: (
            f"pp*vpp={s.pp}*{s.vpp}={s.pp * s.vpp} virtual pipeline stages exceed "
            f"num_layers+2={c.model.num_layers + 2} (the layers, the embedding and the loss): "
            "some stage would hold nothing"
        ),
    ),
    Rule(
        "virtual-nodes",
        lambda c, b: (b.virtual_nodes > 0) & (b.virtual_nodes % b.dp != 0),
        lambda c, s: (
            f"virtual_nodes={s.virtual_nodes} is not a multiple of dp={s.dp} "
            "(every data-parallel replica processes the same number of virtual nodes)"
        ),
    ),
    Rule(
        "batch",
        lambda c, b: c.global_batch_size % (b.dp * b.micro_batch_size) != 0,
        lambda c, s: (
            f"dp*micro_batch_size={s.dp}*{s.micro_batch_size} does not divide "
            f"global_batch_size={c.global_batch_size}"
        ),
    ),
    Rule(
        "interleaved-microbatches",
        lambda c, b: (b.vpp > 1) & (_micro_batches(c, b) % b.pp != 0),
        lambda c, s: (
            "the interleaved schedule needs the number of micro-batches "
            f"(global_batch_size/(dp*micro_batch_size)) to be a multiple of pp={s.pp}"
        ),
    ),
    Rule(
        "zero-bubble-vpp",
        lambda c, b: (b.vpp > 1) & (b.schedule == _ZERO_BUBBLE),
        lambda c, s: "the zero-bubble (ZB-H1) schedule is defined for vpp=1",
    ),
    Rule(
        "cp-sequence",
        lambda c, b: (b.cp > 1) & (c.model.seq_len % (2 * b.cp) != 0),
        lambda c, s: (
            f"seq_len={c.model.seq_len} is not divisible by 2*cp={2 * s.cp} "
            "(load-balanced ring attention splits the sequence in 2*cp chunks)"
        ),
    ),
    Rule(
        "sp-sequence",
        lambda c, b: b.sequence_parallel & (c.model.seq_len % (b.tp * b.cp) != 0),
        lambda c, s: (
            f"sequence parallelism needs tp*cp={s.tp * s.cp} to divide seq_len={c.model.seq_len}"
        ),
    ),
    Rule(
        "ep-dense",
        lambda c, b: c.model.moe is None and b.ep > 1,
        lambda c, s: f"ep={s.ep} needs a mixture-of-experts model",
    ),
    Rule(
        "ep-dp",
        lambda c, b: ~folds(b.tp, b.cp, b.dp, b.ep, b.etp),
        lambda c, s: (
            f"ep*expert_tp={s.ep}*{s.etp} does not divide tp*cp*dp={s.tp}*{s.cp}*{s.dp} "
            "(MoE parallel folding: the expert grid expert_tp x ep x expert-dp refolds the "
            "dense tp x cp x dp ranks)"
        ),
    ),
    Rule(
        "etp-sp",
        lambda c, b: (b.etp != b.tp) & (b.tp > 1) & ~b.sequence_parallel,
        lambda c, s: (
            f"expert_tp={s.etp} differs from tp={s.tp} without sequence parallelism "
            "(Megatron-LM needs --sequence-parallel for MoE with tensor parallelism; "
            "the tp ranks would route the same tokens)"
        ),
    ),
    Rule(
        "etp-ffn",
        lambda c, b: c.model.moe is not None and _expert_ffn(c.model) % b.etp != 0,
        lambda c, s: (
            f"expert_tp={s.etp} does not divide the expert hidden size {_expert_ffn(c.model)}"
        ),
    ),
    Rule(
        "shard-degree",
        lambda c, b: (b.shard_degree > 0) & (b.dp * b.cp % _imax(b.shard_degree, 1) != 0),
        lambda c, s: (
            f"shard_degree={s.shard_degree} does not divide the sharding group dp*cp={s.dp}*{s.cp}"
        ),
    ),
    Rule(
        "ep-experts",
        lambda c, b: c.model.moe is not None and c.model.moe.num_experts % b.ep != 0,
        lambda c, s: (
            f"ep={s.ep} does not divide num_experts={c.model.moe.num_experts if c.model.moe else 0}"
        ),
    ),
    Rule(
        "precision",
        _peak_zero,
        lambda c, s: f"{c.system.accelerator.name} has no {s.precision.value} matrix units",
    ),
    # what the framework implements (strategy.framework; specs/data/frameworks/*.yaml)
    Rule("framework", _framework_unsupported, _explain_framework),
)


def structural_violations(ctx: Context, batch: StrategyBatch) -> np.ndarray:
    """Index of the first violated rule per strategy (``-1`` where all hold)."""
    if len(batch) == 1:  # one strategy: the rules after its first violated one need not run
        row = batch.row
        # integer arrays wrap silently on overflow where NumPy scalars would warn
        with np.errstate(over="ignore"):
            for index, rule in enumerate(RULES):
                if rule.violated(ctx, row):  # type: ignore[arg-type]
                    return np.array([index], dtype=np.int64)
        return np.array([-1], dtype=np.int64)
    first = np.full(len(batch), -1, dtype=np.int64)
    for index, rule in enumerate(RULES):
        bad = np.asarray(rule.violated(ctx, batch), dtype=bool)
        if bad.any():
            first[np.broadcast_to(bad, first.shape) & (first < 0)] = index
    return first


def explain(ctx: Context, rule_index: int, strategy: StrategySpec) -> str:
    """One-sentence reason for rule ``rule_index`` failing on ``strategy``."""
    return RULES[rule_index].explain(ctx, strategy)
