"""Frozen, validated value objects for every input, and preset loading."""

from deepflow.specs.accelerator import AcceleratorSpec, Efficiency, PeakFlops, Precision
from deepflow.specs.model import FfnType, MLASpec, ModelSpec, MoESpec
from deepflow.specs.presets import preset_names
from deepflow.specs.scenario import (
    Scenario,
    accelerator_from,
    default_scenario,
    load_scenario,
    model_from,
    scenario_from_dict,
    system_from,
    with_model,
)
from deepflow.specs.strategy import PipelineSchedule, Recompute, StrategySpec
from deepflow.specs.system import LinkSpec, SystemSpec
from deepflow.specs.training import TrainingSpec

__all__ = [
    "AcceleratorSpec",
    "Efficiency",
    "FfnType",
    "LinkSpec",
    "MLASpec",
    "MoESpec",
    "ModelSpec",
    "PeakFlops",
    "PipelineSchedule",
    "Precision",
    "Recompute",
    "Scenario",
    "StrategySpec",
    "SystemSpec",
    "TrainingSpec",
    "accelerator_from",
    "default_scenario",
    "load_scenario",
    "model_from",
    "preset_names",
    "scenario_from_dict",
    "system_from",
    "with_model",
]
