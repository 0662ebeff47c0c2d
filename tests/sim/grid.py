"""A grid of varied scenarios on which the simulator and the closed form must agree."""

from __future__ import annotations

import itertools

from deepflow.estimate import predict
from deepflow.specs import model_from, scenario_from_dict

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


# Uneven pipelines (deepflow.parallel.pipeline_split): pp * vpp that does not divide the
# layers (24, 32 or 80 of them here), a chunk without layers, explicit splits (per stage, per
# chunk, with an empty stage). An explicit ``stage_layers`` is a function of the layer
# count, so that one entry fits every model. Each entry: (strategy, accelerators).
UNEVEN = (
    ({"tp": 2, "pp": 3}, 24),
    ({"tp": 1, "pp": 6, "pipeline_schedule": "gpipe"}, 24),
    ({"tp": 2, "pp": 4, "vpp": 3, "sequence_parallel": True}, 32),
    ({"tp": 1, "pp": 8, "vpp": 3}, 32),
    ({"tp": 2, "pp": 16}, 32),
    ({"tp": 1, "pp": 3, "pipeline_schedule": "zero-bubble"}, 24),
    (
        {
            "tp": 2,
            "pp": 4,
            "stage_layers": lambda n: [n // 4 + 2, n // 4, n // 4, n - 3 * (n // 4) - 2],
        },
        32,
    ),
    ({"tp": 2, "pp": 2, "vpp": 2, "stage_layers": lambda n: [1, n // 2, n - n // 2 - 2, 1]}, 32),
    (
        {
            "tp": 1,
            "pp": 4,
            "recompute": "full",
            "stage_layers": lambda n: [0, n // 2, n - n // 2, 0],
        },
        32,
    ),
)


def uneven_grid(gbs: int = 64, system: str = "dgx-h100") -> list:
    """The feasible scenarios of :data:`UNEVEN` on the dense models of :data:`MODELS`."""
    out = []
    for model, (strategy, gpus) in itertools.product(MODELS, UNEVEN):
        layers = model_from(model).num_layers
        resolved = {k: v(layers) if callable(v) else v for k, v in strategy.items()}
        tag = "-".join(f"{k}{v}" for k, v in resolved.items()).replace(" ", "")
        sc = scenario_from_dict(
            {
                "name": f"{model}-{gpus}-{tag}",
                "model": model,
                "system": {"preset": system, "num_accelerators": gpus},
                "strategy": {"micro_batch_size": 1, **resolved},
                "training": {"global_batch_size": gbs},
            }
        )
        if predict(sc).feasible:
            out.append(sc)
    return out


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
