"""MSCCL-IR algorithms as the network layer's step programs: the MSCCL ring against the
built-in ring, the closed form against the simulation, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepflow.cli import main
from deepflow.errors import TraceError
from deepflow.interop.msccl import msccl_algorithm, msccl_to_program, parse_msccl, read_msccl
from deepflow.network import Collective, Ring, simulate, simulate_program
from deepflow.network.topologies import ring, switch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MSCCL = FIXTURES / "msccl"
CUSTOM = FIXTURES / "astra-sim/examples/system/custom_collectives/custom_ring_allreduce_8npus_1MB"
RINGS = [MSCCL / "ring_8_1.xml", CUSTOM / "custom_allreduce.xml"]


@pytest.mark.parametrize("path", RINGS, ids=lambda p: p.name)
@pytest.mark.parametrize("make", [switch, ring], ids=["switch", "ring"])
@pytest.mark.parametrize("size", [1 << 20, 1 << 28])
def test_msccl_ring_within_2_percent_of_the_built_in_ring(path: Path, make, size: int) -> None:  # type: ignore[no-untyped-def]
    """Same conditions: the same 8-rank topology (a 100 GB/s switch, or a bidirectional
    ring, 1 us per link), the same all-reduce size, and the same chunking: both algorithms
    cut the buffer into 8 chunks and move one chunk per message in 2(n-1) = 14 steps
    (MSCCL ``nchunksperloop=8``, ``cnt=1``; built-in ring with one chunk per rank block),
    neither pipelines further, and both run on the same link model (the network layer's
    cut-through FIFO links). Local reductions take no time in either. The fused
    (``rrs``/``rrcs``/``rcs``) and unfused (``rrc`` + ``s``) rings are both checked."""
    topo = make(8, 100e9, 1e-6)
    built_in = simulate(Ring().schedule(Collective.ALL_REDUCE, 8, size, 1), topo).time
    program = msccl_to_program(read_msccl(path))
    got = simulate_program(program, topo, size).time
    assert abs(got / built_in - 1) <= 0.02
    assert got == pytest.approx(built_in, rel=1e-9)  # in fact identical


def test_eight_channel_ring_moves_the_same_bytes() -> None:
    """``ring_1_8.xml`` runs eight rings on eighth-size chunks: with no latency (only the
    bytes count) it takes the built-in ring's time; with latency its pipelining wins."""
    program = msccl_to_program(read_msccl(MSCCL / "ring_1_8.xml"))
    assert program.chunks == 64
    built_in = Ring().schedule(Collective.ALL_REDUCE, 8, 1 << 26, 1)
    flat = switch(8, 100e9, 0.0)
    assert simulate_program(program, flat, 1 << 26).time == pytest.approx(
        simulate(built_in, flat).time, rel=0.02
    )
    slow = switch(8, 100e9, 5e-6)
    assert simulate_program(program, slow, 1 << 26).time < simulate(built_in, slow).time


@pytest.mark.parametrize("path", sorted(MSCCL.glob("*.xml")), ids=lambda p: p.name)
def test_closed_form_matches_simulation_on_the_reference_topology(path: Path) -> None:
    algo = msccl_algorithm(read_msccl(path))
    n, op = algo.program.ranks, algo.program.op
    for size in (1e4, 1e6, 1e8):
        sim = simulate_program(algo.program, algo.reference_topology(n, 50e9, 2e-6), size).time
        assert float(algo.closed_form(op, size, n, 50e9, 2e-6)) == pytest.approx(sim, rel=0.01)


def test_custom_collective_has_no_program() -> None:
    text = (MSCCL / "ring_8_1.xml").read_text().replace('coll="allreduce"', 'coll="custom"')
    with pytest.raises(TraceError, match="coll='custom' has no defined result"):
        msccl_to_program(parse_msccl(text, "x.xml"))


def test_cli_collective_with_msccl() -> None:
    runner = CliRunner()
    args = ["collective", "all-reduce", "--size", "64MiB", "--system", "dgx-a100-80gb"]
    builtin = runner.invoke(main, [*args, "--json"])
    msccl = runner.invoke(main, [*args, "--msccl", str(RINGS[0]), "--simulate", "--json"])
    assert builtin.exit_code == 0 and msccl.exit_code == 0, msccl.output
    a, b = json.loads(builtin.output), json.loads(msccl.output)
    assert b["algorithm"] == "msccl:allreduce_ring_8channelsperring"
    assert b["time_s"] == pytest.approx(a["time_s"], rel=0.02)
    assert b["simulated_time_s"] == pytest.approx(b["time_s"], rel=0.02)
    wrong = runner.invoke(main, ["collective", "all-gather", "--msccl", str(RINGS[0])])
    assert wrong.exit_code == 2
    assert "implements all-reduce, not all-gather" in wrong.output
    ranks = runner.invoke(
        main, ["collective", "all-reduce", "--nodes", "2", "--msccl", str(RINGS[0])]
    )
    assert ranks.exit_code == 2
    assert "written for 8 ranks, the collective spans 16" in ranks.output


def test_msccl_ring_on_an_astra_network_file() -> None:
    """An ASTRA-sim network YAML becomes a link-level topology for the chunk simulators;
    there too the MSCCL ring and the built-in ring agree."""
    from deepflow.interop.astra import load_network

    topo = load_network(FIXTURES / "astra-sim/examples/network/analytical/Ring_8npus.yml")
    graph = topo.link_graph()
    built_in = simulate(Ring().schedule(Collective.ALL_REDUCE, 8, 1 << 20, 1), graph).time
    program = msccl_to_program(read_msccl(RINGS[0]))
    assert simulate_program(program, graph, 1 << 20).time == pytest.approx(built_in, rel=0.02)
