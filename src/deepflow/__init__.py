"""deepflow: predict, simulate and optimize distributed deep-learning training.

The public API (everything else is reachable through its subpackage)::

    import deepflow
    scenario = deepflow.load_scenario("examples/gpt3-175b-a100.yaml")
    prediction = deepflow.predict(scenario)
    print(prediction.step_time_s, prediction.mfu)
"""

from deepflow.errors import ConfigError, DeepflowError, TraceError, UnitError
from deepflow.estimate import BatchResult, Prediction, evaluate, predict
from deepflow.parallel import StrategyBatch
from deepflow.specs import (
    AcceleratorSpec,
    ModelSpec,
    Scenario,
    StrategySpec,
    SystemSpec,
    TrainingSpec,
    default_scenario,
    load_scenario,
    scenario_from_dict,
)

__all__ = [
    "AcceleratorSpec",
    "BatchResult",
    "ConfigError",
    "DeepflowError",
    "ModelSpec",
    "Prediction",
    "Scenario",
    "StrategyBatch",
    "StrategySpec",
    "SystemSpec",
    "TraceError",
    "TrainingSpec",
    "UnitError",
    "default_scenario",
    "evaluate",
    "load_scenario",
    "predict",
    "scenario_from_dict",
]
