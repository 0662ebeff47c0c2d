"""The one-strategy shortcuts of ``deepflow.predict``'s entry give what the batch path gives,
bit for bit and dtype for dtype: ``StrategyBatch.from_specs`` of one spec (two packed
arrays), ``Env.build`` of a batch of one (the formulas on ``StrategyBatch.row``) and
``structural_violations`` of a batch of one (the rules on ``StrategyBatch.row``)."""

from dataclasses import fields

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.core.test_estimate_properties import SETTINGS, build, models, strategies

from deepflow.estimate.context import Env
from deepflow.parallel import StrategyBatch
from deepflow.parallel.batch import FP8_RECIPES, _one_spec
from deepflow.parallel.feasibility import RULES, Context, structural_violations
from deepflow.specs.fp8 import DEFAULT_FP8_RECIPE
from deepflow.specs.strategy import StrategySpec


def general(specs: list[StrategySpec]) -> StrategyBatch:
    """The batch of ``specs`` by the general path (a second copy of the first spec keeps
    ``from_specs`` off its one-spec path), without that copy."""
    return StrategyBatch.from_specs([*specs, specs[0]]).take(np.arange(len(specs)))


def assert_same_arrays(a: object, b: object, index: int = 0) -> None:
    """Every field of dataclass ``a`` (one strategy) equals element ``index`` of ``b``'s:
    arrays by dtype, shape (1,) and bytes, the rest by value."""
    for f in fields(a):  # type: ignore[arg-type]
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            y = np.asarray(y)[index : index + 1]
            assert x.dtype == y.dtype and x.shape == (1,), f.name
            assert x.tobytes() == y.tobytes(), (f.name, x, y)
        elif f.name in ("axis_orders", "stage_layers"):
            assert x == (y[index],), f.name


def test_one_spec_hand_worked():
    """tp 4, cp 2, dp 8, pp 2 in the default order (tp, cp, dp, pp): strides 1, 4, 8, 64;
    fp8 without a recipe holds the default recipe's code."""
    spec = StrategySpec(tp=4, cp=2, dp=8, pp=2, precision="fp8", fp8_param_gather=True)
    b = StrategyBatch.from_specs([spec])
    assert [int(getattr(b, f"stride_{a}")[0]) for a in ("tp", "cp", "dp", "pp")] == [1, 4, 8, 64]
    assert int(b.fp8_recipe[0]) == FP8_RECIPES.index(DEFAULT_FP8_RECIPE)
    assert bool(b.fp8_param_gather[0]) and not bool(b.deepep[0])
    assert int(b.etp[0]) == 4 and b.dp.dtype == np.int64 and b.deepep.dtype == bool
    assert_same_arrays(b, general([spec]))
    other = StrategySpec(tp=4, cp=2, dp=8, pp=2, axis_order=("pp", "dp", "cp", "tp"))
    b = StrategyBatch.from_specs([other])
    assert [int(getattr(b, f"stride_{a}")[0]) for a in ("tp", "cp", "dp", "pp")] == [32, 16, 2, 1]
    assert int(b.fp8_recipe[0]) == -1
    assert_same_arrays(b, general([other]))


def test_one_spec_strides_beyond_int64_wrap_as_the_arrays_do():
    """(2**24 - 1)**3 > 2**63: the packed path refuses (NumPy raises on the exact stride) and
    the general path's int64 products wrap, as for any batch."""
    d = 2**24 - 1
    spec = StrategySpec(tp=d, cp=d, dp=d, pp=1)
    assert _one_spec(StrategyBatch, spec) is None
    b = StrategyBatch.from_specs([spec])
    wrapped = (d**3 + 2**63) % 2**64 - 2**63
    assert int(b.stride_pp[0]) == wrapped != d**3
    assert int(b.stride_dp[0]) == d * d
    assert_same_arrays(b, general([spec]))


