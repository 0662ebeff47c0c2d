"""The fast closed-form evaluator: scenarios (or whole arrays of strategies) -> step time,
memory and breakdown."""

from deepflow.estimate.evaluate import BREAKDOWN_KEYS, MEMORY_KEYS, BatchResult, evaluate
from deepflow.estimate.pipeline import bubble_fraction
from deepflow.estimate.prediction import Prediction, predict, prediction_at, time_to_train_s

__all__ = [
    "BREAKDOWN_KEYS",
    "MEMORY_KEYS",
    "BatchResult",
    "Prediction",
    "bubble_fraction",
    "evaluate",
    "predict",
    "prediction_at",
    "time_to_train_s",
]
