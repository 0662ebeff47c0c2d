"""Model builders: operators with shapes, FLOPs, bytes and parameters."""

from deepflow.workload.operators import (
    AttentionCore,
    Elementwise,
    Gemm,
    LayerTemplate,
    Scope,
    Shard,
)
from deepflow.workload.transformer import (
    ParameterCount,
    forward_flops_per_token,
    layer_template,
    model_flops_per_step,
    parameter_count,
)

__all__ = [
    "AttentionCore",
    "Elementwise",
    "Gemm",
    "LayerTemplate",
    "ParameterCount",
    "Scope",
    "Shard",
    "forward_flops_per_token",
    "layer_template",
    "model_flops_per_step",
    "parameter_count",
]
