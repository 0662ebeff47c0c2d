"""Shared fixtures of the technology and co-design tests."""

from __future__ import annotations

from pathlib import Path

from deepflow.specs import scenario_from_dict
from deepflow.tech import Limits, load_design

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "arch"
CLASSES = {"a100": "a100-sxm4-80gb", "h100": "h100-sxm5-80gb", "b200": "b200"}
SYSTEMS = {"a100": "dgx-a100-80gb", "h100": "dgx-h100", "b200": "dgx-b200"}


def class_design(name: str):
    return load_design(EXAMPLES / f"{name}-class.yaml")


def small_scenario():
    """A cheap scenario for search tests: a 1.7B GPT on one 8-GPU node, fixed strategy."""
    return scenario_from_dict(
        {
            "model": "megatron-gpt-1.7b",
            "system": {"preset": "dgx-h100", "num_accelerators": 8},
            "strategy": {"tp": 1, "pp": 1, "micro_batch_size": 4, "recompute": "selective"},
            "training": {"global_batch_size": 64},
        }
    )


def open_design():
    """The H100-class design without its port limits: every fraction matters."""
    d = class_design("h100")
    return d.model_copy(update={"limits": Limits()})
