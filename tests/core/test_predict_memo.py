"""``deepflow.predict`` one strategy at a time: the memo of part costs
(:mod:`deepflow.estimate.memo`) returns exactly what the full evaluation computes."""

import dataclasses
import gc
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.core.test_estimate_properties import SETTINGS, build, models, strategies

from deepflow.errors import ConfigError
from deepflow.estimate import evaluate, predict
from deepflow.estimate import memo as memo_module
from deepflow.estimate.context import Env
from deepflow.estimate.evaluate import (
    PART_COSTS,
    STAGE_STATE,
    STEP_INPUTS,
    STEP_TIMES,
    clear_memos,
)
from deepflow.estimate.memo import ArgsMemo, Memo, clear_codes, code, fingerprint
from deepflow.estimate.prediction import Prediction, prediction_at
from deepflow.network.collectives import Algorithm
from deepflow.parallel import StrategyBatch
from deepflow.specs import Scenario, scenario_from_dict


def full(scenario: Scenario) -> Prediction:
    """The prediction without the memo: a batch of two copies is evaluated in one pass."""
    batch = StrategyBatch.from_specs([scenario.strategy, scenario.strategy])
    result = evaluate(scenario.model, scenario.system, scenario.training.global_batch_size, batch)
    return prediction_at(result, 0, scenario.name, scenario.training.tokens)


def assert_same(a: Prediction, b: Prediction) -> None:
    """Bit-identical predictions (``repr`` keeps every bit of a float, and NaN equal)."""
    assert repr(a) == repr(b)


def sharing(base: Scenario, strategy) -> Scenario:
    """``base`` with another strategy, the same model and system objects (as an optimizer
    loop holds them)."""
    return Scenario.model_construct(**{**dict(base), "strategy": strategy})


@SETTINGS
@given(models, st.lists(strategies, min_size=2, max_size=6))
def test_one_at_a_time_matches_the_full_evaluation(model, specs):
    base = build(model, specs[0])
    loop = [sharing(base, build(model, s).strategy) for s in specs]
    for scenario in loop + loop:  # a later strategy may add a path and drop the entries
        assert_same(predict(scenario), full(scenario))
    hits = PART_COSTS.hits
    for scenario in loop:  # every path is in the key now: all served from the memo
        assert_same(predict(scenario), full(scenario))
    assert PART_COSTS.hits == hits + len(loop)


# one knob changed at a time: a key that missed the knob would serve the base's costs
one_change = st.sampled_from(
    [
        ("tp", 1), ("tp", 2), ("tp", 8), ("cp", 1), ("cp", 2), ("pp", 1), ("pp", 4),
        ("vpp", 2), ("micro_batch_size", 1), ("micro_batch_size", 4), ("zero", 0),
        ("zero", 3), ("sequence_parallel", True), ("sequence_parallel", False),
        ("recompute", "none"), ("recompute", "full"), ("recompute", "selective"),
        ("recompute_layers", 1), ("flash_attention", False), ("flash_attention", True),
        ("precision", "fp8"), ("precision", "fp16"), ("fused_epilogues", False),
        ("fp32_main_grads", False), ("overlap_grad_reduce", False),
        ("overlap_param_gather", True), ("reshard_after_forward", False),
        ("collective_algorithm", "tree"), ("framework", "fsdp"), ("framework", "deepspeed"),
    ]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models, strategies, st.lists(one_change, min_size=1, max_size=6))
def test_each_changed_knob_is_in_the_key(model, spec, changes):
    base = build(model, spec)
    loop = [base]
    for key, value in changes:
        kept = {k: v for k, v in spec.items() if not k.startswith("recompute")}
        changed = {**(kept if key.startswith("recompute") else spec), key: value}
        if key == "recompute_layers":
            changed["recompute"] = "full"
        try:
            loop.append(sharing(base, build(model, changed).strategy))
        except ConfigError:
            continue
    for scenario in loop + loop:
        assert_same(predict(scenario), full(scenario))


@SETTINGS
@given(models, strategies, st.sampled_from(["dgx-a100-80gb", "dgx-h100", "dgx-b200"]))
def test_a_changed_model_or_system_is_never_served_stale(model, spec, system):
    warm = build(model, spec)
    predict(warm)
    other_system = scenario_from_dict(
        {
            "model": model,
            "system": {"preset": system, "num_accelerators": 64},
            "strategy": warm.strategy.model_dump(exclude_none=True),
            "training": {"global_batch_size": 256},
        }
    )
    assert_same(predict(other_system), full(other_system))
    deeper = warm.model.model_copy(update={"hidden_size": warm.model.hidden_size * 2})
    other_model = Scenario.model_construct(**{**dict(warm), "model": deeper})
    assert_same(predict(other_model), full(other_model))