@SETTINGS
@given(models, st.lists(strategies, min_size=1, max_size=4))
def test_one_spec_env_and_rules_equal_the_batch(model, specs):
    scenarios = [build(model, s) for s in specs]
    base = scenarios[0]
    gbs = base.training.global_batch_size
    batch = general([s.strategy for s in scenarios])
    env = Env.build(base.model, base.system, batch, gbs)
    ctx = Context(base.model, base.system, gbs)
    first = structural_violations(ctx, batch)
    for i, scenario in enumerate(scenarios):
        one = StrategyBatch.from_specs([scenario.strategy])
        assert_same_arrays(one, batch, i)
        assert_same_arrays(Env.build(base.model, base.system, one, gbs), env, i)
        assert structural_violations(ctx, one).tolist() == [first[i]]


def test_env_of_one_strategy_hand_worked():
    """llama2-7b (seq 4096) on 64 GPUs, global batch 256: tp 2, cp 2, dp 16, micro-batch 2
    with sequence parallelism: tokens 2*4096/2 = 4096, sp_div 2, micro-batches
    256/(16*2) = 8, expert rows (sequence parallel) 4096/2*2 = 4096."""
    scenario = build(
        "llama2-7b", {"tp": 2, "cp": 2, "micro_batch_size": 2, "sequence_parallel": True}
    )
    one = StrategyBatch.from_specs([scenario.strategy])
    assert int(one.dp[0]) == 16
    env = Env.build(scenario.model, scenario.system, one, 256)
    assert env.tokens.tolist() == [4096.0] and env.sp_div.tolist() == [2.0]
    assert env.micro_batches.tolist() == [8.0] and env.expert_rows.tolist() == [4096.0]
    assert env.matmul_scale.tolist() == [1.0] and env.precision_high.dtype == np.int64
    assert env.pp_crosses_domain.dtype == bool and env.grad_bytes.tolist() == [4.0]


DENSE_AND_MOE = ("llama2-7b", "mixtral-8x7b")  # 32 heads each, 64 GPUs, global batch 256


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        # (2**62 + 1) * 64 = 2**68 + 64 wraps to 64 in int64: the mesh rule holds, as on
        # the arrays, and tp divides no head count (32 mod (2**62 + 1) = 32)
        ({"tp": [2**62 + 1, 8], "dp": [64, 8]}, ["tp-heads", None]),
        # ZeRO 7 is clamped to 3 (DeepSpeed runs it); -1 to 0, which it cannot run with pp
        (
            {"dp": [64, 32], "pp": [1, 2], "zero": [7, -1], "framework": "deepspeed"},
            [None, "framework"],
        ),
        ({"tp": [8, 8], "dp": [8, 8], "shard_degree": [-3, 3]}, [None, "shard-degree"]),
        # 20 virtual nodes over dp 8; 64 over dp 32
        ({"tp": [8, 2], "dp": [8, 32], "virtual_nodes": [20, 64]}, ["virtual-nodes", None]),
        (
            {"tp": [8, 8], "dp": [4, 4], "pp": [2, 2], "vpp": [2, 2]}
            | {"pipeline_schedule": ["zero-bubble", "1f1b"]},
            ["zero-bubble-vpp", None],
        ),
        # 3*8 ranks != 64; ep*expert_tp = 6 does not divide tp*cp*dp = 64 (MoE) or ep > 1
        # on a dense model
        ({"tp": [3, 8], "dp": [8, 8], "expert_tp": [5, 2], "ep": [2, 3]}, ["mesh", "ep"]),
    ],
)
@pytest.mark.parametrize("model", DENSE_AND_MOE)
def test_rules_on_one_strategy_equal_the_batch_at_the_edges(arrays, expected, model):
    """Batches from arrays (no spec validation): each strategy alone gets the verdict it
    gets in the batch, without a warning (warnings are errors in the tests)."""
    scenario = build(model, {"tp": 8})
    ctx = Context(scenario.model, scenario.system, 256)
    batch = StrategyBatch.from_arrays(**arrays)
    first = structural_violations(ctx, batch)
    names = [RULES[i].name if i >= 0 else None for i in first]
    if expected[1] == "ep":
        expected = [expected[0], "ep-dense" if model == "llama2-7b" else "ep-dp"]
    assert names == expected
    for i in range(len(batch)):
        assert structural_violations(ctx, batch.take(np.array([i]))).tolist() == [first[i]]
