"""Invariants of the closed-form evaluator (Hypothesis)."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepflow.estimate import BREAKDOWN_KEYS, evaluate, predict
from deepflow.parallel import StrategyBatch
from deepflow.specs import StrategySpec, scenario_from_dict

# recompute settings: none, selective over any module set (mla_up_proj needs an MLA model),
# full over all or some layers of a chunk
recompute_settings = st.one_of(
    st.just({"recompute": "none"}),
    st.builds(
        lambda modules: {"recompute": "selective", "recompute_modules": modules},
        st.lists(
            st.sampled_from(["core_attn", "moe_act", "layernorm", "mlp", "moe", "shared_experts"]),
            unique=True,
            max_size=4,
        ),
    ),
    st.just({"recompute": "selective"}),
    st.builds(
        lambda k: {"recompute": "full", "recompute_layers": k},
        st.one_of(st.none(), st.integers(0, 8)),
    ),
)
strategies = st.builds(
    lambda base, rc: {**base, **rc},
    st.builds(
        dict,
        tp=st.sampled_from([1, 2, 4, 8]),
        pp=st.sampled_from([1, 2, 4]),
        vpp=st.sampled_from([1, 2]),
        cp=st.sampled_from([1, 2]),
        sequence_parallel=st.booleans(),
        zero=st.integers(0, 3),
        micro_batch_size=st.sampled_from([1, 2, 4]),
        pipeline_schedule=st.sampled_from(["gpipe", "1f1b", "zero-bubble"]),
        flash_attention=st.booleans(),
        overlap_grad_reduce=st.booleans(),
    ),
    recompute_settings,
)
models = st.sampled_from(["llama2-7b", "megatron-gpt-3.6b", "mixtral-8x7b", "deepseek-v3"])


def build(model, strategy, gpus=64, **system):
    data = {
        "model": model,
        "system": {"preset": "dgx-h100", "num_accelerators": gpus, **system},
        "strategy": strategy,
        "training": {"global_batch_size": 256},
    }
    if model in ("mixtral-8x7b", "deepseek-v3"):
        data["strategy"] = {**strategy, "ep": 2}
    return scenario_from_dict(data)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(models, strategies, st.floats(1.1, 4.0))
def test_more_bandwidth_never_slows_a_step(model, strategy, factor):
    base = build(model, strategy)
    faster = build(
        model,
        strategy,
        intra_node={"bandwidth": base.system.intra_node.bandwidth * factor},
        inter_node={"bandwidth": base.system.inter_node.bandwidth * factor},
    )
    a, b = predict(base), predict(faster)
    if a.feasible:
        assert b.step_time_s <= a.step_time_s * (1 + 1e-12)


@SETTINGS
@given(models, strategies, st.floats(1.1, 4.0))
def test_more_flops_never_slows_a_step(model, strategy, factor):
    base = build(model, strategy)
    peaks = base.system.accelerator.peak_flops.model_dump()
    faster = build(
        model,
        strategy,
        accelerator={
            "preset": "h100-sxm5-80gb",
            "peak_flops": {k: v * factor for k, v in peaks.items()},
        },
    )
    a, b = predict(base), predict(faster)
    if a.feasible:
        assert b.step_time_s <= a.step_time_s * (1 + 1e-12)


@SETTINGS
@given(models, strategies)
def test_breakdown_sums_to_step_time_and_memory_is_non_negative(model, strategy):
    p = predict(build(model, strategy))
    assert all(v >= 0 for v in p.memory_bytes.values())
    assert p.peak_memory_bytes == pytest.approx(sum(p.memory_bytes.values()), rel=1e-9)
    if p.feasible:
        assert set(p.breakdown_s) == set(BREAKDOWN_KEYS)
        assert all(v >= 0 for v in p.breakdown_s.values())
        assert math.fsum(p.breakdown_s.values()) == pytest.approx(p.step_time_s, rel=1e-9)
    else:
        assert p.reason


@SETTINGS
@given(st.lists(strategies, min_size=1, max_size=12), models)
def test_batch_gives_the_same_numbers_as_one_at_a_time(strats, model):
    scenarios = [build(model, s) for s in strats]
    specs = [s.strategy for s in scenarios]
    result = evaluate(scenarios[0].model, scenarios[0].system, 256, StrategyBatch.from_specs(specs))
    for i, sc in enumerate(scenarios):
        single = predict(sc)
        assert single.feasible == bool(result.feasible[i])
        if single.feasible:
            assert single.step_time_s == result.step_time[i]
        assert single.peak_memory_bytes == result.peak_memory[i]


def test_from_arrays_matches_from_specs():
    grid = {
        "dp": np.array([8, 4]),
        "tp": np.array([8, 8]),
        "pp": np.array([1, 2]),
        "recompute": ["full", "none"],
        "pipeline_schedule": ["1f1b", "zero-bubble"],
    }
    a = StrategyBatch.from_arrays(**grid)
    b = StrategyBatch.from_specs([a.spec(0), a.spec(1)])
    for name in ("dp", "tp", "pp", "recompute", "schedule", "stride_dp"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.spec(1) == StrategySpec(dp=4, tp=8, pp=2, pipeline_schedule="zero-bubble")
