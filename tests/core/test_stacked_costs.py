"""The layer costs evaluate the GEMMs and the element-wise ops of a layer together, on
arrays with the GEMMs (ops) on a leading axis, and skip the terms of features no strategy
of a batch uses; one strategy's collectives run on NumPy scalars. None of it changes a
bit: the stacked evaluation equals one evaluation per op, and one strategy equals its
element in a batch evaluated one candidate tile at a time."""

from dataclasses import fields
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.core.test_estimate_properties import SETTINGS, build, models, strategies
from tests.core.test_one_strategy import general

import deepflow.hardware.kernels as kernels
from deepflow.estimate.context import Env
from deepflow.estimate.layer_cost import (
    _gemm_costs,
    elementwise_cost,
    elementwise_costs,
    layer_costs,
    tp_pair_time,
)
from deepflow.hardware.kernels import kernel_table
from deepflow.specs.framework import FRAMEWORKS
from deepflow.workload.operators import Elementwise, Gemm, Shard
from deepflow.workload.transformer import layer_template

# the strategy knobs the skipped terms depend on, beyond those of the evaluator's tests;
# one precision per batch (a batch of several precisions looks its GEMM curves up per
# strategy, whose tile efficiencies round differently from one precision's: not compared)
precisions = st.sampled_from(["bf16", "fp32", "fp8"])
knobs = st.builds(dict, fused_epilogues=st.booleans())


def env_of(model: str, specs: list[dict]) -> Env:
    scenarios = [build(model, s) for s in specs]
    base = scenarios[0]
    batch = general([s.strategy for s in scenarios])
    return Env.build(base.model, base.system, batch, base.training.global_batch_size)


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = np.asarray(a[key], dtype=np.float64), np.asarray(b[key], dtype=np.float64)
        assert np.broadcast_to(x, y.shape).tobytes() == y.tobytes(), key


def layers(env: Env):
    framework = FRAMEWORKS[int(env.batch.framework[0])]
    yield layer_template(env.model, False, framework)
    if env.model.moe is not None:
        yield layer_template(env.model, True, framework)


@SETTINGS
@given(models, precisions, st.lists(st.tuples(strategies, knobs), min_size=1, max_size=4))
def test_stacked_ops_equal_one_op_at_a_time(model, precision, specs):
    env = env_of(model, [{**s, **k, "precision": precision} for s, k in specs])
    for layer in layers(env):
        gemms = [op for op in layer.ops if isinstance(op, Gemm)]
        for op, part in zip(gemms, _gemm_costs(env, layer, gemms), strict=True):
            same(part, _gemm_costs(env, layer, [op])[0])
        others = tuple(op for op in layer.ops if isinstance(op, Elementwise))
        for op, part in zip(others, elementwise_costs(env, others, layer), strict=True):
            same(part, elementwise_cost(env, op, layer))


@SETTINGS
@given(models, precisions, st.lists(st.tuples(strategies, knobs), min_size=2, max_size=4))
def test_one_strategy_equals_its_element_in_a_batch(model, precision, specs):
    """One strategy: every GEMM's candidate tiles along a broadcast axis, its collectives
    on NumPy scalars, the terms of the features it does not use skipped; the batch: one
    candidate at a time on arrays, every term costed where any strategy uses it."""
    specs = [{**s, **k, "precision": precision} for s, k in specs]
    with patch.object(kernels, "BROADCAST_CANDIDATES_MAX", 0):
        batch = layer_costs(env_of(model, specs))
    for i, spec in enumerate(specs):
        one = layer_costs(env_of(model, [spec]))
        for a, b in zip(one, batch, strict=True):
            for f in fields(a):
                x, y = getattr(a, f.name), getattr(b, f.name)
                assert x.shape == (1,), f.name
                assert x.tobytes() == y[i : i + 1].tobytes(), (f.name, x, y[i])


def test_elementwise_hand_worked():
    """A LayerNorm over the sequence-parallel hidden state of llama2-7b (h 4096) at tp 4,
    micro-batch 1 of 4,096 tokens, bf16: 4096 x 4096 / 4 values, forward 2 passes of 2
    bytes in one kernel, backward 3 passes: t = bytes / (BW mu) + kernels x t_0."""
    env = env_of("llama2-7b", [{"tp": 4, "sequence_parallel": True}])
    norm = Elementwise("norm", 4096, Shard.SEQUENCE, passes=2.0, backward_passes=3.0, saved=4096)
    table = kernel_table(env.system.accelerator)
    values = 4096 * 4096 / 4
    (part,) = elementwise_costs(env, (norm,))
    fwd = values * 2 * 2.0 / table.memory_bandwidth + table.memory_latency
    bwd = values * 3 * 2.0 / table.memory_bandwidth + table.memory_latency
    assert part["fwd"][0] == pytest.approx(fwd, rel=1e-12)
    assert part["bwd"][0] == pytest.approx(bwd, rel=1e-12)
    assert part["saved"][0] == values * 2.0  # its input, 2 bytes per value
    assert part["kernels"][0] == 1.0


def test_tp_pair_costs_each_collective_where_a_strategy_runs_it():
    """A batch with and without sequence parallelism: reduce-scatter + all-gather where it
    is on, the all-reduce where it is off, each equal to that strategy alone."""
    on = {"tp": 8, "sequence_parallel": True}
    off = {"tp": 8, "sequence_parallel": False}
    env = env_of("llama2-7b", [on, off])
    size = env.tokens * env.model.hidden_size * env.elem
    both = tp_pair_time(env, size)
    for i, spec in enumerate((on, off)):
        alone = env_of("llama2-7b", [spec])
        one = tp_pair_time(alone, alone.tokens * alone.model.hidden_size * alone.elem)
        assert one.tobytes() == both[i : i + 1].tobytes()
    # ring, 8 ranks in one domain: the all-reduce moves what reduce-scatter + all-gather move
    assert both[0] == pytest.approx(both[1], rel=1e-12)
