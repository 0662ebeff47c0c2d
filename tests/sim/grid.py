"""A grid of varied scenarios on which the simulator and the closed form must agree."""

from __future__ import annotations

import itertools

from deepflow.estimate import predict
from deepflow.specs import scenario_from_dict

MODELS = ("megatron-gpt-1.7b", "llama2-7b", "llama3-8b", "llama2-70b", "mixtral-8x7b")
SYSTEMS = ("dgx-a100-80gb", "dgx-h100")
STRATEGIES = (
    {"tp": 1, "pp": 1},
    {"tp": 2, "pp": 1, "zero": 1},
    {"tp": 8, "pp": 1, "sequence_parallel": True},
    {"tp": 2, "pp": 2},
    {"tp": 4, "pp": 2, "recompute": "full"},
    {"tp": 2, "pp": 4, "pipeline_schedule": "gpipe"},
    {"tp": 4, "pp": 4, "vpp": 2, "sequence_parallel": True},
    {"tp": 1, "pp": 2, "pipeline_schedule": "zero-bubble"},
    {"tp": 8, "pp": 2, "recompute": "selective", "flash_attention": False},
    {"tp": 1, "pp": 2, "zero": 3, "overlap_grad_reduce": False},
    {"tp": 4, "pp": 2, "cp": 2},
    {"tp": 2, "pp": 2, "ep": 4},
    # sharded data parallelism: FSDP, hybrid sharding, without resharding, with CP
    {"tp": 2, "pp": 1, "zero": 3},
    {"tp": 1, "pp": 1, "zero": 3, "shard_degree": 8},
    {"tp": 2, "pp": 1, "zero": 3, "reshard_after_forward": False},
    {"tp": 2, "pp": 1, "zero": 1, "shard_degree": 4},
    {"tp": 2, "pp": 2, "cp": 2, "zero": 1},
    {"tp": 1, "pp": 2, "cp": 2, "zero": 3},
    {"tp": 2, "pp": 2, "recompute": "selective", "recompute_modules": ["core_attn", "mlp"]},
    {"tp": 4, "pp": 2, "vpp": 2, "recompute": "full", "recompute_layers": 1},
    {
        "tp": 8,
        "pp": 1,
        "sequence_parallel": True,
        "recompute": "selective",
        "recompute_modules": ["layernorm", "mlp"],
    },
    {
        "tp": 2,
        "pp": 2,
        "ep": 4,
        "recompute": "selective",
        "recompute_modules": ["layernorm", "moe"],
    },
    {"tp": 2, "pp": 2, "ep": 4, "recompute": "selective", "recompute_modules": ["moe_act"]},
)


def grid(gpus: int = 32, gbs: int = 64) -> list:
    out = []
    for model, system, strategy in itertools.product(MODELS, SYSTEMS, STRATEGIES):
        if "ep" in strategy and not model.startswith("mixtral"):
            continue
        sc = scenario_from_dict(
            {
                "name": f"{model}-{system}-{'-'.join(f'{k}{v}' for k, v in strategy.items())}",
                "model": model,
                "system": {"preset": system, "num_accelerators": gpus},
                "strategy": {"micro_batch_size": 1, **strategy},
                "training": {"global_batch_size": gbs},
            }
        )
        if predict(sc).feasible:
            out.append(sc)
    return out
