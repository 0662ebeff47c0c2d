"""Model specs: dense and mixture-of-experts decoder-only transformers."""

from __future__ import annotations

from enum import Enum

import numpy as np
from pydantic import Field, model_validator

from deepflow.specs.base import (
    MAX_HEADS,
    MAX_LAYERS,
    MAX_SEQ_LEN,
    MAX_VOCAB,
    Heads,
    Layers,
    Name,
    Sources,
    Spec,
    Width,
    count,
)


class FfnType(str, Enum):
    GELU = "gelu"
    SWIGLU = "swiglu"


class Routing(str, Enum):
    """How the router is balanced (:mod:`deepflow.parallel.routing` for each one's load)."""

    FORCED = "forced"  # --moe-router-force-load-balancing: random logits, balanced
    AUX_LOSS = "aux_loss"  # learned top-k with an auxiliary load-balancing loss
    AUX_FREE = "aux_free"  # learned top-k with expert-bias balancing (Wang et al. 2024)


class MoESpec(Spec):
    """Mixture-of-experts MLP (Shazeer et al. 2017; Fedus et al. 2021).

    Layers ``first_dense_layers..`` with index multiple of ``layer_frequency`` are MoE
    layers; each routes every token to ``top_k`` of ``num_experts`` experts, plus
    ``num_shared_experts`` experts that see every token (DeepSeek-V3, arXiv 2412.19437).

    Routing outcome: ``imbalance`` is the expected ratio of the busiest expert-parallel
    rank's routed tokens to the mean. The all-to-all synchronizes the ranks, so the busiest
    one sets the pace. Stated, it is used as given; unstated, it follows from ``routing``,
    how the router is balanced (:class:`Routing`; default ``forced``, imbalance 1.0, as
    Megatron-Core's ``--moe-router-force-load-balancing`` makes it), through the measured
    per-expert imbalance and the rank model of :mod:`deepflow.parallel.routing`, which
    depends on ``ep``. ``capacity_factor`` caps the tokens per expert at that multiple of
    the mean and drops the rest (GShard, Lepikhin et al. 2020, sec. 2.2; Megatron-Core
    ``--moe-expert-capacity-factor``; unset: dropless); ``pad_to_capacity`` pads every
    expert to its capacity (``--moe-pad-expert-input-to-capacity``), so the experts compute
    exactly ``capacity_factor`` times the mean. :meth:`capped_load` combines them.
    """

    num_experts: Heads
    top_k: Heads
    expert_ffn_hidden_size: Width | None = None
    num_shared_experts: count(MAX_HEADS, 0) = 0
    layer_frequency: Layers = 1
    first_dense_layers: count(MAX_LAYERS, 0) = 0
    routing: Routing = Routing.FORCED
    imbalance: float | None = Field(default=None, ge=1.0, le=1024.0)
    capacity_factor: float | None = Field(default=None, gt=0.0, le=1024.0)
    pad_to_capacity: bool = False

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k={self.top_k} exceeds num_experts={self.num_experts}")
        if self.pad_to_capacity and self.capacity_factor is None:
            raise ValueError("pad_to_capacity needs a capacity_factor")
        return self

    def capped_load(self, imbalance: float | np.ndarray) -> float | np.ndarray:
        """Routed tokens the busiest rank's experts compute, over the balanced mean, for a
        busiest-rank ``imbalance`` (float or array over strategies): ``imbalance``
        dropless; ``min(imbalance, capacity_factor)`` with token dropping;
        ``capacity_factor`` when padded to capacity. The imbalance itself:
        :func:`deepflow.parallel.routing.expert_load`."""
        if self.capacity_factor is None:
            return imbalance
        if self.pad_to_capacity:
            return imbalance * 0.0 + self.capacity_factor
        return np.minimum(imbalance, self.capacity_factor)


class MLASpec(Spec):
    """Multi-head latent attention (DeepSeek-V2, arXiv 2405.04434, sec. 2.1).

    Queries go through a rank-``q_lora_rank`` bottleneck (0 = none), keys and values through
    a shared rank-``kv_lora_rank`` latent; each head has ``qk_nope_head_dim`` +
    ``qk_rope_head_dim`` query/key dims and ``v_head_dim`` value dims.
    """

    q_lora_rank: count(1 << 20, 0) = 0
    kv_lora_rank: Width
    qk_nope_head_dim: Width
    qk_rope_head_dim: Width
    v_head_dim: Width


class ModelSpec(Spec):
    """A decoder-only transformer (GPT, Llama, Mixtral, DeepSeek families).

    ``mtp_layers``: multi-token-prediction modules after the last layer (DeepSeek-V3, arXiv
    2412.19437, sec. 2.2; Megatron-Core ``--mtp-num-layers``,
    ``transformer/multi_token_prediction.py``): each normalizes the hidden state and the
    next token's embedding (two RMSNorms), projects their concatenation ``2h -> h``, runs
    one transformer layer (an MoE layer in an MoE model) and the shared LM head and loss.
    They sit on the last pipeline stage and share the embedding and the head.
    """

    name: Name = "custom"
    num_layers: Layers
    hidden_size: Width
    num_attention_heads: Heads
    num_kv_heads: Heads
    head_dim: Width
    ffn_hidden_size: Width
    ffn_type: FfnType = FfnType.GELU
    vocab_size: count(MAX_VOCAB)
    seq_len: count(MAX_SEQ_LEN)
    tie_embeddings: bool = False
    learned_position_embeddings: bool = False
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    mtp_layers: count(8, 0) = 0
    sources: Sources

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: object) -> object:
        """num_kv_heads defaults to the head count, head_dim to hidden/heads, ffn to 4h."""
        if isinstance(data, dict):
            data = dict(data)
            heads = data.get("num_attention_heads")
            hidden = data.get("hidden_size")
            if heads is not None:
                data.setdefault("num_kv_heads", heads)
            if (
                "head_dim" not in data
                and isinstance(heads, int)
                and isinstance(hidden, int)
                and not isinstance(heads, bool)
                and heads > 0
            ):
                # multi-head attention splits the hidden size across the heads (Vaswani et
                # al. 2017, sec. 3.2.2: d_k = d_model / h); a model whose heads are not
                # hidden/heads wide (Gemma, Qwen3) says so with head_dim
                if hidden % heads:
                    raise ValueError(
                        f"hidden_size={hidden} is not divisible by "
                        f"num_attention_heads={heads}; give head_dim explicitly"
                    )
                data["head_dim"] = max(1, hidden // heads)
            if isinstance(hidden, int):
                data.setdefault("ffn_hidden_size", 4 * hidden)
        return data

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_kv_heads={self.num_kv_heads} must divide "
                f"num_attention_heads={self.num_attention_heads}"
            )
        return self

    def is_moe_layer(self, index: int) -> bool:
        """Whether layer ``index`` (0-based) has a mixture-of-experts MLP."""
        if self.moe is None or index < self.moe.first_dense_layers:
            return False
        return (index - self.moe.first_dense_layers) % self.moe.layer_frequency == 0

    @property
    def num_moe_layers(self) -> int:
        """How many layers :meth:`is_moe_layer` selects: indices ``first, first + k, ...``
        below ``num_layers`` (closed form of counting them)."""
        if self.moe is None:
            return 0
        span = self.num_layers - self.moe.first_dense_layers
        return max(0, -(-span // self.moe.layer_frequency))
