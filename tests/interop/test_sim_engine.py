"""The discrete-event kernel: ordering, processes, resources, failures, determinism."""

from __future__ import annotations

import pytest

from deepflow.sim.engine import URGENT, Environment, Event, Resource


def test_events_fire_in_time_then_priority_then_scheduling_order() -> None:
    env = Environment()
    log: list[str] = []
    for name, delay in (("b", 2), ("a", 1), ("c", 2)):
        env.timeout(delay).callbacks.append(lambda _e, n=name: log.append(n))  # type: ignore[union-attr]
    urgent = Event(env)
    urgent.callbacks.append(lambda _e: log.append("urgent"))  # type: ignore[union-attr]
    env.schedule(urgent, URGENT, 2)
    urgent._value = None  # scheduled by hand: give it an outcome
    env.run()
    assert log == ["a", "urgent", "b", "c"]
    assert env.now == 2


def test_process_returns_value_and_waits_on_events() -> None:
    env = Environment()

    def worker(delay: int):  # type: ignore[no-untyped-def]
        got = yield env.timeout(delay, value=delay * 10)
        return got + 1

    procs = [env.process(worker(d)) for d in (3, 1)]
    both = env.all_of(procs)
    assert env.run(until=both) == [31, 11]
    assert env.now == 3


def test_resource_grants_in_request_order() -> None:
    env = Environment()
    lane = Resource(env, capacity=1)
    spans: dict[str, tuple[float, float]] = {}

    def job(name: str, length: int):  # type: ignore[no-untyped-def]
        req = lane.request()
        yield req
        start = env.now
        yield env.timeout(length)
        lane.release(req)
        spans[name] = (start, env.now)

    for name, length in (("x", 4), ("y", 2), ("z", 1)):
        env.process(job(name, length))
    env.run()
    assert spans == {"x": (0, 4), "y": (4, 6), "z": (6, 7)}


def test_unhandled_failure_is_re_raised() -> None:
    env = Environment()

    def broken():  # type: ignore[no-untyped-def]
        yield env.timeout(1)
        raise ValueError("boom")

    env.process(broken())
    with pytest.raises(ValueError, match="boom"):
        env.run()


def test_failure_can_be_caught_by_a_waiting_process() -> None:
    env = Environment()
    ev = env.event()

    def waiter():  # type: ignore[no-untyped-def]
        try:
            yield ev
        except KeyError:
            return "handled"
        return "no"

    proc = env.process(waiter())
    ev.fail(KeyError("k"))
    assert env.run(until=proc) == "handled"


def test_run_until_time_and_determinism() -> None:
    def trace() -> list[float]:
        env = Environment()
        out: list[float] = []

        def ticker():  # type: ignore[no-untyped-def]
            while True:
                yield env.timeout(3)
                out.append(env.now)

        env.process(ticker())
        env.run(until=10)
        assert env.now == 10
        return out

    assert trace() == trace() == [3, 6, 9]


def test_negative_delay_and_double_trigger_are_refused() -> None:
    env = Environment()
    with pytest.raises(ValueError, match="negative delay"):
        env.timeout(-1)
    ev = env.event().succeed()
    with pytest.raises(RuntimeError, match="already been triggered"):
        ev.succeed()
