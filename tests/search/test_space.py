"""The search space: parsing of --fix, enumeration, and that collapsing equivalent
settings loses nothing (a brute-force product over raw knob values finds no better point)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from tests.search.helpers import tiny

from deepflow.errors import ConfigError
from deepflow.estimate import evaluate
from deepflow.parallel import StrategyBatch
from deepflow.search import Restriction, SearchSpace, parse_fix, parse_fixes
from deepflow.search.space import divisors, strategy_dict
from deepflow.specs import scenario_from_dict
from deepflow.specs.strategy import PipelineSchedule, Recompute, StrategySpec


def test_parse_fix_forms():
    assert parse_fix("tp=8") == ("tp", Restriction(values=(8,)))
    assert parse_fix("tp=1,2,4") == ("tp", Restriction(values=(1, 2, 4)))
    assert parse_fix("pp=2..16") == ("pp", Restriction(low=2, high=16))
    assert parse_fix("pp=..4") == ("pp", Restriction(high=4))
    assert parse_fix("sequence_parallel=true") == ("sequence_parallel", Restriction((True,)))
    key, r = parse_fix("recompute=full,selective")
    assert key == "recompute" and r.values == (Recompute.FULL, Recompute.SELECTIVE)
    assert parse_fix("axis_order=tp/dp/cp/pp")[1].values == (("tp", "dp", "cp", "pp"),)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tpp=8", "--fix: unknown strategy knob 'tpp'; did you mean 'tp'?"),
        ("tp", "--fix: expected KEY=VALUE"),
        ("tp=", "--fix tp: missing value"),
        ("tp=eight", "--fix tp: expected an integer (got 'eight')"),
        ("zero=5", "--fix zero: Input should be less than or equal to 3"),
        ("recompute=some", "--fix recompute:"),
        ("recompute=a..b", "--fix recompute: ranges LOW..HIGH apply to integer knobs only"),
        ("pp=8..2", "--fix pp: empty range"),
    ],
)
def test_parse_fix_errors_name_the_key(text, fragment):
    with pytest.raises(ConfigError) as info:
        parse_fix(text)
    assert fragment in str(info.value)


def test_a_knob_fixed_twice_must_satisfy_both():
    assert parse_fixes(["tp=1,2,4,8", "tp=4..16"])["tp"] == Restriction((4, 8), 4, 16)


def test_every_point_fills_the_cluster_once_and_pins_hold():
    space = SearchSpace.from_scenario(tiny(), ["tp=2..4", "recompute=full", "zero=1"])
    c = space.columns
    assert len(space) > 0
    assert np.all(c["dp"] * c["tp"] * c["pp"] * c["cp"] == 16)
    assert set(c["tp"].tolist()) == {2, 4}
    assert set(c["zero"].tolist()) == {1}
    assert set(c["recompute"].tolist()) == {2}  # index of Recompute.FULL
    rows = {tuple(int(v) for v in row) for row in zip(*c.values(), strict=True)}
    assert len(rows) == len(space), "no point is enumerated twice"


def test_non_searched_knobs_come_from_the_base_or_a_pin():
    space = SearchSpace.from_scenario(tiny(precision="fp16"), ["flash_attention=false"])
    d = strategy_dict(space.base, space.columns, 0)
    assert d["precision"] == "fp16" and d["flash_attention"] is False
    with pytest.raises(ConfigError, match="pin it to one value"):
        SearchSpace.from_scenario(tiny(), ["precision=fp16,bf16"])


def test_enumeration_is_deterministic_and_fingerprinted():
    a = SearchSpace.from_scenario(tiny(), ["pp=1,2"])
    b = SearchSpace.from_scenario(tiny(), ["pp=1,2"])
    assert all(np.array_equal(a.columns[k], b.columns[k]) for k in a.columns)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != SearchSpace.from_scenario(tiny(), ["pp=1"]).fingerprint()


def test_sweep_changes_only_the_accelerator_count():
    space = SearchSpace.from_scenario(tiny(), num_accelerators=32)
    assert space.system.num_accelerators == 32
    assert np.all(
        space.columns["dp"] * space.columns["tp"] * space.columns["pp"] * space.columns["cp"] == 32
    )


def test_moe_models_search_expert_parallelism():
    scenario = scenario_from_dict(
        {
            "model": "mixtral-8x7b",
            "system": {"preset": "dgx-h100", "num_accelerators": 64},
            "training": {"global_batch_size": 256},
        }
    )
    space = SearchSpace.from_scenario(
        scenario, ["tp=8", "pp=4", "cp=1", "zero=1", "recompute=full", "micro_batch_size=1"]
    )
    c = space.columns
    # MoE parallel folding: ep * expert_tp divides tp * cp * dp = 16; 8 experts; expert_tp
    # 1 or tp = 8
    assert set(c["ep"].tolist()) == {1, 2, 4, 8}
    assert set(c["expert_tp"].tolist()) == {1, 8}
    assert np.all((c["tp"] * c["cp"] * c["dp"]) % (c["ep"] * c["expert_tp"]) == 0)
    pairs = set(zip(c["ep"].tolist(), c["expert_tp"].tolist(), strict=True))
    assert (8, 1) in pairs and (2, 8) in pairs and (4, 8) not in pairs
    fixed = SearchSpace.from_scenario(
        scenario, ["tp=8", "pp=4", "cp=1", "zero=1", "recompute=full", "micro_batch_size=1",
                   "expert_tp=2,4"]
    ).columns  # fmt: skip
    assert set(zip(fixed["ep"].tolist(), fixed["expert_tp"].tolist(), strict=True)) == {
        (1, 2), (2, 2), (4, 2), (8, 2), (1, 4), (2, 4), (4, 4)
    }  # fmt: skip
    # without folding (expert_tp = tp) ep divides dp, as before
    unfolded = c["expert_tp"] == c["tp"]
    assert set(c["ep"][unfolded].tolist()) == {1, 2}


def test_collapsing_equivalent_settings_loses_no_point():
    """The raw product of knob values (every divisor, every flag, every schedule) has the same
    best step time and the same Pareto front (time, memory) as the canonical space."""
    scenario = tiny(gpus=8, gbs=16)
    fixes = ["zero=0,3", "recompute=none,full"]
    space = SearchSpace.from_scenario(scenario, fixes)
    d8 = divisors(8)
    raw = [
        (dp, tp, pp, vpp, cp, sp, zero, rc, mbs, sched)
        for tp, cp, pp, dp in itertools.product(d8, d8, d8, d8)
        if dp * tp * pp * cp == 8
        for vpp, sp, zero, rc, mbs, sched in itertools.product(
            d8, (False, True), (0, 3), (0, 2), divisors(16), range(len(PipelineSchedule))
        )
    ]
    names = (
        "dp",
        "tp",
        "pp",
        "vpp",
        "cp",
        "sequence_parallel",
        "zero",
        "recompute",
        "micro_batch_size",
        "pipeline_schedule",
    )
    cols = {n: np.array(v) for n, v in zip(names, zip(*raw, strict=True), strict=True)}
    brute = evaluate(scenario.model, scenario.system, 16, StrategyBatch.from_arrays(**cols))
    mine = evaluate(scenario.model, scenario.system, 16, space.batch(space.columns))
    assert len(space) < len(raw) / 4
    assert mine.step_time.min() == brute.step_time.min()

    def front(r):
        ok = np.flatnonzero(r.feasible)
        pts = sorted(set(zip(r.step_time[ok].tolist(), r.peak_memory[ok].tolist(), strict=True)))
        out, best = [], np.inf
        for t, m in pts:
            if m < best:
                out.append((t, m))
                best = m
        return out

    assert front(mine) == front(brute)


def test_the_batch_carries_every_base_setting():
    """Each point's batch entry is exactly the strategy reported for it, for a base whose
    non-searched settings all differ from their defaults (new spec fields are caught here)."""
    base = {
        "precision": "fp16",
        "flash_attention": False,
        "overlap_grad_reduce": False,
        "overlap_param_gather": False,
        "fp32_main_grads": False,
        "axis_order": ["tp", "dp", "cp", "pp"],
        "collective_algorithm": "tree",
    }
    base = {k: v for k, v in base.items() if k in StrategySpec.model_fields}
    space = SearchSpace.from_scenario(tiny(**base), ["tp=2", "pp=2", "zero=1"])
    batch = space.batch(space.columns)
    for i in (0, len(space) // 2, len(space) - 1):
        expected = StrategySpec.model_validate(strategy_dict(space.base, space.columns, i))
        assert batch.spec(i) == expected.replace(pipeline_schedule=expected.schedule)


def test_recompute_policies_are_data_and_off_by_default():
    plain = SearchSpace.from_scenario(tiny())
    rich = SearchSpace.from_scenario(tiny(), recompute_policies=True)
    assert len(rich) > len(plain)
    assert set(plain.columns["recompute_layers"].tolist()) == {-1}
    masks = set(rich.columns["recompute_modules"].tolist())
    assert len(masks) > 2  # 0 (none/full) and several module sets
    assert set(rich.columns["recompute_layers"].tolist()) > {-1}
    assert rich.fingerprint() != plain.fingerprint()
    # every point is a valid strategy, and the batch evaluates the same as its spec
    batch = rich.batch(rich.columns)
    picks = np.linspace(0, len(rich) - 1, 40).astype(int)
    specs = [StrategySpec.model_validate(strategy_dict(rich.base, rich.columns, i)) for i in picks]
    again = StrategyBatch.from_specs(specs)
    sc = tiny()
    a = evaluate(sc.model, sc.system, rich.global_batch_size, batch.take(picks))
    b = evaluate(sc.model, sc.system, rich.global_batch_size, again)
    assert np.array_equal(a.step_time, b.step_time)
    assert np.array_equal(a.peak_memory, b.peak_memory)


def test_recompute_module_and_layer_fixes():
    key, r = parse_fix("recompute_modules=core_attn,layernorm+mlp")
    assert key == "recompute_modules"
    assert [tuple(m.value for m in v) for v in r.values] == [("core_attn",), ("layernorm", "mlp")]
    space = SearchSpace.from_scenario(
        tiny(), ["recompute=selective", "recompute_modules=layernorm+mlp"]
    )
    assert len(set(space.columns["recompute_modules"].tolist())) == 1
    space = SearchSpace.from_scenario(tiny(), ["recompute=full", "recompute_layers=1,2"])
    assert set(space.columns["recompute_layers"].tolist()) == {1, 2}
    with pytest.raises(ConfigError, match="--fix recompute_modules"):
        parse_fix("recompute_modules=attn")
