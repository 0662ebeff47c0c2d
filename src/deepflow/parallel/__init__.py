"""Device mesh with named axes, strategy batches, feasibility rules."""

from deepflow.parallel.batch import StrategyBatch, mesh_strides
from deepflow.parallel.feasibility import RULES, Context, Rule, explain, structural_violations

__all__ = [
    "RULES",
    "Context",
    "Rule",
    "StrategyBatch",
    "explain",
    "mesh_strides",
    "structural_violations",
]
