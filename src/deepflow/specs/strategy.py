"""Parallelization strategy specs (spec/scenario.md, ``strategy``)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from deepflow.errors import ConfigError
from deepflow.specs.accelerator import Precision
from deepflow.specs.base import MAX_LAYERS, Batch, Degree, Layers, Spec, count
from deepflow.specs.fp8 import DEFAULT_FP8_RECIPE, FP8Recipe
from deepflow.specs.framework import (
    DEFAULT_FRAMEWORK,
    FRAMEWORKS,
    SWITCHES,
    check_framework_name,
    framework_profile,
)


class Recompute(str, Enum):
    """Activation recomputation (Korthikanti et al. 2022, arXiv 2205.05198, sec. 5)."""

    NONE = "none"
    SELECTIVE = "selective"
    FULL = "full"


class RecomputeModule(str, Enum):
    """A submodule that selective recomputation checkpoints: the choices of Megatron-Core's
    ``--recompute-modules`` (``megatron/core/transformer/transformer_config.py``,
    ``recompute_modules``; default ``["core_attn"]``), those that exist in the transformer
    layers deepflow builds.

    * ``core_attn``: the attention core (``attention.py``, ``checkpoint_core_attention``);
    * ``moe_act``: the routed experts' activation function (``moe/experts.py``);
    * ``layernorm``: the input and pre-MLP norms (``transformer_layer.py``,
      ``recompute_input_layernorm`` / ``recompute_pre_mlp_layernorm``);
    * ``mla_up_proj``: the MLA up-projections (``multi_latent_attention.py``);
    * ``mlp``: the dense MLP (dense layers only; ``transformer_layer.py``, ``recompute_mlp``);
    * ``moe``: the whole MoE layer: router, dispatch, experts, combine, shared experts
      (``moe/moe_layer.py``);
    * ``shared_experts``: the shared experts (``moe/shared_experts.py``).

    ``moe_act``, ``layernorm`` and ``mla_up_proj`` discard their *output* after its consumer
    ran and recompute it in backward (``CheckpointWithoutOutput``); the others are ordinary
    checkpoints that keep their *input* and rerun the module in backward.
    """

    CORE_ATTN = "core_attn"
    MOE_ACT = "moe_act"
    LAYERNORM = "layernorm"
    MLA_UP_PROJ = "mla_up_proj"
    MLP = "mlp"
    MOE = "moe"
    SHARED_EXPERTS = "shared_experts"

    @property
    def discards_output(self) -> bool:
        """Output-discarding checkpoint (Megatron-Core ``CheckpointWithoutOutput``)."""
        return self in _DISCARD_OUTPUT


_DISCARD_OUTPUT = frozenset(
    {RecomputeModule.MOE_ACT, RecomputeModule.LAYERNORM, RecomputeModule.MLA_UP_PROJ}
)
DEFAULT_RECOMPUTE_MODULES = (RecomputeModule.CORE_ATTN,)
"""Megatron-Core's default ``recompute_modules`` for ``recompute_granularity=selective``."""


class PipelineSchedule(str, Enum):
    """Pipeline schedules: GPipe (Huang et al. 2019), 1F1B (PipeDream-Flush, Narayanan et al.
    2021), interleaved 1F1B (Narayanan et al. 2021, sec. 2.2.2), zero-bubble ZB-H1
    (Qi et al. 2023, arXiv 2401.10241)."""

    GPIPE = "gpipe"
    ONE_F_ONE_B = "1f1b"
    INTERLEAVED = "interleaved"
    ZERO_BUBBLE = "zero-bubble"


MESH_AXES = ("tp", "cp", "dp", "pp")
STAGE_LAYERS_KEY = "strategy.stage_layers"


