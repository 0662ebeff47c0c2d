"""The built-in preset catalogues as rows of key numbers with their sources.

:func:`preset_rows` computes the data (plain numbers in SI units, the first source); the
``deepflow presets`` command renders it as a table or JSON. Every row is built from the
validated spec, so the numbers shown are the numbers the evaluators use (units converted,
defaults filled), not the raw YAML.
"""

from __future__ import annotations

from typing import Any

from deepflow.specs import (
    AcceleratorSpec,
    ModelSpec,
    SystemSpec,
    accelerator_from,
    model_from,
    preset_names,
    system_from,
)
from deepflow.specs.presets import KINDS
from deepflow.workload.transformer import parameter_count


def _accelerator_row(spec: AcceleratorSpec) -> dict[str, Any]:
    peak = spec.peak_flops
    return {
        "name": spec.name,
        "vendor": spec.vendor,
        "peak_bf16_flops": peak.bf16,
        "peak_fp8_flops": peak.fp8,
        "memory_bytes": spec.memory_capacity,
        "memory_bandwidth": spec.memory_bandwidth,
        "scale_up_bandwidth": spec.scale_up_bandwidth,
        "tdp_w": spec.tdp,
        "sources": list(spec.sources),
    }


def _system_row(spec: SystemSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "accelerator": spec.accelerator.name,
        "accelerators_per_node": spec.accelerators_per_node,
        "scale_up_size": spec.scale_up_size,
        "intra_node_bandwidth": spec.intra_node.bandwidth,
        "inter_node_bandwidth": spec.inter_node.bandwidth,
        "sources": list(spec.sources),
    }


def _model_row(spec: ModelSpec) -> dict[str, Any]:
    moe = spec.moe
    return {
        "name": spec.name,
        "parameters": parameter_count(spec).total,
        "num_layers": spec.num_layers,
        "hidden_size": spec.hidden_size,
        "num_attention_heads": spec.num_attention_heads,
        "num_kv_heads": spec.num_kv_heads,
        "ffn_hidden_size": spec.ffn_hidden_size,
        "vocab_size": spec.vocab_size,
        "seq_len": spec.seq_len,
        "num_experts": moe.num_experts if moe else 0,
        "top_k": moe.top_k if moe else 0,
        "sources": list(spec.sources),
    }


def preset_rows(kind: str) -> list[dict[str, Any]]:
    """One row per preset of ``kind`` (``accelerators``, ``systems`` or ``models``), in name
    order: the key numbers (SI units: FLOP/s, bytes, bytes/s per direction, watts) and the
    ``sources`` list the catalogue records next to them."""
    assert kind in KINDS, kind
    if kind == "accelerators":
        return [_accelerator_row(accelerator_from(n)) for n in preset_names(kind)]
    if kind == "systems":
        return [_system_row(system_from(n)) for n in preset_names(kind)]
    return [_model_row(model_from(n)) for n in preset_names(kind)]
