"""Device mesh with named axes, strategy batches, feasibility rules, the pipeline split."""

from deepflow.parallel.batch import StrategyBatch, mesh_strides
from deepflow.parallel.feasibility import RULES, Context, Rule, explain, structural_violations
from deepflow.parallel.pipeline_split import PipelineSplit, SplitRule, pipeline_split

__all__ = [
    "RULES",
    "Context",
    "PipelineSplit",
    "Rule",
    "SplitRule",
    "StrategyBatch",
    "explain",
    "mesh_strides",
    "pipeline_split",
    "structural_violations",
]
