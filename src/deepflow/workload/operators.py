"""Operator templates: the operators of a model with their shapes per token.

A template describes one operator of one layer, independent of any parallelization: the
parallel layer shards it, the hardware layer costs it. Shapes are per token (the GEMM's
``M`` dimension is the token count times ``tokens_factor``), so one template serves every
micro-batch size, sequence length and context-parallel degree.

Sharding classes say how tensor parallelism (Shoeybi et al. 2019, Megatron-LM, sec. 3)
splits an operator's work and saved activations:

* ``COLUMN``: a GEMM whose output features are split over tp (QKV, MLP up);
* ``ROW``: a GEMM whose input features are split over tp (attention output, MLP down);
* ``TENSOR``: an element-wise op inside the tensor-parallel region (split over tp);
* ``SEQUENCE``: an element-wise op outside it (norms, dropout, residual): replicated over
  tp, or split over tp with sequence parallelism (Korthikanti et al. 2022, sec. 4.2.2);
* ``REPLICATED``: computed in full on every tp rank (MoE router, MLA down-projections).

Each op also records what selective recomputation needs (:mod:`deepflow.workload.recompute`):
``modules``, the recompute modules (Megatron-Core's ``--recompute-modules``) it belongs to,
and ``source``, the op whose output is the tensor it saves for backward (its own name when
the saved tensor is internal, e.g. a dropout mask; ``""`` when it comes from outside the
layer's operators, e.g. the residual stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from deepflow.specs.strategy import RecomputeModule


class Shard(str, Enum):
    COLUMN = "column"
    ROW = "row"
    TENSOR = "tensor"
    SEQUENCE = "sequence"
    REPLICATED = "replicated"


class Bias(str, Enum):
    """Where a GEMM's bias is added: nowhere (``NONE``), by the linear layer itself
    (``OWN``: its GEMM epilogue, or a separate add), or by the fused element-wise kernel
    that follows (``NEXT``: Megatron-LM's bias-GeLU and bias-dropout-add, which take the
    bias through ``skip_bias_add``)."""

    NONE = "none"
    OWN = "own"
    NEXT = "next"


class Scope(str, Enum):
    """What the op's token count is: the layer's tokens, or the tokens routed to the
    experts held by one rank (``EXPERT``)."""

    TOKEN = "token"
    EXPERT = "expert"


@dataclass(frozen=True)
class Gemm:
    """``Y[M, n] = X[M, k] @ W[k, n]`` with ``M = tokens * tokens_factor``.

    Forward FLOPs ``2 M k n``; backward computes the input gradient and the weight gradient,
    each ``2 M k n`` (Narayanan et al. 2021, sec. 5.1: backward = 2x forward). The input
    ``X`` is saved for the weight gradient.

    ``low_precision``: the GEMM is a linear layer that Transformer Engine runs in FP8 under
    ``precision: fp8`` (``te.Linear`` and friends inside ``fp8_autocast``); False for a
    plain PyTorch matmul that stays in 16 bits (Megatron-Core's MoE router,
    ``moe/moe_utils.py::router_gating_linear``).

    ``splits``: the output widths of the separate linear layers a framework runs this GEMM
    as (summing to ``n``; e.g. Hugging Face Llama's ``q_proj``, ``k_proj``, ``v_proj``),
    each its own kernel in forward, input gradient and weight gradient; empty: one GEMM.
    """

    name: str
    k: int
    n: int
    shard: Shard
    params: int
    scope: Scope = Scope.TOKEN
    tokens_factor: float = 1.0
    groups: int = 1  # experts held on one rank: batched GEMMs sharing the token count
    bias: Bias = Bias.NONE
    modules: tuple[RecomputeModule, ...] = ()
    source: str = ""
    low_precision: bool = True
    splits: tuple[int, ...] = ()

    @property
    def input_shard(self) -> Shard:
        """Sharding of the saved input: column-parallel GEMMs read the full hidden state."""
        if self.shard is Shard.ROW:
            return Shard.TENSOR
        if self.shard is Shard.REPLICATED:
            return Shard.SEQUENCE
        return Shard.SEQUENCE


@dataclass(frozen=True)
class Traffic:
    """Memory traffic of one pass of an element-wise operator, per element of its width:
    values read plus written at the activation width (``act``) and in fp32 (``fp32``) by
    ``kernels`` kernels, and the same for its cast kernels (``cast_*``), which do not run
    when the activations are fp32 already. Built from a framework profile's kernel list
    (:class:`deepflow.specs.framework.OperatorImpl`)."""

    act: float
    fp32: float
    kernels: int
    cast_act: float = 0.0
    cast_fp32: float = 0.0
    cast_kernels: int = 0


@dataclass(frozen=True)
class Elementwise:
    """A memory-bound op touching ``elements`` values per token.

    ``passes`` counts tensor reads + writes of ``elements`` values in the forward pass
    (LayerNorm: read x, write y = 2); the backward pass moves ``backward_passes`` (read the
    output gradient and the saved input, write the input gradient = 3 for most).
    ``saved`` is how many values per token are kept for backward, ``saved_bytes`` their
    width (0 = the activation width, 1 = a dropout mask of bytes). ``weight_grad_passes``
    are the extra backward passes of an op whose weight gradient is a separate kernel
    (a norm without fused epilogues reads the output gradient and the input again).

    A framework profile replaces these with its own kernels (``forward_traffic``,
    ``backward_traffic``: :class:`Traffic`), fp32 values saved per token (``saved_fp32``)
    and mask bytes per token (``saved_mask``); ``impl`` names the profile's source.
    """

    name: str
    elements: int
    shard: Shard
    passes: float = 2.0
    backward_passes: float = 3.0
    saved: float = 0.0
    saved_bytes: int = 0
    params: int = 0
    scope: Scope = Scope.TOKEN
    tokens_factor: float = 1.0
    kernels: int = 1
    weight_grad_passes: float = 0.0
    modules: tuple[RecomputeModule, ...] = ()
    source: str = ""
    forward_traffic: Traffic | None = None
    backward_traffic: Traffic | None = None
    saved_fp32: float = 0.0
    saved_mask: float = 0.0
    impl: str = ""

    @property
    def forward(self) -> Traffic:
        """The forward pass's traffic: the profile's kernels, else ``passes`` in
        ``kernels`` kernels at the activation width."""
        return self.forward_traffic or Traffic(self.passes, 0.0, self.kernels)

    @property
    def backward(self) -> Traffic:
        """The backward pass's traffic (without ``weight_grad_passes``)."""
        return self.backward_traffic or Traffic(self.backward_passes, 0.0, self.kernels)


@dataclass(frozen=True)
class AttentionCore:
    """Scaled dot-product attention of ``heads`` query heads over ``kv_heads`` key/value
    heads (Vaswani et al. 2017; GQA: Ainslie et al. 2023).

    Forward FLOPs per query token per key: ``2 heads (qk_dim + v_dim)`` (scores and the
    weighted sum of values). With flash attention (Dao 2022) scores never reach memory and
    causal masking skips half of the tiles; the backward pass costs 2.5x the forward FLOPs
    (FlashAttention-2, Dao 2023, sec. 3: five matmuls against two). Without it, the score
    matrix is written, soft-maxed and dropped out in memory (Korthikanti et al. 2022,
    Table 2: ``5 a s`` bytes per token).

    ``source`` names the op whose output holds Q, K and V (the QKV projection, or MLA's
    key/value up-projection); the core belongs to the ``core_attn`` recompute module.
    ``kernel`` is the fused kernel that runs it (the framework profile's
    ``attention_kernel``: ``default`` or ``flash-attention-2``,
    :func:`deepflow.hardware.kernels.attention_time`).
    """

    heads: int
    kv_heads: int
    qk_dim: int
    v_dim: int
    source: str = "qkv"
    kernel: str = "default"


@dataclass(frozen=True)
class LayerTemplate:
    """The operators of one transformer layer, in execution order.

    ``autocast_weights``: the framework keeps fp32 parameters and casts each GEMM weight
    to the activation width in every forward pass, and the weight's gradient back to fp32
    in backward (``torch.autocast``; :class:`deepflow.specs.framework.StepImpl`).
    """

    name: str
    attention_ops: tuple[Gemm | Elementwise, ...]
    attention: AttentionCore
    post_attention_ops: tuple[Gemm | Elementwise, ...]
    mlp_ops: tuple[Gemm | Elementwise, ...]
    moe: bool = False
    top_k: int = 1
    num_experts: int = 1
    autocast_weights: bool = False

    @property
    def ops(self) -> tuple[Gemm | Elementwise, ...]:
        return self.attention_ops + self.post_attention_ops + self.mlp_ops

    @property
    def params(self) -> int:
        return sum(op.params for op in self.ops)

    @property
    def saved_again(self) -> tuple[bool, ...]:
        """Per op: its saved input is a tensor an earlier GEMM already saves (the MoE
        router and the shared experts both read the pre-MLP norm's output, MLA's query and
        key/value down-projections the input norm's). Autograd keeps one tensor however
        many ops save it, so it counts once."""
        seen: set[tuple[object, ...]] = set()
        out = []
        for op in self.ops:
            key = (op.source, op.scope, op.tokens_factor, op.k) if isinstance(op, Gemm) else None
            out.append(key is not None and key in seen)
            if key is not None:
                seen.add(key)
        return tuple(out)
