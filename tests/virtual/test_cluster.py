"""The multi-job cluster experiment: VirtualFlow's scheduler (deploy/scheduler.py) against
a static baseline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deepflow.cli import main
from deepflow.errors import ConfigError
from deepflow.virtual.cluster import (
    ClusterJob,
    cluster_from_dict,
    load_cluster_trace,
    simulate_cluster,
    weighted_fair_shares,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "cluster-jobs.yaml"


def toy_step(job: ClusterJob, n: int) -> float:
    """Step time with a sub-linear speed-up: ``base * (V/n + 0.1 log2 n)``."""
    return job.global_batch_size * 1e-3 * (job.virtual_nodes / n + 0.1 * math.log2(n))


def toy_resize(job: ClusterJob, old: int, new: int) -> float:
    return 5.0 + (1.0 if new > old else 0.0)


def test_fair_shares_hand_worked() -> None:
    # 16 GPUs, priorities 1 and 10: shares 16/11 -> 1 and 160/11 -> 8 (power of two);
    # neither covers its demand, so both get their share; of the 7 left the priority-10
    # job cannot double (8 > 7), the other doubles to its demand 2
    assert weighted_fair_shares([(0, 1, 2), (1, 10, 16)], 16) == {0: 2, 1: 8}
    # equal priorities, demands 8, 4, 4: the two 4s are covered first, then 8
    assert weighted_fair_shares([(0, 1, 8), (1, 1, 4), (2, 1, 4)], 16) == {0: 8, 1: 4, 2: 4}
    # 4 GPUs for three equal jobs: shares 1 each, the GPU left doubles the first listed
    assert weighted_fair_shares([(0, 1, 4), (1, 1, 4), (2, 1, 4)], 4) == {0: 2, 1: 1, 2: 1}
    # shares above the GPUs are halved lowest priority first: 8 * 1/2 -> 4 and 4, 4 > 3
    # GPUs... with 3 GPUs, priorities 1 and 1: 1.5 -> 1 each, then 1 doubles to 2
    assert weighted_fair_shares([(0, 1, 8), (1, 1, 8)], 3) == {0: 2, 1: 1}


@settings(max_examples=200, deadline=None)
@given(
    jobs=st.lists(
        st.tuples(st.sampled_from([1, 2, 5, 10]), st.sampled_from([1, 2, 4, 8, 16])),
        min_size=1,
        max_size=8,
    ),
    gpus=st.sampled_from([8, 16, 32]),
)
def test_fair_shares_are_powers_of_two_within_demand_and_capacity(jobs, gpus) -> None:
    entries = [(i, float(p), d) for i, (p, d) in enumerate(jobs)]
    alloc = weighted_fair_shares(entries, gpus)
    assert sum(alloc.values()) <= gpus
    for i, _, d in entries:
        assert 1 <= alloc[i] <= d and alloc[i] & (alloc[i] - 1) == 0


def job(name: str, arrival: float, demand: int, priority: float = 1.0, steps: int = 100):
    return ClusterJob(name, arrival, "m", 16 * demand, 2 * demand, steps, demand, priority)


def test_hand_worked_two_jobs() -> None:
    """A alone on 8 GPUs (demand 8); B (demand 8, same priority) arrives: elastic halves A
    to 4 and starts B on 4, then grows B back to 8 when A ends; static starts B only when
    A ends."""
    jobs = [job("A", 0.0, 8), job("B", 10.0, 8)]
    el = simulate_cluster(jobs, 8, toy_step, toy_resize, "elastic")
    stc = simulate_cluster(jobs, 8, toy_step, toy_resize, "static")
    a, b = stc.jobs
    t8 = toy_step(jobs[0], 8)
    assert a.end_s == pytest.approx(100 * t8)
    assert b.start_s == pytest.approx(a.end_s) and b.jct_s == pytest.approx(a.end_s + 100 * t8 - 10)
    ea, eb = el.jobs
    assert ea.allocations == ((0.0, 8), (10.0, 4)) and eb.allocations[0] == (10.0, 4)
    assert ea.resizes == 1 and eb.resizes == 1
    # A: 10 s at 8 GPUs, a 5 s pause, the rest at 4 GPUs
    t4 = toy_step(jobs[0], 4)
    assert ea.end_s == pytest.approx(10 + 5 + (100 - 10 / t8) * t4)
    assert el.resizes == 2


def traces():
    entry = st.tuples(
        st.floats(0, 2000, allow_nan=False),
        st.sampled_from([1, 2, 4, 8]),
        st.sampled_from([1.0, 5.0, 10.0]),
        st.integers(10, 400),
    )
    return st.lists(entry, min_size=1, max_size=7)


@settings(max_examples=150, deadline=None)
@given(trace=traces(), gpus=st.sampled_from([8, 16]))
def test_elastic_equals_static_without_membership_change(trace, gpus) -> None:
    """Where the elastic scheduler never resizes a job, both policies are the same
    schedule: the same starts, ends and JCTs."""
    jobs = [job(f"j{i}", a, d, p, s) for i, (a, d, p, s) in enumerate(trace)]
    el = simulate_cluster(jobs, gpus, toy_step, toy_resize, "elastic")
    assume(el.resizes == 0)
    stc = simulate_cluster(jobs, gpus, toy_step, toy_resize, "static")
    assert stc.jobs == el.jobs
    assert stc.average_jct_s == el.average_jct_s and stc.makespan_s == el.makespan_s


@settings(max_examples=100, deadline=None)
@given(trace=traces(), gpus=st.sampled_from([8, 16]))
def test_every_job_finishes_and_allocations_fit(trace, gpus) -> None:
    jobs = [job(f"j{i}", a, d, p, s) for i, (a, d, p, s) in enumerate(trace)]
    for policy in ("elastic", "static"):
        r = simulate_cluster(jobs, gpus, toy_step, toy_resize, policy)
        for j, o in zip(jobs, r.jobs, strict=True):
            assert o.start_s >= j.arrival_s and math.isfinite(o.end_s)
            assert o.jct_s == o.end_s - j.arrival_s
            # at least the job's steps at its fastest allocation
            assert o.end_s - o.start_s >= j.steps * toy_step(j, j.demand) * (1 - 1e-9)
        # at no time do the allocations exceed the cluster
        events = sorted({t for o in r.jobs for t, _ in o.allocations})
        for t in events:
            used = 0
            for o in r.jobs:
                live = [n for s, n in o.allocations if s <= t]
                if live and o.start_s <= t < o.end_s:
                    used += live[-1]
            assert used <= gpus


def test_single_job_never_resizes() -> None:
    jobs = [job("only", 3.0, 4)]
    el = simulate_cluster(jobs, 16, toy_step, toy_resize, "elastic")
    assert (
        el.resizes == 0
        and el.jobs == simulate_cluster(jobs, 16, toy_step, toy_resize, "static").jobs
    )


def test_example_trace_is_deterministic_and_elastic_helps() -> None:
    a = load_cluster_trace(EXAMPLE)
    b = load_cluster_trace(EXAMPLE)
    assert a.jobs == b.jobs and len(a.jobs) == 20
    assert load_cluster_trace(EXAMPLE, seed=3).jobs != a.jobs
    el = simulate_cluster(a.jobs, a.gpus, a.step_time, a.resize_time, "elastic")
    st_ = simulate_cluster(a.jobs, a.gpus, a.step_time, a.resize_time, "static")
    assert el.jobs == simulate_cluster(b.jobs, b.gpus, b.step_time, b.resize_time, "elastic").jobs
    assert el.resizes > 0 and st_.resizes == 0
    assert el.average_jct_s < st_.average_jct_s


def test_cli_cluster_table_and_json() -> None:
    out = CliRunner().invoke(main, ["elastic", "--cluster", str(EXAMPLE)])
    assert out.exit_code == 0, out.output
    assert "JCT elastic" in out.output and "makespan" in out.output
    out1 = CliRunner().invoke(main, ["elastic", "--cluster", str(EXAMPLE), "--json", "--seed", "2"])
    out2 = CliRunner().invoke(main, ["elastic", "--cluster", str(EXAMPLE), "--json", "--seed", "2"])
    assert out1.exit_code == 0 and out1.output == out2.output
    data = json.loads(out1.output)
    assert len(data["elastic"]["jobs"]) == 20 and data["static"]["resizes"] == 0


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"accelerators": 0}, "accelerators"),
        (
            {
                "generate": {
                    "jobs": 2,
                    "jobs_per_hour": 1,
                    "demands": [3],
                    "templates": [
                        {
                            "model": "bert-large",
                            "batch_per_gpu": 8,
                            "virtual_nodes_per_gpu": 1,
                            "steps": 10,
                        }
                    ],
                }
            },
            "demands[0]",
        ),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_trace_names_the_key(tmp_path: Path, patch: dict, key: str) -> None:
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(patch)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        cluster_from_dict(data)
    bad = tmp_path / "c.yaml"
    bad.write_text(yaml.safe_dump(data))
    out = CliRunner().invoke(main, ["elastic", "--cluster", str(bad)])
    assert out.exit_code == 2 and key in out.output


def test_infeasible_job_is_reported_not_run() -> None:
    def step(j: ClusterJob, n: int) -> float:
        return math.inf if j.name == "huge" and n == 1 else toy_step(j, n)

    jobs = [job("huge", 0.0, 4), job("ok", 1.0, 2)]
    r = simulate_cluster(jobs, 8, step, toy_resize, "elastic")
    assert "does not fit on 1 GPU" in r.jobs[0].reason and math.isinf(r.jobs[0].jct_s)
    assert r.ran == (r.jobs[1],) and math.isfinite(r.average_jct_s)
