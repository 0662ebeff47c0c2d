"""Decoder-only transformer workloads: layer templates, parameter and FLOP counts.

One layer (pre-norm GPT/Llama block; Radford et al. 2019, Touvron et al. 2023):

    x -> norm -> QKV -> attention core -> output proj -> dropout + residual
      -> norm -> MLP (GeLU: up, gelu, down | SwiGLU: gate+up, silu*mul, down | MoE)
      -> dropout + residual

MLA (DeepSeek-V2, arXiv 2405.04434, eqs. 9-18) replaces QKV with low-rank down and up
projections; MoE (DeepSeek-V3, arXiv 2412.19437, sec. 2.1.2) replaces the MLP with a router,
``top_k`` routed experts and optional shared experts.

The element-wise operators are Megatron's fused kernels; a framework profile
(:mod:`deepflow.specs.framework`, ``strategy.framework``) replaces the norms, residual adds,
activations and the rotary embedding with the kernels that framework launches
(:func:`with_impl`), and adds the rotary embedding of models without learned position
embeddings where the profile describes it.

Every op carries the Megatron-Core recompute modules it belongs to and the op whose output
it saves (:class:`~deepflow.workload.operators.Gemm`), as Megatron-Core's layer builds them:
the two norms are ``layernorm`` (``transformer_layer.py``: ``input_layernorm``,
``pre_mlp_layernorm``), the attention core ``core_attn``, MLA's query and key/value
up-projections with RoPE ``mla_up_proj`` (``multi_latent_attention.py``,
``qkv_up_proj_and_rope_apply``), a dense layer's MLP ``mlp``, everything of an MoE layer
after its norm ``moe`` (``moe/moe_layer.py``), the routed experts' activation also
``moe_act`` (``moe/experts.py``) and the shared experts also ``shared_experts``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache, lru_cache

from deepflow.specs.framework import DEFAULT_FRAMEWORK, OperatorImpl, framework_profile
from deepflow.specs.model import FfnType, ModelSpec
from deepflow.specs.strategy import RecomputeModule
from deepflow.workload.operators import (
    AttentionCore,
    Bias,
    Elementwise,
    Gemm,
    LayerTemplate,
    Scope,
    Shard,
    Traffic,
)

LAYERNORM = (RecomputeModule.LAYERNORM,)
MLA_UP = (RecomputeModule.MLA_UP_PROJ,)
MOE = RecomputeModule.MOE

# extra backward passes of a norm whose weight gradient is its own kernel: read the output
# gradient and the input again (apex FusedLayerNorm, cuComputePartGradGammaBeta)
NORM_WEIGHT_GRAD_PASSES = 2.0


def _norm(name: str, h: int, rms: bool, source: str = "") -> Elementwise:
    # LayerNorm saves its input for backward (Korthikanti et al. 2022, Table 2: 2sbh each);
    # the input is the residual stream, made outside the layer's ops
    return Elementwise(
        name,
        h,
        Shard.SEQUENCE,
        passes=2,
        backward_passes=3,
        saved=h,
        params=h if rms else 2 * h,
        weight_grad_passes=NORM_WEIGHT_GRAD_PASSES,
        modules=LAYERNORM,
        source=source,
    )


def _dropout_residual(name: str, h: int) -> Elementwise:
    # dropout + residual add (fused): read x and residual, write y; mask of 1 byte/value,
    # made by the op itself
    return Elementwise(
        name,
        h,
        Shard.SEQUENCE,
        passes=3,
        backward_passes=3,
        saved=h,
        saved_bytes=1,
        source=name,
    )


def _traffic(impl: OperatorImpl, forward: bool) -> Traffic:
    total = impl.forward_values() if forward else impl.backward_values()
    plain = impl.forward_values(True) if forward else impl.backward_values(True)
    return Traffic(
        act=plain[0],
        fp32=plain[1],
        kernels=plain[2],
        cast_act=total[0] - plain[0],
        cast_fp32=total[1] - plain[1],
        cast_kernels=total[2] - plain[2],
    )


def with_impl(op: Elementwise, impl: OperatorImpl | None) -> Elementwise:
    """``op`` run by a framework's kernels: ``impl``'s forward and backward traffic and
    saved tensors per element of the op's width replace the template's fused kernel (whose
    weight gradient ``impl`` includes); ``op`` itself when ``impl`` is None."""
    if impl is None:
        return op
    return replace(
        op,
        forward_traffic=_traffic(impl, True),
        backward_traffic=_traffic(impl, False),
        kernels=impl.forward_values()[2],
        saved=impl.saved_act * op.elements,
        saved_bytes=0,
        saved_fp32=impl.saved_fp32 * op.elements,
        saved_mask=impl.saved_mask * op.elements,
        weight_grad_passes=0.0,
        impl=impl.source,
    )


def _gpt_style(model: ModelSpec) -> bool:
    # the template's convention: SwiGLU models are Llama-style (RMSNorm, no biases), the
    # others GPT-style (LayerNorm, biased linear layers)
    return model.ffn_type is not FfnType.SWIGLU


def final_norm(model: ModelSpec, framework: str = DEFAULT_FRAMEWORK) -> Elementwise:
    """The norm after the last layer, before the LM head (on the last pipeline stage)."""
    norm = _norm("final_norm", model.hidden_size, model.ffn_type is FfnType.SWIGLU)
    norm = with_impl(norm, framework_profile(framework).family(_gpt_style(model))["norm"])
    return replace(norm, modules=())  # not part of any layer's recompute modules


def rope_op(model: ModelSpec, framework: str = DEFAULT_FRAMEWORK) -> Elementwise | None:
    """The rotary position embedding (Su et al. 2021, arXiv 2104.09864) on the queries and
    keys of one layer, as ``framework`` runs it; None for models with learned position
    embeddings, MLA (its RoPE is part of the up-projections) or a profile without one."""
    impl = framework_profile(framework).rope
    if impl is None or model.learned_position_embeddings or model.mla is not None:
        return None
    width = (model.num_attention_heads + model.num_kv_heads) * model.head_dim
    op = Elementwise("rope", width, Shard.TENSOR, saved=0.0, source="qkv")
    return with_impl(op, impl)


def qkv_split_op(model: ModelSpec, framework: str = DEFAULT_FRAMEWORK) -> Elementwise | None:
    """The work between a fused QKV projection's output and the attention kernel, per
    element of the key and value width, as ``framework`` runs it for the model's family
    (:meth:`~deepflow.specs.framework.FrameworkProfile.family`): e.g. the contiguous key
    and value copies PyTorch's attention makes of the strided slices of GPT-2's ``c_attn``
    output. None where the profile describes none or a rotary embedding makes new query
    and key tensors (:func:`rope_op`)."""
    impl = framework_profile(framework).family(_gpt_style(model))["qkv_split"]
    if impl is None or model.mla is not None or rope_op(model, framework) is not None:
        return None
    width = 2 * model.num_kv_heads * model.head_dim
    op = Elementwise("qkv_split", width, Shard.TENSOR, saved=0.0, source="qkv")
    return with_impl(op, impl)


def _attention_ops(model: ModelSpec) -> tuple[tuple[Gemm | Elementwise, ...], AttentionCore, Gemm]:
    h, a, kv, d = model.hidden_size, model.num_attention_heads, model.num_kv_heads, model.head_dim
    bias = model.ffn_type is not FfnType.SWIGLU  # GPT-style blocks carry biases; Llama's do not
    rms = model.ffn_type is FfnType.SWIGLU
    ops: list[Gemm | Elementwise] = [_norm("attn_norm", h, rms)]
    if model.mla is not None:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            ops += [
                Gemm(
                    "q_down",
                    h,
                    m.q_lora_rank,
                    Shard.REPLICATED,
                    h * m.q_lora_rank,
                    source="attn_norm",
                ),
                Elementwise(
                    "q_norm",
                    m.q_lora_rank,
                    Shard.SEQUENCE,
                    saved=m.q_lora_rank,
                    params=m.q_lora_rank,
                    weight_grad_passes=NORM_WEIGHT_GRAD_PASSES,
                    source="q_down",
                ),
                Gemm(
                    "q_up",
                    m.q_lora_rank,
                    a * qk,
                    Shard.COLUMN,
                    m.q_lora_rank * a * qk,
                    modules=MLA_UP,
                    source="q_norm",
                ),
            ]
        else:
            ops.append(
                Gemm(
                    "q_proj",
                    h,
                    a * qk,
                    Shard.COLUMN,
                    h * a * qk,
                    modules=MLA_UP,
                    source="attn_norm",
                )
            )
        ops += [
            Gemm(
                "kv_down",
                h,
                m.kv_lora_rank + m.qk_rope_head_dim,
                Shard.REPLICATED,
                h * (m.kv_lora_rank + m.qk_rope_head_dim),
                source="attn_norm",
            ),
            Elementwise(
                "kv_norm",
                m.kv_lora_rank,
                Shard.SEQUENCE,
                saved=m.kv_lora_rank,
                params=m.kv_lora_rank,
                weight_grad_passes=NORM_WEIGHT_GRAD_PASSES,
                source="kv_down",
            ),
            Gemm(
                "kv_up",
                m.kv_lora_rank,
                a * (m.qk_nope_head_dim + m.v_head_dim),
                Shard.COLUMN,
                m.kv_lora_rank * a * (m.qk_nope_head_dim + m.v_head_dim),
                modules=MLA_UP,
                source="kv_norm",
            ),
        ]
        core = AttentionCore(a, a, qk, m.v_head_dim, source="kv_up")
        out = Gemm(
            "attn_out", a * m.v_head_dim, h, Shard.ROW, a * m.v_head_dim * h, source="core_attn"
        )
    else:
        qkv = (a + 2 * kv) * d
        # Megatron-LM: the QKV projection adds its own bias; the output projection's bias
        # goes to the fused bias-dropout-add (skip_bias_add)
        ops.append(
            Gemm(
                "qkv",
                h,
                qkv,
                Shard.COLUMN,
                h * qkv + (qkv if bias else 0),
                bias=Bias.OWN if bias else Bias.NONE,
                source="attn_norm",
            )
        )
        core = AttentionCore(a, kv, d, d, source="qkv")
        out = Gemm(
            "attn_out",
            a * d,
            h,
            Shard.ROW,
            a * d * h + (h if bias else 0),
            bias=Bias.NEXT if bias else Bias.NONE,
            source="core_attn",
        )
    return tuple(ops), core, out


def _routing_ops(experts: int, top_k: int, h: int, side: str) -> tuple[Elementwise, ...]:
    """The memory-bound kernels of routing, per token, as Megatron-Core runs them with
    ``--moe-permute-fusion`` and ``--moe-router-fusion`` (Transformer Engine's fused
    ``moe_permute``/``moe_unpermute`` and ``fused_topk_with_score_function``; the
    all-to-all dispatcher ``moe/token_dispatcher.py``, ``MoEAlltoAllTokenDispatcher``).

    ``dispatch``: the router's score function and top-k over the fp32 logits (read the
    logits, write the scores, read them for the top-k; the scores are saved for backward,
    ``moe/router.py``, ``TopKRouter.routing``); the permutation of the rank's tokens into
    ``top_k`` expert-ordered copies (``moe_utils.permute``: read ``h``, write ``top_k h``
    per token, an int32 row map saved); after the all-to-all, the sort of the received
    chunks by local expert (``sort_chunks_by_idxs``: read and write ``top_k h`` per routed
    token, expert scope). ``combine``: the sort back, and the unpermutation that sums each
    token's ``top_k`` expert outputs weighted by their probabilities (``moe_utils.unpermute``:
    read ``top_k h``, write ``h``; it saves the expert outputs for the probabilities'
    gradient). Backward moves the same bytes the other way (the unpermutation's backward
    also writes the ``top_k h`` gradient of its saved input). Recomputed with ``moe``."""
    moe = (MOE,)
    k = float(top_k)
    sort = Elementwise(
        f"{side}_sort",
        h,
        Shard.SEQUENCE,
        passes=2,
        backward_passes=2,
        scope=Scope.EXPERT,
        tokens_factor=k,
        modules=moe,
        source=f"{side}_sort",
    )
    if side == "dispatch":
        topk = Elementwise(
            "router_topk",
            experts,
            Shard.SEQUENCE,
            forward_traffic=Traffic(0.0, 3.0, 1),
            backward_traffic=Traffic(0.0, 3.0, 1),
            saved_fp32=float(experts),
            modules=moe,
            source="router_topk",
        )
        permute = Elementwise(
            "permute",
            h,
            Shard.SEQUENCE,
            forward_traffic=Traffic(1.0 + k, 0.0, 2),
            backward_traffic=Traffic(1.0 + k, 0.0, 1),
            saved_fp32=k,
            modules=moe,
            source="permute",
        )
        return topk, permute, sort
    unpermute = Elementwise(
        "unpermute",
        h,
        Shard.SEQUENCE,
        forward_traffic=Traffic(1.0 + k, 0.0, 1),
        backward_traffic=Traffic(1.0 + 2.0 * k, 0.0, 1),
        saved=k * h,
        modules=moe,
        source="combine_sort",
    )
    return sort, unpermute


def _mlp_ops(
    name: str,
    h: int,
    f: int,
    ffn: FfnType,
    *,
    bias: bool,
    scope: Scope = Scope.TOKEN,
    tokens_factor: float = 1.0,
    groups: int = 1,
    modules: tuple[RecomputeModule, ...] = (),
    act_modules: tuple[RecomputeModule, ...] = (),
    source: str = "mlp_norm",
) -> tuple[Gemm | Elementwise, ...]:
    up = 2 * f if ffn is FfnType.SWIGLU else f
    # activation: GeLU reads f, writes f (saves its input f); SwiGLU reads 2f, writes f
    # (saves both inputs, 2f)
    act = Elementwise(
        f"{name}_act",
        f,
        Shard.TENSOR,
        passes=3 if ffn is FfnType.SWIGLU else 2,
        backward_passes=5 if ffn is FfnType.SWIGLU else 3,
        saved=up,
        scope=scope,
        tokens_factor=tokens_factor,
        modules=modules + act_modules,
        source=f"{name}_up",
    )
    return (
        Gemm(
            f"{name}_up",
            h,
            up,
            Shard.COLUMN,
            groups * (h * up + (up if bias else 0)),
            scope=scope,
            tokens_factor=tokens_factor,
            groups=groups,
            bias=Bias.NEXT if bias else Bias.NONE,  # bias-GeLU takes it (skip_bias_add)
            modules=modules,
            source=source,
        ),
        act,
        Gemm(
            f"{name}_down",
            f,
            h,
            Shard.ROW,
            groups * (f * h + (h if bias else 0)),
            scope=scope,
            tokens_factor=tokens_factor,
            groups=groups,
            bias=Bias.NEXT if bias else Bias.NONE,  # bias-dropout-add takes it
            modules=modules,
            source=f"{name}_act",
        ),
    )


def layer_template(
    model: ModelSpec, moe: bool, framework: str = DEFAULT_FRAMEWORK
) -> LayerTemplate:
    """The operators of one dense (``moe=False``) or mixture-of-experts layer of ``model``,
    with the element-wise kernels of ``framework`` (:func:`with_impl`)."""
    return _framework_template(model, moe, framework)


@cache
def _framework_template(model: ModelSpec, moe: bool, framework: str) -> LayerTemplate:
    base = _layer_template(model, moe)
    profile = framework_profile(framework)
    act = profile.swiglu if model.ffn_type is FfnType.SWIGLU else profile.gelu
    family = profile.family(_gpt_style(model))
    impls = {
        "attn_norm": family["norm"],
        "mlp_norm": family["mlp_norm"],
        "attn_residual": family["residual"],
        "mlp_residual": family["residual"],
        "mlp_act": act,
        "expert_act": act,
        "shared_expert_act": act,
    }

    splits: dict[str, tuple[int, ...]] = {}
    if profile.projections_separate(_gpt_style(model)) and model.mla is None:
        d = model.head_dim
        kv = model.num_kv_heads * d
        splits["qkv"] = (model.num_attention_heads * d, kv, kv)
        if model.ffn_type is FfnType.SWIGLU:
            splits["mlp_up"] = (model.ffn_hidden_size, model.ffn_hidden_size)

    def convert(ops: tuple[Gemm | Elementwise, ...]) -> tuple[Gemm | Elementwise, ...]:
        out: list[Gemm | Elementwise] = []
        for op in ops:
            if isinstance(op, Elementwise):
                op = with_impl(op, impls.get(op.name))
            elif op.name in splits and sum(splits[op.name]) == op.n:
                op = replace(op, splits=splits[op.name])
            out.append(op)
            if op.name == "qkv":
                for extra in (rope_op(model, framework), qkv_split_op(model, framework)):
                    if extra is not None:
                        out.append(extra)
        return tuple(out)

    return replace(
        base,
        attention_ops=convert(base.attention_ops),
        attention=replace(base.attention, kernel=profile.attention_kernel),
        post_attention_ops=convert(base.post_attention_ops),
        mlp_ops=convert(base.mlp_ops),
        autocast_weights=profile.step is not None and profile.step.autocast_weights,
    )


@cache
def _layer_template(model: ModelSpec, moe: bool) -> LayerTemplate:
    h = model.hidden_size
    rms = model.ffn_type is FfnType.SWIGLU
    bias = not rms
    attn_ops, core, out = _attention_ops(model)
    post = (out, _dropout_residual("attn_residual", h), _norm("mlp_norm", h, rms))
    moe_only = (MOE,)
    if moe and model.moe is not None:
        spec = model.moe
        fe = spec.expert_ffn_hidden_size or model.ffn_hidden_size
        mlp: tuple[Gemm | Elementwise, ...] = (
            # the router is a plain matmul, not a Transformer Engine linear layer: it stays
            # in 16 bits (or fp32) under FP8 (Megatron-Core moe/router.py, TopKRouter.gating
            # -> moe_utils.router_gating_linear)
            Gemm(
                "router",
                h,
                spec.num_experts,
                Shard.REPLICATED,
                h * spec.num_experts,
                modules=moe_only,
                source="mlp_norm",
                low_precision=False,
            ),
            *_routing_ops(spec.num_experts, spec.top_k, h, "dispatch"),
            # routed experts: a rank holds num_experts/ep experts and receives
            # tokens*top_k/ep... per expert; params here are for all experts (ep shards them).
            # Their input is the dispatched tokens, made inside the MoE layer (by routing)
            *_mlp_ops(
                "expert",
                h,
                fe,
                model.ffn_type,
                bias=False,
                scope=Scope.EXPERT,
                tokens_factor=float(spec.top_k),
                groups=spec.num_experts,
                modules=moe_only,
                act_modules=(RecomputeModule.MOE_ACT,),
                source="dispatch_sort",
            ),
            *_routing_ops(spec.num_experts, spec.top_k, h, "combine"),
        )
        if spec.num_shared_experts:
            mlp += _mlp_ops(
                "shared_expert",
                h,
                fe * spec.num_shared_experts,
                model.ffn_type,
                bias=False,
                modules=(MOE, RecomputeModule.SHARED_EXPERTS),
            )
        mlp += (_dropout_residual("mlp_residual", h),)
        return LayerTemplate(
            "moe",
            attn_ops,
            core,
            post,
            mlp,
            moe=True,
            top_k=spec.top_k,
            num_experts=spec.num_experts,
        )
    mlp = (
        *_mlp_ops(
            "mlp",
            h,
            model.ffn_hidden_size,
            model.ffn_type,
            bias=bias,
            modules=(RecomputeModule.MLP,),
        ),
        _dropout_residual("mlp_residual", h),
    )
    return LayerTemplate("dense", attn_ops, core, post, mlp)


@dataclass(frozen=True)
class ParameterCount:
    """Parameters of a model by part (Narayanan et al. 2021, sec. 5.1 for the GPT case:
    P = 12 l h^2 (1 + 13/(12 h) + (V + s)/(12 l h)) with tied embeddings)."""

    embedding: int
    position_embedding: int
    dense_layer: int
    moe_layer: int
    num_dense_layers: int
    num_moe_layers: int
    final_norm: int
    lm_head: int
    expert_params_per_moe_layer: int
    mtp: int = 0  # multi-token-prediction modules (their norms, projection and layer)

    @property
    def total(self) -> int:
        return (
            self.mtp
            + self.embedding
            + self.position_embedding
            + self.final_norm
            + self.lm_head
            + self.dense_layer * self.num_dense_layers
            + self.moe_layer * self.num_moe_layers
        )

    @property
    def active(self) -> int:
        """Parameters touched by one token (routed experts count ``top_k`` of them)."""
        return self.total


@lru_cache(maxsize=256)
def parameter_count(model: ModelSpec) -> ParameterCount:
    """Count the parameters of ``model`` by part (cached per model: specs are frozen)."""
    h, v = model.hidden_size, model.vocab_size
    dense = layer_template(model, moe=False).params
    moe = layer_template(model, moe=True).params if model.moe is not None else 0
    expert = 0
    if model.moe is not None:
        expert = sum(
            op.params
            for op in layer_template(model, True).ops
            if isinstance(op, Gemm) and op.scope is Scope.EXPERT
        )
    n_moe = model.num_moe_layers
    return ParameterCount(
        embedding=v * h,
        position_embedding=model.seq_len * h if model.learned_position_embeddings else 0,
        dense_layer=dense,
        moe_layer=moe,
        num_dense_layers=model.num_layers - n_moe,
        num_moe_layers=n_moe,
        final_norm=h if model.ffn_type is FfnType.SWIGLU else 2 * h,
        lm_head=0 if model.tie_embeddings else v * h,
        expert_params_per_moe_layer=expert,
        mtp=model.mtp_layers * mtp_module_params(model),
    )


def mtp_layer(model: ModelSpec, framework: str = DEFAULT_FRAMEWORK) -> LayerTemplate:
    """The transformer layer of a multi-token-prediction module: an MoE layer in an MoE
    model (DeepSeek-V3's MTP block; Megatron-Core builds it with the decoder's layer spec)."""
    return layer_template(model, model.moe is not None, framework)


def mtp_module_params(model: ModelSpec) -> int:
    """Parameters of one multi-token-prediction module besides the shared embedding and
    head: two RMSNorms (``h`` each), the ``2h -> h`` projection and one layer (DeepSeek-V3,
    sec. 2.2: ``M_k`` of ``d x 2d``)."""
    h = model.hidden_size
    return 2 * h + 2 * h * h + mtp_layer(model).params


@lru_cache(maxsize=256)
def forward_flops_per_token(model: ModelSpec, causal: bool = False) -> float:
    """Forward FLOPs per token of the whole model, matrix multiplications only (cached per
    model: specs are frozen, and the sum walks every layer).

    Attention counts the full ``s x s`` score matrix unless ``causal`` (Megatron's
    convention, Narayanan et al. 2021, eq. 3). Expert GEMMs count ``top_k`` experts.
    """
    s = model.seq_len
    total = 0.0
    for index in range(model.num_layers):
        layer = layer_template(model, model.is_moe_layer(index))
        for op in layer.ops:
            if isinstance(op, Gemm):
                total += 2.0 * op.tokens_factor * op.k * op.n
        core = layer.attention
        attn = 2.0 * core.heads * (core.qk_dim + core.v_dim) * s
        total += attn / 2.0 if causal else attn
    total += 2.0 * model.hidden_size * model.vocab_size  # LM head
    if model.mtp_layers:
        # each module: its projection, its layer, the shared LM head again
        h = model.hidden_size
        layer = mtp_layer(model)
        gemms = sum(
            2.0 * op.tokens_factor * op.k * op.n for op in layer.ops if isinstance(op, Gemm)
        )
        core = layer.attention
        attn = 2.0 * core.heads * (core.qk_dim + core.v_dim) * s
        per = (
            2.0 * 2 * h * h + gemms + (attn / 2.0 if causal else attn) + 2.0 * h * model.vocab_size
        )
        total += model.mtp_layers * per
    return total


def model_flops_per_step(model: ModelSpec, global_batch_size: int) -> float:
    """Model FLOPs of one optimizer step without recomputation: 3x the forward FLOPs
    (forward + backward = 2x forward; Narayanan et al. 2021, eq. 3 without the 4/3
    recompute factor; Chowdhery et al. 2022, PaLM, app. B for MFU)."""
    return 3.0 * forward_flops_per_token(model) * model.seq_len * global_batch_size
