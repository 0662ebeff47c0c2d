"""Step programs: per-rank send/receive lists costed by chunk simulation and a closed form."""

from __future__ import annotations

import numpy as np
import pytest

from deepflow.errors import ConfigError
from deepflow.network import (
    Collective,
    Hierarchy,
    Level,
    ProgramAlgorithm,
    ProgramStep,
    Ring,
    StepProgram,
    collective_time,
    place_group,
    simulate,
    simulate_program,
)
from deepflow.network.topologies import ring, switch


def ring_program(n: int) -> StepProgram:
    """The ring all-reduce written out step by step: rank r sends block r, then n-2
    receive-reduce-sends, a receive-reduce-copy-send, n-2 receive-copy-sends, a receive."""
    right, left = lambda r: (r + 1) % n, lambda r: (r - 1) % n
    steps = []
    for r in range(n):
        mine = [ProgramStep(send_to=right(r))]
        mine += [
            ProgramStep(recv_from=left(r), send_to=right(r), reduce=t < n - 1, deps=(t,))
            for t in range(2 * n - 3)
        ]
        mine.append(ProgramStep(recv_from=left(r), deps=(2 * n - 3,)))
        steps.append(tuple(mine))
    return StepProgram("ring", Collective.ALL_REDUCE, n, n, tuple(steps))


@pytest.mark.parametrize("n", [2, 4, 8])
@pytest.mark.parametrize("make", [switch, ring], ids=["switch", "ring"])
def test_ring_program_equals_the_built_in_ring(n: int, make) -> None:  # type: ignore[no-untyped-def]
    topo = make(n, 100e9, 1e-6)
    built_in = simulate(Ring().schedule(Collective.ALL_REDUCE, n, 1 << 24, 1), topo).time
    assert simulate_program(ring_program(n), topo, 1 << 24).time == pytest.approx(built_in)


def test_closed_form_is_the_ring_formula() -> None:
    algo = ProgramAlgorithm(ring_program(8))
    sizes = np.array([1e3, 1e6, 1e9])
    want = Ring().closed_form(Collective.ALL_REDUCE, sizes, 8, 50e9, 3e-6)
    got = algo.closed_form(Collective.ALL_REDUCE, sizes, 8, 50e9, 3e-6)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert algo.coefficients.shape == (1, 2)  # one critical path: l = 14, w = 14/8
    np.testing.assert_allclose(algo.coefficients[0], [14.0, 1.75], rtol=1e-6)


def test_collective_time_accepts_a_program() -> None:
    hier = Hierarchy(8, Level("up", 300e9, 2e-6, 0.8), Level("out", 25e9, 5e-6, 0.9))
    algo = ProgramAlgorithm(ring_program(8))
    sizes = np.array([1e6, 1e8])
    inside = place_group(8, 1, 8)
    np.testing.assert_allclose(
        collective_time(Collective.ALL_REDUCE, sizes, inside, hier, algo),
        algo.closed_form(Collective.ALL_REDUCE, sizes, 8, 240e9, 2e-6),
    )
    # a group of another size, or another collective, falls back to the ring
    other = place_group(16, 1, 8)
    np.testing.assert_allclose(
        collective_time(Collective.ALL_REDUCE, sizes, other, hier, algo),
        collective_time(Collective.ALL_REDUCE, sizes, other, hier),
    )
    np.testing.assert_allclose(
        collective_time(Collective.ALL_GATHER, sizes, inside, hier, algo),
        collective_time(Collective.ALL_GATHER, sizes, inside, hier),
    )


def test_time_never_below_bound_and_never_decreasing() -> None:
    prog = ring_program(4)
    topo = switch(4, 10e9, 1e-6)
    times = [simulate_program(prog, topo, s).time for s in (1e3, 1e5, 1e7)]
    assert times == sorted(times)
    assert times[-1] >= 2 * 3 / 4 * 1e7 / 10e9


def test_malformed_programs_are_named() -> None:
    with pytest.raises(ConfigError, match=r"steps\[0\]\[0\].*peer 0 is not another rank"):
        StepProgram("p", Collective.ALL_REDUCE, 2, 2, ((ProgramStep(send_to=0),), ()))
    lonely = StepProgram("p", Collective.ALL_REDUCE, 2, 2, ((ProgramStep(send_to=1),), ()))
    with pytest.raises(ConfigError, match=r"rank 0 sends 1 message.* to rank 1 on channel 0"):
        simulate_program(lonely, switch(2, 1e9), 1e6)
    cycle = StepProgram(
        "p",
        Collective.ALL_REDUCE,
        2,
        2,
        (
            (ProgramStep(recv_from=1), ProgramStep(send_to=1, deps=(0,))),
            (ProgramStep(recv_from=0), ProgramStep(send_to=0, deps=(0,))),
        ),
    )
    with pytest.raises(ConfigError, match="deadlock, rank 0 step 0 never runs"):
        simulate_program(cycle, switch(2, 1e9), 1e6)
