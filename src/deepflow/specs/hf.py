"""Hugging Face ``config.json`` files as model specs.

A transformers checkpoint describes its shape in ``config.json``; the key names differ by
architecture (``model_type``). :func:`hf_model_fields` maps the keys of the architectures
below onto the fields of :class:`~deepflow.specs.model.ModelSpec`; :func:`read_hf_config`
reads the file through the bounded JSON reader (:mod:`deepflow.specs.files`). Nothing is
downloaded: the user names a file on disk.

==============  =================================================================  =========
model_type      shape keys read (transformers ``configuration_<type>.py``)          MLP
==============  =================================================================  =========
llama, mistral  hidden_size, num_hidden_layers, num_attention_heads,               SwiGLU
qwen2, qwen3    num_key_value_heads, intermediate_size, vocab_size,
                max_position_embeddings, head_dim, tie_word_embeddings
gemma           as llama; the MLP is GeGLU (gate, up and down projections like      gated
                SwiGLU, ``modeling_gemma.py::GemmaMLP``), so its shapes are SwiGLU's
mixtral         as llama + num_local_experts, num_experts_per_tok; every layer's   SwiGLU
                MLP is the expert MLP of intermediate_size
                (``modeling_mixtral.py::MixtralSparseMoeBlock``)
qwen3_moe       as qwen3 + num_experts, num_experts_per_tok, moe_intermediate_size,  SwiGLU
                decoder_sparse_step, mlp_only_layers: layer ``i`` is MoE when
                ``(i + 1) % decoder_sparse_step == 0`` and ``i`` is not in
                mlp_only_layers (``modeling_qwen3_moe.py::Qwen3MoeDecoderLayer``)
deepseek_v3     as llama + n_routed_experts, num_experts_per_tok,                   SwiGLU
                moe_intermediate_size, n_shared_experts, first_k_dense_replace,
                moe_layer_freq and the MLA ranks q_lora_rank, kv_lora_rank,
                qk_nope_head_dim, qk_rope_head_dim, v_head_dim (DeepSeek-V3
                ``modeling_deepseek.py``: layer ``i`` is MoE when
                ``i >= first_k_dense_replace and i % moe_layer_freq == 0``);
                num_nextn_predict_layers -> mtp_layers
gpt2            n_embd, n_layer, n_head, n_inner (default 4 * n_embd), vocab_size,  GeLU
                n_positions; learned position embeddings, tied output layer
                (``modeling_gpt2.py``)
gpt_neox        hidden_size, num_hidden_layers, num_attention_heads,                GeLU
                intermediate_size, vocab_size, max_position_embeddings,
                tie_word_embeddings (``modeling_gpt_neox.py``; rotary, no learned
                positions)
==============  =================================================================  =========

Defaults follow transformers where a key is optional there: ``num_key_value_heads`` is the
head count (multi-head attention), ``head_dim`` is ``hidden_size / num_attention_heads``,
``tie_word_embeddings`` is the architecture's class default (True for Gemma and GPT-2, False
for the others). Every shape key without such a default is required: a missing one is a
:class:`~deepflow.errors.ConfigError` naming the key.

The sequence length is ``max_position_embeddings`` (the longest context the checkpoint
supports); a scenario that trains shorter sequences says so with ``model.seq_len``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deepflow.errors import ConfigError
from deepflow.specs.files import brief, read_config_data
from deepflow.specs.model import ModelSpec
from deepflow.specs.presets import merge

# architecture -> transformers' class default of tie_word_embeddings
_TIED_BY_DEFAULT = {
    "llama": False,
    "mistral": False,
    "qwen2": False,
    "qwen3": False,
    "gemma": True,
    "mixtral": False,
    "qwen3_moe": False,
    "deepseek_v3": False,
    "gpt2": True,
    "gpt_neox": False,
}
ARCHITECTURES = tuple(_TIED_BY_DEFAULT)
"""The ``model_type`` values :func:`hf_model_fields` reads."""

_ARCH_CLASSES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "GemmaForCausalLM": "gemma",
    "MixtralForCausalLM": "mixtral",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "GPT2LMHeadModel": "gpt2",
    "GPTNeoXForCausalLM": "gpt_neox",
}

# which config key fed each model field, so that a validation error names the file's key
_GPT2_KEYS = {
    "hidden_size": "n_embd",
    "num_layers": "n_layer",
    "num_attention_heads": "n_head",
    "ffn_hidden_size": "n_inner",
    "seq_len": "n_positions",
}
_KEYS = {
    "num_layers": "num_hidden_layers",
    "num_kv_heads": "num_key_value_heads",
    "ffn_hidden_size": "intermediate_size",
    "seq_len": "max_position_embeddings",
    "tie_embeddings": "tie_word_embeddings",
}


def _int(cfg: dict[str, Any], key: str, default: int | None = None) -> int:
    """The integer ``cfg[key]``; missing (or null) without a default is an error naming it."""
    value = cfg.get(key)
    if value is None:
        if default is None:
            raise ConfigError("missing required key", key)
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"must be an integer (got {brief(value)})", key)
    return value


def _bool(cfg: dict[str, Any], key: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"must be true or false (got {brief(value)})", key)
    return value


def model_type(cfg: dict[str, Any]) -> str:
    """The architecture: ``model_type``, else the first of ``architectures``."""
    kind = cfg.get("model_type")
    if kind is None:
        classes = cfg.get("architectures")
        if isinstance(classes, list) and classes and isinstance(classes[0], str):
            kind = _ARCH_CLASSES.get(classes[0], classes[0])
    if kind is None:
        raise ConfigError("missing required key (the architecture)", "model_type")
    if kind not in _TIED_BY_DEFAULT:
        raise ConfigError(
            f"unsupported architecture {brief(kind)}; supported: {', '.join(ARCHITECTURES)}",
            "model_type",
        )
    return str(kind)


def _llama_like(cfg: dict[str, Any], kind: str) -> dict[str, Any]:
    heads = _int(cfg, "num_attention_heads")
    fields: dict[str, Any] = {
        "num_layers": _int(cfg, "num_hidden_layers"),
        "hidden_size": _int(cfg, "hidden_size"),
        "num_attention_heads": heads,
        "num_kv_heads": _int(cfg, "num_key_value_heads", heads),
        "ffn_hidden_size": _int(cfg, "intermediate_size"),
        "ffn_type": "swiglu",
        "vocab_size": _int(cfg, "vocab_size"),
        "seq_len": _int(cfg, "max_position_embeddings"),
        "tie_embeddings": _bool(cfg, "tie_word_embeddings", _TIED_BY_DEFAULT[kind]),
        "learned_position_embeddings": False,
    }
    if cfg.get("head_dim") is not None:
        fields["head_dim"] = _int(cfg, "head_dim")
    return fields


def _mixtral(cfg: dict[str, Any]) -> dict[str, Any]:
    fields = _llama_like(cfg, "mixtral")
    fields["moe"] = {
        "num_experts": _int(cfg, "num_local_experts"),
        "top_k": _int(cfg, "num_experts_per_tok"),
        "expert_ffn_hidden_size": fields["ffn_hidden_size"],
    }
    return fields


def _qwen3_moe(cfg: dict[str, Any]) -> dict[str, Any]:
    fields = _llama_like(cfg, "qwen3_moe")
    layers = fields["num_layers"]
    step = _int(cfg, "decoder_sparse_step", 1)
    if step < 1:
        raise ConfigError(f"must be >= 1 (got {step})", "decoder_sparse_step")
    dense_only = cfg.get("mlp_only_layers") or []
    if not isinstance(dense_only, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in dense_only
    ):
        raise ConfigError(
            f"must be a list of layer indices (got {brief(dense_only)})", "mlp_only_layers"
        )
    # (i + 1) % step == 0  <=>  i >= step - 1 and (i - (step - 1)) % step == 0; a leading
    # run of mlp_only_layers moves the first MoE layer further; other patterns have no
    # equivalent in ModelSpec's "first dense layers, then every k-th" rule
    first = step - 1
    while first in dense_only:
        first += step
    if any(i >= first and (i + 1) % step == 0 for i in dense_only if i < layers):
        raise ConfigError(
            "only a leading run of dense layers is supported "
            f"(got {brief(dense_only)} with decoder_sparse_step={step})",
            "mlp_only_layers",
        )
    fields["moe"] = {
        "num_experts": _int(cfg, "num_experts"),
        "top_k": _int(cfg, "num_experts_per_tok"),
        "expert_ffn_hidden_size": _int(cfg, "moe_intermediate_size"),
        "layer_frequency": step,
        "first_dense_layers": min(first, layers),
    }
    return fields


def _deepseek_v3(cfg: dict[str, Any]) -> dict[str, Any]:
    fields = _llama_like(cfg, "deepseek_v3")
    first = _int(cfg, "first_k_dense_replace", 0)
    freq = _int(cfg, "moe_layer_freq", 1)
    if freq < 1 or first % freq:
        # MoE layers are i >= first with i % freq == 0; ModelSpec counts (i - first) % freq
        raise ConfigError(
            f"must be >= 1 and divide first_k_dense_replace={first} (got {freq})", "moe_layer_freq"
        )
    # MLA's attention widths are the mla fields below; head_dim is the per-head value width,
    # as in the deepseek-v3 preset
    fields["head_dim"] = _int(cfg, "v_head_dim")
    fields["moe"] = {
        "num_experts": _int(cfg, "n_routed_experts"),
        "top_k": _int(cfg, "num_experts_per_tok"),
        "expert_ffn_hidden_size": _int(cfg, "moe_intermediate_size"),
        "num_shared_experts": _int(cfg, "n_shared_experts", 0),
        "layer_frequency": freq,
        "first_dense_layers": first,
    }
    fields["mla"] = {
        "q_lora_rank": _int(cfg, "q_lora_rank", 0),
        "kv_lora_rank": _int(cfg, "kv_lora_rank"),
        "qk_nope_head_dim": _int(cfg, "qk_nope_head_dim"),
        "qk_rope_head_dim": _int(cfg, "qk_rope_head_dim"),
        "v_head_dim": _int(cfg, "v_head_dim"),
    }
    # the multi-token-prediction modules (DeepSeek-V3, sec. 2.2)
    fields["mtp_layers"] = _int(cfg, "num_nextn_predict_layers", 0)
    return fields


def _gpt2(cfg: dict[str, Any]) -> dict[str, Any]:
    hidden = _int(cfg, "n_embd")
    return {
        "num_layers": _int(cfg, "n_layer"),
        "hidden_size": hidden,
        "num_attention_heads": _int(cfg, "n_head"),
        "ffn_hidden_size": _int(cfg, "n_inner", 4 * hidden),
        "ffn_type": "gelu",
        "vocab_size": _int(cfg, "vocab_size"),
        "seq_len": _int(cfg, "n_positions"),
        "tie_embeddings": _bool(cfg, "tie_word_embeddings", True),
        "learned_position_embeddings": True,
    }


def _gpt_neox(cfg: dict[str, Any]) -> dict[str, Any]:
    fields = _llama_like(cfg, "gpt_neox")
    fields["ffn_type"] = "gelu"
    return fields


def hf_model_fields(cfg: object) -> dict[str, Any]:
    """The :class:`ModelSpec` fields of a parsed transformers ``config.json`` (not yet
    validated); a :class:`ConfigError` naming the config key when one is missing, has the
    wrong type, or the architecture is not one of :data:`ARCHITECTURES`."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"a config.json must be a JSON object (got {brief(cfg)})")
    kind = model_type(cfg)
    if kind == "mixtral":
        fields = _mixtral(cfg)
    elif kind == "qwen3_moe":
        fields = _qwen3_moe(cfg)
    elif kind == "deepseek_v3":
        fields = _deepseek_v3(cfg)
    elif kind == "gpt2":
        fields = _gpt2(cfg)
    elif kind == "gpt_neox":
        fields = _gpt_neox(cfg)
    else:
        fields = _llama_like(cfg, kind)
    return fields


