"""Selective recomputation of a layer's modules, computed from the operator inventory.

Megatron-Core's ``--recompute-granularity selective --recompute-modules ...``
(``megatron/core/transformer/transformer_config.py``, ``recompute_modules``) checkpoints
chosen submodules of every layer in one of two ways:

* an ordinary checkpoint (``tensor_parallel.checkpoint``: ``core_attn``, ``mlp``, ``moe``,
  ``shared_experts``) keeps the module's *input* and none of the tensors its operators save
  for backward; the backward pass reruns the module's forward first. What is dropped: every
  saved tensor of an op inside the module that was made inside the module (by another op
  of the module or by the op itself). An op whose saved tensor comes from outside (the
  module's input) keeps it: that is the checkpoint's input.
* an output-discarding checkpoint (``tensor_parallel.CheckpointWithoutOutput``: ``layernorm``,
  ``moe_act``, ``mla_up_proj``) frees the module's *output* once its consumers have run and
  recomputes it in backward (its input is kept by the module's own ops). What is dropped:
  the tensors saved by ops outside the module whose saved tensor is the module's output.

Both follow from two facts per operator, recorded by the layer templates
(:mod:`deepflow.workload.transformer`): the modules it belongs to and the op whose output
it saves (``source``). This generalizes Korthikanti et al. 2022 (arXiv 2205.05198), sec. 5,
whose "selective recomputation" is ``core_attn`` on an unfused attention core: it drops the
``5 a s^2 b`` score, softmax and dropout-mask bytes and keeps Q, K, V (Table 2).

Several modules combine by union: an op is recomputed when any chosen module reruns it, a
saved tensor is dropped when any chosen module drops it (a module inside another, such as
``moe_act`` inside ``moe``, is rerun once).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from deepflow.specs.strategy import RecomputeModule
from deepflow.workload.operators import LayerTemplate

MODULES = tuple(RecomputeModule)
"""Bit ``i`` of a module mask stands for ``MODULES[i]``."""


def module_mask(modules: Iterable[RecomputeModule | str]) -> int:
    """The bitmask of ``modules``, enums or names (bit ``i`` = ``MODULES[i]``)."""
    mask = 0
    for module in modules:
        mask |= 1 << MODULES.index(RecomputeModule(module))
    return mask


def mask_modules(mask: int) -> tuple[RecomputeModule, ...]:
    """The modules of bitmask ``mask``, in :data:`MODULES` order."""
    return tuple(m for i, m in enumerate(MODULES) if mask >> i & 1)


@dataclass(frozen=True)
class CheckpointPlan:
    """What checkpointing a set of modules does to one layer. Per op of ``layer.ops``:
    ``recomputed`` (its forward reruns in backward) and ``dropped`` (its saved tensor is not
    kept); for the attention core: whether it reruns, whether its internal saved tensors
    (scores, softmax and dropout mask, or flash attention's log-sum-exp) and whether Q, K, V
    are dropped."""

    recomputed: tuple[bool, ...]
    dropped: tuple[bool, ...]
    core_recomputed: bool
    core_internal_dropped: bool
    core_qkv_dropped: bool


CORE = "core_attn"
"""The attention core's name as a ``source`` (the output projection saves its output)."""


def _single(layer: LayerTemplate, module: RecomputeModule) -> CheckpointPlan:
    ops = layer.ops
    inside = [module in op.modules for op in ops]
    core_inside = module is RecomputeModule.CORE_ATTN
    names = {op.name for op, i in zip(ops, inside, strict=True) if i}
    if core_inside:
        names.add(CORE)
    if module.discards_output:
        dropped = [not i and op.source in names for op, i in zip(ops, inside, strict=True)]
        return CheckpointPlan(
            recomputed=tuple(inside),
            dropped=tuple(dropped),
            core_recomputed=False,
            core_internal_dropped=False,
            core_qkv_dropped=layer.attention.source in names,
        )
    dropped = [
        i and (op.source in names or op.source == op.name)
        for op, i in zip(ops, inside, strict=True)
    ]
    return CheckpointPlan(
        recomputed=tuple(inside),
        dropped=tuple(dropped),
        core_recomputed=core_inside,
        core_internal_dropped=core_inside,
        core_qkv_dropped=core_inside and layer.attention.source in names,
    )


@cache
def checkpoint_plan(layer: LayerTemplate, modules: tuple[RecomputeModule, ...]) -> CheckpointPlan:
    """The union of the plans of each of ``modules`` on ``layer``."""
    n = len(layer.ops)
    plans = [_single(layer, m) for m in modules]
    return CheckpointPlan(
        recomputed=tuple(any(p.recomputed[i] for p in plans) for i in range(n)),
        dropped=tuple(any(p.dropped[i] for p in plans) for i in range(n)),
        core_recomputed=any(p.core_recomputed for p in plans),
        core_internal_dropped=any(p.core_internal_dropped for p in plans),
        core_qkv_dropped=any(p.core_qkv_dropped for p in plans),
    )


@dataclass(frozen=True)
class ModuleMasks:
    """Per op of ``layer.ops``, the bitmask of the modules that rerun it (``recomputed``)
    and of those that drop its saved tensor (``dropped``); the same for the attention core.
    A strategy with module mask ``s`` reruns op ``i`` when ``s & recomputed[i]``: the
    vectorized form of :func:`checkpoint_plan`."""

    recomputed: tuple[int, ...]
    dropped: tuple[int, ...]
    core_recomputed: int
    core_internal_dropped: int
    core_qkv_dropped: int


@cache
def module_masks(layer: LayerTemplate) -> ModuleMasks:
    """The :class:`ModuleMasks` of ``layer``."""
    n = len(layer.ops)
    rec, drop = [0] * n, [0] * n
    core = [0, 0, 0]
    for bit, module in enumerate(MODULES):
        plan = _single(layer, module)
        for i in range(n):
            rec[i] |= plan.recomputed[i] << bit
            drop[i] |= plan.dropped[i] << bit
        core[0] |= plan.core_recomputed << bit
        core[1] |= plan.core_internal_dropped << bit
        core[2] |= plan.core_qkv_dropped << bit
    return ModuleMasks(tuple(rec), tuple(drop), *core)