def env_of(**strategy) -> Env:
    scenario = build("llama2-7b", strategy)
    batch = StrategyBatch.from_specs([scenario.strategy])
    return Env.build(scenario.model, scenario.system, batch, 256)


def test_reads_behind_a_branch_join_the_key():
    """A path read only on some branch joins the key when first read, and the entries
    stored before, keyed without it, are dropped."""

    def pick(env: Env) -> int:
        return int(env.batch.tp[0]) if env.batch.cp[0] == 1 else int(env.batch.pp[0])

    memo = Memo(pick)
    assert memo(env_of(tp=2, cp=1)) == 2
    assert memo.paths == ("batch.cp", "batch.tp")
    assert memo(env_of(tp=2, cp=2, pp=4)) == 4
    assert memo.paths == ("batch.cp", "batch.tp", "batch.pp")
    assert len(memo.entries) == 1
    assert memo(env_of(tp=2, cp=2, pp=2)) == 2  # pp is in the key now
    assert memo(env_of(tp=4, cp=1)) == 4
    assert memo(env_of(tp=2, cp=2, pp=4)) == 4
    assert (memo.hits, memo.misses) == (1, 4)


def test_entries_are_bounded_least_recently_used_first_out():
    memo = Memo(lambda env: int(env.batch.tp[0]), maxsize=2)
    for tp in (1, 2, 1, 4):
        memo(env_of(tp=tp))
    assert len(memo.entries) == 2
    assert memo.misses == 3
    memo(env_of(tp=1))  # kept: used after tp=2
    assert memo.misses == 3
    memo(env_of(tp=2))  # evicted
    assert memo.misses == 4


def test_a_batch_of_several_strategies_is_not_memoized():
    memo = Memo(lambda env: env.batch.tp * 1.0)
    scenario = build("llama2-7b", {"tp": 2})
    batch = StrategyBatch.from_specs([scenario.strategy] * 3)
    memo(Env.build(scenario.model, scenario.system, batch, 256))
    assert (memo.hits, memo.misses, len(memo.entries)) == (0, 0, 0)


def test_cached_arrays_are_read_only_copies():
    env = env_of(tp=2)
    source = np.array([1.0, 2.0])
    memo = Memo(lambda e: (source, source))
    first, second = memo(env)
    assert first is second  # shared parts stay shared
    assert first is not source and source.flags.writeable
    with pytest.raises(ValueError):
        first[0] = 3.0
    dense = PART_COSTS(env)[0]
    with pytest.raises(ValueError):
        dense.forward_compute[0] = 0.0


def test_fingerprints_tell_apart_what_computes_differently():
    def key(value):
        return fingerprint(value, [])

    assert key(0.0) != key(-0.0)
    assert key(float("nan")) == key(float("nan"))
    assert len({key(1), key(1.0), key(True), key(np.float64(1.0)), key(np.array([1.0]))}) == 5
    assert key(np.array([1.0])) != key(np.array([1.0, 1.0])) != key(np.array([1], dtype=int))
    assert key(np.array([0.0])) != key(np.array([-0.0]))
    spec = object()
    refs: list[object] = []
    assert fingerprint(spec, refs) == ("id", id(spec)) and refs == [spec]


def test_specs_rebuilt_from_the_same_mapping_share_the_costs():
    data = {
        "model": "llama2-7b",
        "system": {"preset": "dgx-h100", "num_accelerators": 64},
        "strategy": {"tp": 4, "pp": 2, "micro_batch_size": 2},
        "training": {"global_batch_size": 256},
    }
    first, again = scenario_from_dict(data), scenario_from_dict(data)
    assert first.model is not again.model and first.system is not again.system
    predict(first)
    hits = PART_COSTS.hits
    assert_same(predict(again), full(again))
    assert PART_COSTS.hits == hits + 1


