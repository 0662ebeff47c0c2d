"""Small scenarios shared by the search tests (fast to search exhaustively)."""

from __future__ import annotations

from typing import Any

from deepflow.specs import Scenario, scenario_from_dict

TINY_MODEL: dict[str, Any] = {
    "name": "tiny",
    "num_layers": 8,
    "hidden_size": 1024,
    "num_attention_heads": 8,
    "vocab_size": 32000,
    "seq_len": 1024,
}


def search_scenario(
    model: dict[str, Any],
    preset: str,
    name: str,
    gpus: int,
    gbs: int,
    price: float,
    **strategy: Any,
) -> Scenario:
    """A scenario of ``model`` on ``gpus`` accelerators of ``preset``'s system."""
    system: dict[str, Any] = {"preset": preset, "num_accelerators": gpus}
    if price:
        system["price_per_accelerator_hour"] = price
    return scenario_from_dict(
        {
            "model": model,
            "system": system,
            "strategy": strategy,
            "training": {"global_batch_size": gbs},
        },
        name=name,
    )


def tiny(gpus: int = 16, gbs: int = 32, price: float = 0.0, **strategy: Any) -> Scenario:
    """An 8-layer model on DGX A100 nodes: a space of a few thousand strategies."""
    return search_scenario(TINY_MODEL, "dgx-a100-80gb", "tiny", gpus, gbs, price, **strategy)


def tight(gpus: int = 16) -> Scenario:
    """A model whose memory makes many strategies infeasible (GPT-3 175B, layers cut to 8)."""
    return scenario_from_dict(
        {
            "model": {
                "name": "gpt3-8-layers",
                "num_layers": 8,
                "hidden_size": 12288,
                "num_attention_heads": 96,
                "vocab_size": 51200,
                "seq_len": 2048,
            },
            "system": {"preset": "dgx-a100-40gb", "num_accelerators": gpus},
            "training": {"global_batch_size": 64},
        },
        name="tight",
    )
