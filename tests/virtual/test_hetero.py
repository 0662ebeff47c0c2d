"""Heterogeneous planner (VirtualFlow Form A and Form B, Or et al., MLSys 2022, arXiv
2009.09523): exact against brute force, never slower than the even split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.errors import ConfigError
from deepflow.virtual.hetero import (
    brute_force,
    cluster_from_dict,
    compare,
    even_units,
    load_cluster,
    solve,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "hetero-a100-v100.yaml"


def linear_tables(taus, overheads, total):
    u = np.arange(total + 1, dtype=float)
    out = []
    for tau, c in zip(taus, overheads, strict=True):
        t = c + u * tau
        t[0] = 0.0
        out.append(t)
    return out


def sync_per_participant(alpha):
    def sync(counts):
        n = np.atleast_2d(counts).sum(axis=1)
        return alpha * np.maximum(n - 1, 0)

    return sync


def step_of(tables, units, sync):
    compute = max(float(tables[k][u]) for k, row in enumerate(units) for u in row)
    counts = np.array([[sum(1 for u in row if u > 0) for row in units]])
    return compute + float(sync(counts)[0])


def test_hand_worked_two_types() -> None:
    # tau = 1 (fast) and 3 (slow), one device each, V = 4: fast takes 3 (T = 3), slow 1 (T = 3)
    tables = linear_tables([1.0, 3.0], [0.0, 0.0], 4)
    units, compute, sync_s = solve(tables, [1, 1], 4, sync_per_participant(0.0))
    assert units == ((3,), (1,))
    assert compute == 3.0 and sync_s == 0.0
    # an expensive all-reduce makes the fast device alone better: T = 4 < 3 + 2
    units, compute, sync_s = solve(tables, [1, 1], 4, sync_per_participant(2.0))
    assert units == ((4,), (0,)) and compute + sync_s == 4.0


@settings(max_examples=60)
@given(
    taus=st.lists(st.floats(0.1, 5.0), min_size=2, max_size=2),
    overheads=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2),
    devices=st.lists(st.integers(0, 2), min_size=2, max_size=2).filter(lambda d: sum(d) > 0),
    total=st.integers(1, 7),
    alpha=st.floats(0.0, 2.0),
)
def test_planner_matches_brute_force(taus, overheads, devices, total, alpha) -> None:
    tables = linear_tables(taus, overheads, total)
    sync = sync_per_participant(alpha)
    units, compute, sync_s = solve(tables, devices, total, sync)
    assert sum(map(sum, units)) == total
    assert step_of(tables, units, sync) == pytest.approx(compute + sync_s)
    assert compute + sync_s == pytest.approx(brute_force(tables, devices, total, sync), rel=1e-12)


@settings(max_examples=100)
@given(
    taus=st.lists(st.floats(0.01, 10.0), min_size=1, max_size=3),
    devices=st.lists(st.integers(1, 6), min_size=3, max_size=3),
    total=st.integers(1, 64),
    alpha=st.floats(0.0, 1.0),
)
def test_never_slower_than_the_even_split(taus, devices, total, alpha) -> None:
    devices = devices[: len(taus)]
    tables = linear_tables(taus, [0.05] * len(taus), total)
    sync = sync_per_participant(alpha)
    _, compute, sync_s = solve(tables, devices, total, sync)
    even = step_of(tables, even_units(devices, total), sync)
    assert compute + sync_s <= even * (1 + 1e-12)


def test_a100_v100_mix_gains_over_the_even_split() -> None:
    result = compare(load_cluster(EXAMPLE))
    a100, v100 = result.profiles
    assert a100.feasible and v100.feasible
    assert v100.vn_time_s > 2 * a100.vn_time_s  # V100 is the slower type
    assert v100.peak_memory_bytes <= v100.pool.system.accelerator.memory_capacity
    assert result.form_a.step_time_s < result.even.step_time_s
    assert result.gain > 0.3  # the planner moves VNs to the A100s
    assert result.form_b.step_time_s <= result.form_a.step_time_s * (1 + 1e-12)
    assert sum(map(sum, result.form_a.units)) == 256
    assert sum(map(sum, result.form_b.samples())) == 512
    weights = result.form_b.gradient_weights()
    assert sum(map(sum, weights)) == pytest.approx(1.0)


def test_pool_that_does_not_fit_gets_no_work() -> None:
    data = {
        "model": "megatron-gpt-1.7b",
        "pools": [
            {"system": "dgx-a100-80gb", "count": 2},
            {"system": "dgx-v100", "count": 2},
        ],
        "global_batch_size": 64,
        "virtual_nodes": 8,
        "strategy": {"precision": "fp16"},
    }
    result = compare(cluster_from_dict(data))
    assert not result.profiles[1].feasible
    assert "out of memory" in (result.profiles[1].reason or "")
    assert not result.even.feasible
    assert result.form_a.feasible and result.form_a.participants[1] == 0


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"virtual_nodes": 3}, "virtual_nodes"),
        ({"pools": []}, "pools"),
        ({"pools": [{"system": "dgx-v100"}]}, "pools[0].count"),
        ({"strategy": {"dp": 2}}, "strategy.dp"),
        ({"strategy": {"tp": 3}}, "pools[0].count"),
        ({"pool": []}, "pool"),
    ],
)
def test_errors_name_the_key(patch, key) -> None:
    data = {
        "model": "megatron-gpt-1.7b",
        "pools": [{"system": "dgx-a100-80gb", "count": 8}],
        "global_batch_size": 64,
        "virtual_nodes": 8,
        **patch,
    }
    with pytest.raises(ConfigError) as info:
        cluster_from_dict(data)
    assert info.value.path == key
