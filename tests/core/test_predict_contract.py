"""`predict --json` follows spec/scenario.md for every preset model on every preset system."""

import json
import math

import pytest

from deepflow.estimate import predict
from deepflow.specs import scenario_from_dict
from deepflow.specs.presets import preset_names

REQUIRED = {
    "feasible": bool,
    "reason": (str, type(None)),
    "step_time_s": (float, type(None)),
    "tokens_per_s": float,
    "model_flops_per_step": float,
    "mfu": float,
    "hfu": float,
    "peak_memory_bytes": float,
    "breakdown_s": dict,
    "memory_bytes": dict,
}


def strategy_for(model: str, system: str) -> dict:
    """A plausible strategy: tp inside the node, pp to fit, experts spread."""
    per_node = {"dgx-2": 16, "gb200-nvl72": 8}.get(system, 8)
    tp = min(per_node, 8) if not system.startswith("tpu") else 4
    strat = {
        "tp": tp,
        "pp": 4,
        "sequence_parallel": True,
        "recompute": "selective",
        "zero": 1,
        "micro_batch_size": 1,
    }
    if model in ("mixtral-8x7b", "mixtral-8x22b", "deepseek-v3"):
        strat["ep"] = 8
    if system == "dgx-v100" or system == "dgx-2":
        strat["precision"] = "fp16"
    return strat


@pytest.mark.parametrize("system", preset_names("systems"))
@pytest.mark.parametrize("model", preset_names("models"))
def test_json_contract(model, system):
    gpus = 512
    sc = scenario_from_dict(
        {
            "model": model,
            "system": {"preset": system, "num_accelerators": gpus},
            "strategy": strategy_for(model, system),
            "training": {"global_batch_size": 1024},
        }
    )
    out = json.loads(json.dumps(predict(sc).to_json()))
    for key, kind in REQUIRED.items():
        assert isinstance(out[key], kind), key
    if out["feasible"]:
        assert out["reason"] is None
        assert math.isclose(sum(out["breakdown_s"].values()), out["step_time_s"], rel_tol=1e-9)
        assert 0 < out["mfu"] <= out["hfu"] <= 1.0
        tokens = 1024 * sc.model.seq_len
        assert math.isclose(out["tokens_per_s"], tokens / out["step_time_s"], rel_tol=1e-12)
    else:
        assert out["reason"] and "\n" not in out["reason"]


def test_infeasible_reasons_say_why():
    base = {
        "model": "gpt3-175b",
        "system": {"preset": "dgx-a100-80gb", "num_accelerators": 64},
        "training": {"global_batch_size": 64},
    }
    oom = predict(scenario_from_dict({**base, "strategy": {"tp": 8}}))
    assert not oom.feasible and "out of memory on pipeline stage 0" in oom.reason
    assert "over by" in oom.reason
    heads = predict(scenario_from_dict({**base, "strategy": {"tp": 64}}))
    assert heads.reason == "tp=64 does not divide num_attention_heads=96"
    fp8 = predict(scenario_from_dict({**base, "strategy": {"tp": 8, "pp": 8, "precision": "fp8"}}))
    assert "no fp8" in fp8.reason