def config_key(field: str, kind: str) -> str:
    """The config.json key that fed ModelSpec ``field`` for architecture ``kind``."""
    if kind == "gpt2":
        return _GPT2_KEYS.get(field, field)
    return _KEYS.get(field, field)


def _model_name(path: Path, cfg: dict[str, Any]) -> str:
    stem = path.parent.name if path.stem == "config" and path.parent.name else path.stem
    return stem or str(cfg.get("model_type", "hf"))


def read_hf_config(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """Read a transformers ``config.json`` (bounded: size, depth, value count) and return
    its model fields, with ``name`` (the file's stem, or its folder for ``config.json``)
    and ``sources`` set, and its architecture. Errors are attributed to the file and name
    the config key."""
    p = Path(path)
    cfg = read_config_data(p)
    try:
        fields = hf_model_fields(cfg)
    except ConfigError as exc:
        raise exc.with_source(str(p)) from None
    assert isinstance(cfg, dict)
    kind = model_type(cfg)
    fields["name"] = _model_name(p, cfg)
    fields["sources"] = [f"Hugging Face config {p.name} (model_type {kind})"]
    return fields, kind


def hf_model_section(
    path: str | os.PathLike[str], overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The model fields of the config.json at ``path`` with ``overrides`` (the scenario's
    other model keys, such as ``seq_len``) laid over them, as for a preset. A value from
    the file that a :class:`ModelSpec` refuses is a :class:`ConfigError` naming the file
    and its key (``config.json: num_hidden_layers: ...``); one from ``overrides`` is left
    to the scenario's validation, which names the scenario key."""
    overrides = dict(overrides or {})
    fields, kind = read_hf_config(path)
    try:
        ModelSpec.model_validate({**fields, **overrides})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc") or ()
        if len(loc) == 1 and isinstance(loc[0], str) and loc[0] not in overrides:
            message = str(err["msg"]).removeprefix("Value error, ")
            raise ConfigError(
                f"{message} (got {brief(err.get('input'))})",
                config_key(loc[0], kind),
                os.fspath(path),
            ) from None
    if overrides and "name" not in overrides:
        overrides["name"] = f"{fields['name']}*"
    return merge(fields, overrides)