def check_stage_layers(
    stage_layers: tuple[int, ...], pp: int, vpp: int, num_layers: int | None = None
) -> None:
    """Raise :class:`~deepflow.errors.ConfigError` (key ``strategy.stage_layers``) unless an
    explicit pipeline split has one entry per stage (``pp``) or per virtual chunk
    (``pp * vpp``) and, when ``num_layers`` is given, its entries add up to it.

    The one check of an explicit split: the strategy spec calls it without the model, the
    scenario with it, and :func:`deepflow.parallel.pipeline_split.pipeline_split` too.
    """
    n = len(stage_layers)
    if n not in (pp, pp * vpp):
        need = f"{pp} entries (pp={pp}, one per stage)"
        if vpp > 1:
            need += f" or {pp * vpp} (pp*vpp={pp}*{vpp}, one per virtual chunk)"
        raise ConfigError(f"needs {need}, got {n}: {list(stage_layers)}", STAGE_LAYERS_KEY)
    if any(x < 0 for x in stage_layers):
        raise ConfigError(
            f"entries must be non-negative layer counts, got {list(stage_layers)}",
            STAGE_LAYERS_KEY,
        )
    total = sum(stage_layers)
    if num_layers is not None and total != num_layers:
        raise ConfigError(
            f"entries must add up to num_layers={num_layers}, "
            f"but {list(stage_layers)} adds up to {total}",
            STAGE_LAYERS_KEY,
        )


FOLD_RULE = (
    "ep*expert_tp must divide tp*cp*dp (Megatron-Core MoE parallel folding: "
    "expert_tp x ep x expert-dp = tp x cp x dp ranks per pipeline stage)"
)


def folds(tp: object, cp: object, dp: object, ep: object, etp: object) -> np.ndarray:
    """True where the expert grid ``etp x ep x edp`` fits the ``tp x cp x dp`` ranks.

    The degrees are NumPy arrays, NumPy scalars (a strategy's row, at scalar cost) or
    Python integers (exact); ``%`` on NumPy operands is ``np.mod``."""
    return tp * cp * dp % (ep * etp) == 0  # type: ignore[operator]


