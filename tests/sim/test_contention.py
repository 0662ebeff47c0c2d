"""Link contention in the training-step simulator (``simulate --contention``,
:mod:`deepflow.sim.contention`): properties of the engine on random task graphs, and the
agreement with the closed-form estimator on contended and uncontended scenarios."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.estimate import predict
from deepflow.graph.ir import Task, TaskGraph, TaskKind
from deepflow.sim import simulate
from deepflow.sim.contention import SCALE_OUT, SCALE_UP, Contention, ports_of
from deepflow.sim.executor import execute
from deepflow.specs import scenario_from_dict

from .grid import grid

_STREAMS = ("compute", "dp", "pp")
_CATEGORIES = ("compute", "tp_comm", "ep_comm", "dp_comm", "pp_comm")


@st.composite
def _graph(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(1, 14))
    tasks = []
    for i in range(n):
        category = draw(st.sampled_from(_CATEGORIES))
        kind = TaskKind.COMPUTE if category == "compute" else TaskKind.COLLECTIVE
        deps = draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else []
        tasks.append(
            Task(
                i,
                f"t{i}",
                kind,
                draw(st.sampled_from([0, 1])),
                draw(st.sampled_from(_STREAMS)),
                draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])),
                tuple(deps),
                category=category,
            )
        )
    ports = {c: draw(st.sampled_from([SCALE_UP, SCALE_OUT])) for c in _CATEGORIES[1:]}
    return TaskGraph(tuple(tasks)), ports


@settings(max_examples=150, deadline=None)
@given(_graph(), st.sampled_from([1, 3, 8]))
def test_contention_never_makes_a_task_end_earlier(case, splits) -> None:  # type: ignore[no-untyped-def]
    """Stream order and dependencies are fixed, and a task needs its whole duration on its
    port, so by induction in topological order no task ends earlier with contention; the
    port time is conserved."""
    graph, ports = case
    free = execute(graph)
    links = Contention(ports, splits)
    shared = execute(graph, contention=links)
    for tid in range(len(graph)):
        assert shared.end[tid] >= free.end[tid] - 1e-9
    assert shared.makespan >= free.makespan - 1e-9
    comm = [t for t in graph.tasks if t.kind is not TaskKind.COMPUTE]
    assert sum(links.busy_s.values()) == pytest.approx(sum(t.duration_s for t in comm))
    # work-conserving: the step grows by at most the time of the communication tasks
    assert shared.makespan <= free.makespan + sum(t.duration_s for t in comm) + 1e-9


@settings(max_examples=100, deadline=None)
@given(_graph())
def test_equal_where_no_port_is_shared(case) -> None:  # type: ignore[no-untyped-def]
    """Every (rank, stream) on a port of its own: no two tasks ever meet on a port, and
    every task ends when it does without contention."""
    graph, _ = case
    ports = {c: c for c in _CATEGORIES[1:]}
    streams = {(t.rank, t.category): t.stream for t in graph.tasks}
    tasks = tuple(
        Task(t.id, t.name, t.kind, t.rank, streams[(t.rank, t.category)], t.duration_s,
             t.deps, category=t.category)
        for t in graph.tasks
    )  # fmt: skip
    graph = TaskGraph(tasks)
    free = execute(graph)
    shared = execute(graph, contention=Contention(ports))
    assert shared.end == pytest.approx(free.end, rel=1e-12, abs=1e-12)


def test_two_tasks_on_one_port_share_it() -> None:
    """A 4 s DP bucket and a 4 s expert all-to-all start together on one NIC: they
    alternate chunks, the all-to-all (second in line) ends at 8 s, the bucket one chunk
    earlier."""
    tasks = (
        Task(0, "bucket", TaskKind.COLLECTIVE, 0, "dp", 4.0, category="dp_comm"),
        Task(1, "a2a", TaskKind.COLLECTIVE, 0, "compute", 4.0, category="ep_comm"),
    )
    ports = {"dp_comm": SCALE_OUT, "ep_comm": SCALE_OUT}
    run = execute(TaskGraph(tasks), contention=Contention(ports, splits=8))
    assert run.end[1] == pytest.approx(8.0)
    assert run.end[0] == pytest.approx(7.5)
    apart = execute(TaskGraph(tasks), contention=Contention({"dp_comm": SCALE_OUT,
                                                             "ep_comm": SCALE_UP}))
    assert apart.makespan == pytest.approx(4.0)


# -- agreement with the closed form ---------------------------------------------------------

# Mixtral 8x7B with the expert-parallel group spread over nodes: its all-to-alls and the
# gradient buckets load the same NICs
CONTENDED = [
    scenario_from_dict(
        {
            "model": "mixtral-8x7b",
            "system": {"preset": "dgx-h100", "num_accelerators": n},
            "strategy": {"tp": tp, "ep": ep, "sequence_parallel": True, "micro_batch_size": 1},
            "training": {"global_batch_size": n // tp * 2},
        },
        name=f"mixtral-8x7b-h100-{n}-tp{tp}-ep{ep}",
    )
    for tp, ep, n in [(8, 8, 128), (4, 8, 64), (8, 4, 64), (2, 8, 64)]
]


@pytest.mark.parametrize("sc", CONTENDED, ids=lambda s: s.name)
def test_contended_scenarios(sc) -> None:  # type: ignore[no-untyped-def]
    """DP and EP on the same NICs: contention slows the step by 1-8 %; the closed form,
    which hides the gradient all-reduce behind the backward at full bandwidth
    (``deepflow.estimate.evaluate``), is that much below the contended simulation and
    within 1 % of the uncontended one."""
    free = simulate(sc)
    ports = ports_of(free.lowered.env)
    assert ports["ep_comm"] == ports["dp_comm"] == SCALE_OUT
    shared = simulate(sc, contention=True)
    closed = predict(sc).step_time_s
    assert shared.prediction.extra["contention"] is True
    slowdown = shared.step_time_s / free.step_time_s - 1
    assert 0.01 < slowdown < 0.08
    assert abs(free.step_time_s / closed - 1) < 0.01
    assert 0.01 < shared.step_time_s / closed - 1 < 0.08


GRID = [sc for sc in grid()[::4] if sc.strategy.schedule.value != "zero-bubble"]


def test_uncontended_grid_agrees_within_3_percent() -> None:
    """Where the ports are hardly shared (the agreement grid: expert groups inside a node,
    gradient buckets mostly alone on the NIC), contention changes the step by under 1 %
    and the simulator stays within the closed form's 3 %."""
    assert len(GRID) >= 12
    for sc in GRID:
        free = simulate(sc).step_time_s
        shared = simulate(sc, contention=True).step_time_s
        assert -1e-9 <= shared / free - 1 < 0.01, sc.name
        assert abs(shared / predict(sc).step_time_s - 1) < 0.03, sc.name


def test_cli_simulate_contention(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``deepflow simulate --contention --json``: the contended step (expert all-to-alls
    and gradient buckets on the same NICs) is longer; the keys stay those of predict."""
    import json

    from click.testing import CliRunner

    from deepflow.cli import main

    doc = {
        "model": "mixtral-8x7b",
        "system": {"preset": "dgx-h100", "num_accelerators": 64},
        "strategy": {"tp": 8, "ep": 4, "sequence_parallel": True, "micro_batch_size": 1},
        "training": {"global_batch_size": 16},
    }
    path = tmp_path / "moe.json"
    path.write_text(json.dumps(doc))
    runs = {}
    for flags in ([], ["--contention"]):
        result = CliRunner().invoke(main, ["simulate", str(path), "--json", *flags])
        assert result.exit_code == 0, result.output
        runs[bool(flags)] = json.loads(result.output)
    assert runs[True]["step_time_s"] > runs[False]["step_time_s"]
    assert runs[True].keys() == runs[False].keys()
