"""Schedule tables on uniform stages: bubbles equal their closed forms exactly."""

from dataclasses import replace

import pytest

from deepflow.estimate import bubble_fraction
from deepflow.graph import GraphBuilder, TaskGraph, TaskKind
from deepflow.sim import DeadlockError, execute
from deepflow.sim.schedules import (
    Op,
    gpipe,
    interleaved_1f1b,
    one_f_one_b,
    validate_table,
    zb_h1,
)


def run_uniform(table, p, v=1, f=1.0, b=2.0, w=0.0):
    """Makespan of ``table`` with pass times ``f``, ``b``, ``w`` per chunk and no
    communication: a forward waits for the previous virtual stage, a backward for the next."""
    g = GraphBuilder()
    ids, wants = {}, []
    last = p * v - 1
    for s, ops in enumerate(table):
        for op in ops:
            vs = op.chunk * p + s
            tid = g.add(
                f"{op.kind}{op.micro_batch}",
                TaskKind.COMPUTE,
                s,
                "compute",
                {"F": f, "B": b, "W": w}[op.kind],
            )
            ids[(op.kind, vs, op.micro_batch)] = tid
            if op.kind == "F" and vs > 0:
                wants.append((tid, ("F", vs - 1, op.micro_batch)))
            if op.kind == "B" and vs < last:
                wants.append((tid, ("B", vs + 1, op.micro_batch)))
            if op.kind == "B" and vs == last:
                wants.append((tid, ("F", vs, op.micro_batch)))
    tasks = list(g.build().tasks)
    for tid, key in wants:
        tasks[tid] = replace(tasks[tid], deps=(*tasks[tid].deps, ids[key]))
    return execute(TaskGraph(tuple(tasks))).makespan


@pytest.mark.parametrize(("p", "m"), [(1, 4), (2, 2), (4, 4), (4, 16), (8, 32), (3, 7)])
def test_gpipe_and_1f1b_bubble_fraction_is_exact(p, m):
    for table in (gpipe(p, m), one_f_one_b(p, m)):
        validate_table(table, m)
        ideal = m * 3.0
        assert (run_uniform(table, p) - ideal) / ideal == pytest.approx(
            bubble_fraction(p, m), abs=1e-12
        )


@pytest.mark.parametrize(("p", "m", "v"), [(2, 4, 2), (4, 8, 2), (4, 16, 4), (8, 16, 3)])
def test_interleaved_bubble_fraction_is_exact(p, m, v):
    table = interleaved_1f1b(p, m, v)
    validate_table(table, m, v)
    ideal = m * v * 3.0 / v
    span = run_uniform(table, p, v, f=1.0 / v, b=2.0 / v)
    assert (span - ideal) / ideal == pytest.approx(bubble_fraction(p, m, v), abs=1e-12)


def test_1f1b_keeps_at_most_p_minus_s_in_flight():
    p, m = 4, 12
    for s, ops in enumerate(one_f_one_b(p, m)):
        live = peak = 0
        for op in ops:
            live += 1 if op.kind == "F" else -1
            peak = max(peak, live)
        assert peak == p - s


@pytest.mark.parametrize(("p", "m"), [(2, 2), (4, 4), (4, 16), (8, 32), (3, 7)])
def test_zb_h1_bubble_and_beats_1f1b(p, m):
    # Qi et al. 2023, sec. 3.1: (p - 1)(F + B - W) instead of (p - 1)(F + B + W)
    table = zb_h1(p, m)
    validate_table(table, m)
    zb = run_uniform(table, p, f=1.0, b=1.0, w=1.0) - 3.0 * m
    one = run_uniform(one_f_one_b(p, m), p, f=1.0, b=2.0) - 3.0 * m
    assert zb == pytest.approx((p - 1) * 1.0)
    assert one == pytest.approx((p - 1) * 3.0)
    assert zb < one or p == 1


def test_zb_h1_with_uneven_times_still_beats_1f1b():
    p, m, f, b, w = 4, 8, 1.0, 1.5, 0.5
    zb = run_uniform(zb_h1(p, m, f, b, w), p, f=f, b=b, w=w)
    one = run_uniform(one_f_one_b(p, m), p, f=f, b=b + w)
    assert zb < one
    assert zb - m * (f + b + w) == pytest.approx((p - 1) * (f + b - w))


def test_bad_tables_are_rejected():
    with pytest.raises(ValueError, match="missing"):
        validate_table(((Op("F", 0),),), 1)
    with pytest.raises(ValueError, match="before its forward"):
        validate_table(((Op("B", 0), Op("F", 0)),), 1)


def test_a_table_that_waits_on_itself_deadlocks():
    # stage 1 runs B0 before F0: its backward waits for its own later forward
    table = ((Op("F", 0), Op("B", 0)), (Op("B", 0), Op("F", 0)))
    with pytest.raises(DeadlockError):
        run_uniform(table, 2)