@SETTINGS
@given(
    models,
    st.lists(strategies, min_size=2, max_size=8),
    st.sampled_from(["dgx-h100", "dgx-a100-80gb", "gb200-nvl72"]),
)
def test_predict_one_at_a_time_equals_one_batch_of_all(model, specs, preset):
    """``deepflow.predict`` on each strategy (the one-strategy path: the memo of part costs,
    the placements kept per mesh, the per-system tables, the rules that stop at the first
    violation, the batch indexed by a view) equals the element of one batch evaluation
    of all of them (several pipeline splits, no memo), bit for bit, on every field."""
    base = build(model, specs[0], preset=preset)
    loop = [sharing(base, build(model, s, preset=preset).strategy) for s in specs]
    batch = StrategyBatch.from_specs([s.strategy for s in loop])
    result = evaluate(base.model, base.system, base.training.global_batch_size, batch)
    for i, scenario in enumerate(loop):
        expected = prediction_at(result, i, scenario.name, scenario.training.tokens)
        assert_same(predict(scenario), expected)
        assert_same(predict(scenario), expected)  # again, from what the first call kept


def test_args_memo_keys_every_bit_of_its_arguments():
    """A hit only where every argument is the same value: arrays by dtype, shape and
    bytes, NumPy scalars bit by bit (-0.0 is not 0.0), other objects by identity."""
    calls = []

    def record(*args):
        calls.append(args)
        return np.asarray([len(calls)], dtype=float)

    memo = ArgsMemo(record)
    a = np.array([[1.0], [2.0]])
    token = object()
    first = memo(a, np.float64(0.0), token)
    assert memo(a.copy(), np.float64(0.0), token) is first  # same values: a hit
    assert not first.flags.writeable  # a caller cannot alter a later hit
    memo(a.reshape(1, 2), np.float64(0.0), token)  # another shape
    memo(a.astype(np.float32), np.float64(0.0), token)  # another dtype
    memo(a, np.float64(-0.0), token)  # another bit
    memo(a, np.float64(0.0), object())  # another object
    assert (memo.hits, memo.misses) == (1, 5)
    memo.clear()
    assert (memo.hits, memo.misses, len(memo.entries)) == (0, 0, 0)


def test_clear_memos_empties_the_step_level_memos_too():
    scenario = build("llama2-7b", {"tp": 2, "pp": 2, "dp": 16})
    predict(scenario)
    assert STEP_INPUTS.entries and STAGE_STATE.entries and STEP_TIMES.entries
    clear_memos()
    assert not (STEP_INPUTS.entries or STAGE_STATE.entries or STEP_TIMES.entries)
    assert PART_COSTS.misses == 0


def test_step_level_terms_are_reused_across_micro_batch_sizes_and_recomputation():
    """The stage state and the step-level times read the mesh and split, not the
    micro-batch size or the recomputation: strategies that differ only in those are
    served from the argument memos, and still equal the unmemoized evaluation."""
    clear_memos()
    base = build("llama2-7b", {"tp": 2, "pp": 2, "dp": 16, "micro_batch_size": 1})
    loop = [
        sharing(base, base.strategy.replace(micro_batch_size=mbs, recompute=rc))
        for mbs in (1, 2, 4)
        for rc in ("none", "selective", "full")
    ]
    for scenario in loop:
        assert_same(predict(scenario), full(scenario))
    assert (STAGE_STATE.misses, STEP_TIMES.misses) == (1, 1)
    assert STAGE_STATE.hits == STEP_TIMES.hits == len(loop) - 1


def test_codes_tell_apart_what_computes_differently():
    """A code stands for a fingerprint: equal values (fresh objects) share it, values
    whose fingerprints differ (a sign bit, a dtype, a shape, a type) never do."""
    assert code(np.array([2.5])) == code(np.array([2.5]))
    assert code(np.float64(2.5)) == code(np.float64(2.5)) == code(np.array([2.5])[0])
    assert code(0.0) != code(-0.0)
    assert code(np.float64(0.0)) != code(np.float64(-0.0))
    assert code(np.array([0.0])) != code(np.array([-0.0]))
    assert code(float("nan")) == code(float("nan"))
    ones = [
        1, 1.0, True, np.float64(1.0), np.int64(1), np.bool_(True), np.float32(1.0),
        np.array([1.0]), np.array([1]), np.array([True]), np.array([1.0], dtype=np.float32),
        np.array([[1.0]]), np.array(1.0), (1,), "1",
    ]  # fmt: skip
    assert len({code(v) for v in ones}) == len(ones)
    assert len({code(v) for v in (None, {}, (), {"dp": Algorithm.RING})}) == 4
    assert code({"dp": Algorithm.RING}) == code({"dp": Algorithm.RING})
    assert code({"dp": Algorithm.RING}) != code({"dp": Algorithm.TREE})
    assert code(Algorithm.RING) == code(Algorithm.RING) != code(Algorithm.TREE)


class _Token:
    """An object kept by identity (weakly referenceable)."""