class StrategySpec(Spec):
    """How one training step is parallelized.

    Mesh axes are ``tp`` x ``cp`` x ``dp`` x ``pp`` = accelerators. The MoE layers have
    their own grid over the same ranks (Megatron-Core's MoE parallel folding,
    ``megatron/core/parallel_state.py``, ``initialize_model_parallel``: the expert rank
    generator ``RankGenerator(tp=expert_tensor_parallel_size, ep=expert_model_parallel_size,
    dp=expert_data_parallel_size, pp=pp)``): ``expert_tp`` (ETP) x ``ep`` x EDP x ``pp`` =
    accelerators, so ``ep * expert_tp`` divides ``tp * cp * dp`` and the expert-data-parallel
    degree is ``tp * cp * dp / (ep * expert_tp)``. ``expert_tp`` unset means ``tp``
    (``if expert_tensor_parallel_size is None: expert_tensor_parallel_size =
    tensor_model_parallel_size`` there); :mod:`deepflow.parallel.experts` places the groups.
    ``axis_order`` places the axes on the network hierarchy, innermost
    (fastest-varying rank index) first. ``fp32_main_grads`` keeps gradients in fp32 buffers
    into which every micro-batch accumulates (Megatron-LM's ``main_grad``); otherwise they
    stay in the parameter precision.

    ``fused_epilogues`` says how the framework's kernels treat biases and norm weights. True
    (Transformer Engine; cuBLASLt epilogues): a linear layer's bias is added, and its
    gradient reduced, inside the GEMM's epilogue, and a norm's backward computes the input
    and the weight gradients in one pass. False (eager kernels, as in Megatron-LM up to 2022
    and Megatron-DeepSpeed): a bias that no fused element-wise kernel takes adds a separate
    read-write pass over the GEMM's output, every bias gradient is a separate reduction
    over the output gradient, and a norm's weight gradient reads the output gradient and
    the input a second time (apex ``FusedLayerNorm``).

    ``framework`` names the implementation profile (:mod:`deepflow.specs.framework`,
    ``specs/data/frameworks/<name>.yaml``): the kernels each element-wise operator launches,
    what it saves for backward, the loss, and what the framework can run. The profile sets
    the default of ``flash_attention``, ``fused_epilogues``, ``fp32_main_grads``,
    ``overlap_grad_reduce`` and ``overlap_param_gather``; a value given in the scenario
    overrides it.

    ``virtual_nodes`` (VirtualFlow, Or et al. 2022, arXiv 2009.09523) splits the global batch
    into V virtual nodes of ``global_batch_size / V`` sequences, processed in turn by each
    data-parallel replica (``V / dp`` each) with gradients accumulated: the job keeps its
    batch semantics on any number of accelerators. It sets the micro-batch size, so the two
    are not given together.

    ``zero`` shards state over the data-parallel and context-parallel ranks (Rajbhandari et
    al. 2020): 1 the optimizer state (Megatron's distributed optimizer), 2 the gradients
    too, 3 the parameters too (PyTorch FSDP FULL_SHARD, DeepSpeed ZeRO-3, Megatron-FSDP).
    ``shard_degree`` shards over groups of that many ranks and replicates across them
    (hybrid sharding, HSDP); by default the whole ``dp x cp`` group is one shard group.
    ``reshard_after_forward`` (ZeRO-3) frees the gathered parameters after each unit's
    forward and gathers them again for its backward (FSDP FULL_SHARD); false keeps them
    until the backward (FSDP SHARD_GRAD_OP). :mod:`deepflow.parallel.sharding` holds the
    formulas.

    ``recompute`` chooses activation recomputation (Korthikanti et al. 2022, sec. 5;
    Megatron-Core's ``recompute_granularity``). With ``selective``, ``recompute_modules``
    lists the checkpointed submodules (:class:`RecomputeModule`, Megatron's
    ``--recompute-modules``; default ``[core_attn]``). With ``full``, ``recompute_layers``
    recomputes only the first that many layers of each pipeline model chunk and keeps all
    activations of the others (Megatron's ``--recompute-method block
    --recompute-num-layers``; ``megatron/core/recompute.py``); unset, every layer.

    ``collective_algorithms`` names, per mesh axis, an MSCCL-IR XML file whose algorithm
    replaces ``collective_algorithm`` for that axis's collectives (``{tp: ring_8.xml}``). The
    paths are kept as written; relative ones are resolved against the scenario file's folder
    by whoever loads the XML (the command line), since specs parse no XML.

    ``stage_layers`` places the transformer layers on the pipeline explicitly: ``pp``
    entries (layers per stage; with ``vpp > 1`` each stage's layers are spread over its
    chunks as evenly as possible) or ``pp * vpp`` entries (layers per virtual chunk, chunk
    ``c`` on stage ``c mod pp``), in model order, adding up to ``num_layers``. Without it
    the split is the default rule of :mod:`deepflow.parallel.pipeline_split`, for any
    ``pp`` and ``vpp``.
    """

    framework: str = DEFAULT_FRAMEWORK
    dp: Degree | Literal["auto"] = "auto"
    tp: Degree = 1
    pp: Degree = 1
    vpp: Layers = 1
    cp: Degree = 1
    ep: Degree = 1
    expert_tp: Degree | None = None
    sequence_parallel: bool = False
    zero: int = Field(default=0, ge=0, le=3)
    shard_degree: Degree | None = None
    reshard_after_forward: bool = True
    recompute: Recompute = Recompute.NONE
    recompute_modules: tuple[RecomputeModule, ...] | None = None
    recompute_layers: count(MAX_LAYERS, 0) | None = None
    micro_batch_size: Batch = 1
    virtual_nodes: Batch | None = None
    precision: Precision = Precision.BF16
    pipeline_schedule: PipelineSchedule = PipelineSchedule.ONE_F_ONE_B
    flash_attention: bool = True
    overlap_grad_reduce: bool = True
    overlap_param_gather: bool = True
    fp32_main_grads: bool = True
    fused_epilogues: bool = True
    axis_order: tuple[Literal["tp", "cp", "dp", "pp"], ...] = MESH_AXES
    collective_algorithm: Literal["ring", "tree", "auto"] = "ring"
    collective_algorithms: dict[Literal["tp", "dp", "cp", "ep", "pp"], str] | None = None
    stage_layers: tuple[count(MAX_LAYERS, 0), ...] | None = None
    # FP8 training (deepflow.specs.fp8): the scaling recipe under precision fp8 (unset:
    # Megatron-LM's default, delayed) and FP8 primary weights gathered in FP8 (Megatron-LM
    # --fp8-param-gather: pretrain_gpt.py model_provider builds the model under TE's
    # fp8_model_init, so no 16-bit weight copy exists)
    fp8_recipe: FP8Recipe | None = None
    fp8_param_gather: bool = False
    # MoE token dispatcher: an NCCL all-to-all of the permuted tokens (Megatron-Core
    # --moe-token-dispatcher-type alltoall, MoEAlltoAllTokenDispatcher) or DeepEP's fused
    # dispatch/combine kernels (--moe-token-dispatcher-type flex --moe-enable-deepep,
    # MoEFlexTokenDispatcher with the DeepEP backend; megatron/core/transformer/moe/
    # token_dispatcher.py), costed by deepflow.network.deepep
    moe_dispatcher: Literal["alltoall", "deepep"] = "alltoall"

    @model_validator(mode="before")
    @classmethod
    def _framework_defaults(cls, data: object) -> object:
        """Fill the switches the scenario leaves out from the framework profile."""
        if not isinstance(data, dict):
            return data
        name = data.get("framework", DEFAULT_FRAMEWORK)
        if not isinstance(name, str) or name not in FRAMEWORKS:
            return data  # the field validator reports it
        profile = framework_profile(name)
        filled = dict(data)
        for switch in SWITCHES:
            value = profile.default(switch)
            if switch not in filled and value is not None:
                filled[switch] = value
        return filled

    @field_validator("framework")
    @classmethod
    def _known_framework(cls, value: str) -> str:
        try:
            return check_framework_name(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    @field_validator("collective_algorithms")
    @classmethod
    def _xml_paths(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for axis, path in (value or {}).items():
            if not path.strip().lower().endswith(".xml"):
                raise ValueError(f"{axis}: {path!r} is not an MSCCL-IR file (expected *.xml)")
        return value

    @model_validator(mode="after")
    def _fp8_needs_precision(self) -> StrategySpec:
        if self.precision is Precision.FP8:
            return self
        given = {"fp8_recipe": self.fp8_recipe, "fp8_param_gather": self.fp8_param_gather}
        for key, value in given.items():
            if value not in (None, False):
                shown = value.value if isinstance(value, FP8Recipe) else value
                raise ConfigError(
                    f"{key}={shown} needs precision: fp8 (precision is {self.precision.value!r})",
                    f"strategy.{key}",
                )
        return self

    @property
    def effective_fp8_recipe(self) -> FP8Recipe | None:
        """The FP8 recipe in use: ``fp8_recipe`` or :data:`DEFAULT_FP8_RECIPE` under
        ``precision: fp8``; ``None`` at any other precision."""
        if self.precision is not Precision.FP8:
            return None
        return self.fp8_recipe or DEFAULT_FP8_RECIPE

    @model_validator(mode="after")
    def _stage_layers_length(self) -> StrategySpec:
        if self.stage_layers is not None:
            check_stage_layers(self.stage_layers, self.pp, self.vpp)
        return self

    @field_validator("recompute_modules")
    @classmethod
    def _modules_need_selective(
        cls, value: tuple[RecomputeModule, ...] | None, info: ValidationInfo
    ) -> tuple[RecomputeModule, ...] | None:
        mode = info.data.get("recompute")
        if value is not None and mode is not Recompute.SELECTIVE:
            shown = mode.value if isinstance(mode, Recompute) else mode
            raise ValueError(
                f"recompute_modules needs recompute: selective (recompute is {shown!r})"
            )
        return None if value is None else tuple(dict.fromkeys(value))

    @field_validator("recompute_layers")
    @classmethod
    def _layers_need_full(cls, value: int | None, info: ValidationInfo) -> int | None:
        mode = info.data.get("recompute")
        if value is not None and mode is not Recompute.FULL:
            shown = mode.value if isinstance(mode, Recompute) else mode
            raise ValueError(f"recompute_layers needs recompute: full (recompute is {shown!r})")
        return value

    @property
    def effective_recompute_modules(self) -> tuple[RecomputeModule, ...]:
        """The modules selective recomputation checkpoints: ``recompute_modules``, or
        Megatron-Core's default ``(core_attn,)``; empty unless ``recompute`` is selective."""
        if self.recompute is not Recompute.SELECTIVE:
            return ()
        if self.recompute_modules is None:
            return DEFAULT_RECOMPUTE_MODULES
        return self.recompute_modules

    @property
    def schedule(self) -> PipelineSchedule:
        """The effective schedule: ``vpp > 1`` means interleaved 1F1B."""
        if self.vpp > 1 and self.pipeline_schedule is PipelineSchedule.ONE_F_ONE_B:
            return PipelineSchedule.INTERLEAVED
        return self.pipeline_schedule

    @property
    def etp(self) -> int:
        """The expert tensor-parallel degree: ``expert_tp``, or ``tp`` when unset
        (Megatron-Core ``parallel_state.initialize_model_parallel``)."""
        return self.tp if self.expert_tp is None else self.expert_tp

    @property
    def model_parallel_size(self) -> int:
        return self.tp * self.pp * self.cp

    def __str__(self) -> str:
        """The compact form every report prints (:func:`strategy_text`), never the
        Python reprs of the enum fields."""
        return strategy_text(
            {**self.model_dump(mode="json"), "pipeline_schedule": self.schedule.value}
        )


def strategy_text(s: Mapping[str, Any]) -> str:
    """A strategy in one compact line, ``dp32 tp4 pp8 vpp12 sp zero2 mbs3 interleaved``,
    from its JSON form (``StrategySpec.model_dump(mode="json")`` or a search result's
    ``strategy``): degrees above 1, switches that are on, the FP8 recipe where one is set,
    the recompute policy unless ``none``, the micro-batch size and, with a pipeline, the
    schedule."""
    parts = [f"dp{s['dp']}", f"tp{s['tp']}", f"pp{s['pp']}"]
    parts += [f"{k}{s[k]}" for k in ("vpp", "cp", "ep") if s.get(k, 1) > 1]
    if s.get("expert_tp") is not None and s["expert_tp"] != s["tp"]:
        parts.append(f"etp{s['expert_tp']}")
    if s.get("moe_dispatcher", "alltoall") != "alltoall":
        parts.append(str(s["moe_dispatcher"]))
    if s.get("fp8_recipe"):
        parts.append(f"fp8-{s['fp8_recipe']}")
    if s.get("sequence_parallel"):
        parts.append("sp")
    if s.get("zero"):
        parts.append(f"zero{s['zero']}")
    if s.get("recompute", "none") != "none":
        parts.append(f"rc-{s['recompute']}")
    if s.get("recompute_modules"):
        parts.append("+".join(s["recompute_modules"]))
    if s.get("recompute_layers") is not None:
        parts.append(f"rc-layers{s['recompute_layers']}")
    parts.append(f"mbs{s['micro_batch_size']}")
    if s["pp"] > 1:
        parts.append(str(s["pipeline_schedule"]))
    return " ".join(parts)
