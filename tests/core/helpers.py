"""Small builders shared by the core tests."""

from deepflow.parallel import StrategyBatch
from deepflow.specs import scenario_from_dict


def scenario(model="gpt3-175b", system="dgx-a100-80gb", gpus=8, gbs=8, **strategy):
    return scenario_from_dict(
        {
            "model": model,
            "system": {"preset": system, "num_accelerators": gpus},
            "strategy": strategy,
            "training": {"global_batch_size": gbs},
        }
    )


def batch_of(*scenarios):
    return StrategyBatch.from_specs([s.strategy for s in scenarios])