def test_a_code_kept_by_identity_holds_its_object_and_is_never_given_twice():
    token = _Token()
    alive = weakref.ref(token)
    number = code(token)
    assert code(token) == number and code(_Token()) != number
    del token
    gc.collect()
    assert alive() is not None  # held by the table: its id cannot be reused
    clear_codes()
    gc.collect()
    assert alive() is None  # released with the table
    later = [code(_Token()) for _ in range(20)] + [code(np.array([2.5]))]
    assert number not in later and min(later) > number  # a new code for what comes after


def test_the_table_of_codes_is_bounded_and_codes_stay_unique(monkeypatch):
    clear_codes()
    monkeypatch.setattr(memo_module, "CODES_MAXSIZE", 8)
    numbers = [code(np.array([float(i)])) for i in range(30)]
    assert len(memo_module._CODES) <= 8
    assert len(set(numbers)) == 30  # no two values share a code, across the clears
    again = code(np.array([29.0]))
    assert again == numbers[-1]  # still in the table
    assert code(np.array([0.0])) not in numbers  # emptied since: a new code, a miss
    clear_codes()


def unpacked(env: Env) -> Env:
    """``env`` with its batch of one built field by field (not packed)."""
    batch = StrategyBatch.from_specs([env.batch.spec(0)] * 2).take(np.array([0]))
    assert batch.packed_values is None and env.batch.packed_values is not None
    return Env.build(env.model, env.system, batch, env.global_batch_size)


def test_a_packed_batch_keys_on_the_fields_read():
    """A packed batch of one is keyed on the Python values of the packed fields read: a
    strategy that differs in one of them (an int, a flag, a stride) misses, one that
    differs only in a field not read hits; an unpacked batch of the same strategy has
    a key of its own and gets the same value."""

    def read(env: Env) -> tuple[int, bool, int]:
        b = env.batch
        return int(b.tp[0]), bool(b.sequence_parallel[0]), int(b.stride_dp[0])

    memo = Memo(read)
    base = {"tp": 2, "pp": 2, "sequence_parallel": True}
    assert memo(env_of(**base)) == (2, True, 2)
    assert memo(env_of(**base, micro_batch_size=4)) == (2, True, 2)  # not read: a hit
    assert memo(env_of(**{**base, "tp": 4})) == (4, True, 4)
    assert memo(env_of(**{**base, "sequence_parallel": False})) == (2, False, 2)
    reordered = memo(env_of(**base, axis_order=["dp", "tp", "cp", "pp"]))
    assert reordered == (2, True, 1)
    assert (memo.hits, memo.misses) == (1, 4)
    env = env_of(**base)
    plain = unpacked(env)
    assert memo.key(plain) != memo.key(env)
    assert memo(plain) == (2, True, 2)  # its own entry: a miss, the same value
    assert memo(unpacked(env)) == (2, True, 2)
    assert (memo.hits, memo.misses) == (2, 5)


def test_env_values_are_keyed_bit_by_bit():
    """Two environments differing only in a derived value's sign bit or dtype miss."""
    memo = Memo(lambda env: np.copysign(1.0, env.tokens))
    env = env_of(tp=2)
    zero = dataclasses.replace(env, tokens=np.array([0.0]))
    negative = dataclasses.replace(env, tokens=np.array([-0.0]))
    single = dataclasses.replace(env, tokens=np.array([0.0], dtype=np.float32))
    assert memo(zero)[0] == 1.0 and memo(negative)[0] == -1.0
    assert memo(single).dtype == np.float32
    assert memo(dataclasses.replace(env, tokens=np.array([-0.0])))[0] == -1.0
    assert (memo.hits, memo.misses) == (1, 3)


@SETTINGS
@given(models, st.lists(strategies, min_size=1, max_size=4))
def test_an_unpacked_batch_of_one_evaluates_as_the_packed_one(model, specs):
    """The one-strategy path on a batch built field by field (its own memo keys) gives
    the prediction of the packed batch and of the unmemoized evaluation, bit for bit."""
    base = build(model, specs[0])
    for scenario in [sharing(base, build(model, s).strategy) for s in specs]:
        expected = full(scenario)
        batch = StrategyBatch.from_specs([scenario.strategy] * 2).take(np.array([0]))
        result = evaluate(
            scenario.model, scenario.system, scenario.training.global_batch_size, batch
        )
        got = prediction_at(result, 0, scenario.name, scenario.training.tokens)
        assert_same(got, expected)
        assert_same(predict(scenario), expected)
