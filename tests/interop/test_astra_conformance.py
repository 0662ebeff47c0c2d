"""deepflow's ASTRA-sim replay against real ASTRA-sim runs (``tests/fixtures/astra-sim/conformance``).

Every row of ``cases.csv`` is replayed with the backend it was run on:

* congestion-unaware (385 rows): makespan, every rank's finish time and exposed
  communication equal to the nanosecond;
* congestion-aware (320 rows): the same, exact, the custom (MSCCL and ASTRA-sim's own) ET
  collectives included: their simultaneous sends enter the shared links in the order
  ASTRA-sim issues them (:mod:`deepflow.interop.astra.feeder_order`).

The rows ASTRA-sim never finished (``unfinished.csv``) are checked for the diagnosis
deepflow gives instead of a silent number.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepflow.errors import TraceError
from deepflow.interop.astra import Backend, parse_network, parse_system, simulate_workload
from deepflow.interop.astra.conformance import CaseInputs, load_cases, run_case
from deepflow.interop.chakra import (
    Attribute,
    AttrKind,
    ExecutionTrace,
    GlobalMetadata,
    Node,
    NodeType,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures"
CONF = FIX / "astra-sim/conformance"
CASES = load_cases(CONF / "cases.csv")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> CaseInputs:
    return CaseInputs(FIX, tmp_path_factory.mktemp("conformance"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.row['backend']}-{c.case_id}")
def test_case(case, inputs: CaseInputs) -> None:  # type: ignore[no-untyped-def]
    result = run_case(case, inputs)
    assert result.makespan_ns == case.makespan_ns
    assert result.rank_finish_ns == case.rank_finish_ns
    assert result.rank_exposed_comm_ns == case.rank_exposed_comm_ns


def test_every_row_is_run() -> None:
    assert len(CASES) == 705
    assert sum(c.backend is Backend.CONGESTION_UNAWARE for c in CASES) == 385


def _unfinished() -> list[dict[str, str]]:
    with open(CONF / "unfinished.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize(
    "row",
    [r for r in _unfinished() if r["astra_problem"] == "D5" and r["backend"] == "CU"],
    ids=lambda r: r["case_id"],
)
def test_cpu_side_comm_nodes_are_an_error(row: dict[str, str], inputs: CaseInputs) -> None:
    """ASTRA-sim refuses a communication node on the CPU and never finishes (D5); deepflow
    names the node (``pruned`` keeps control edges that form a cycle, reported first)."""
    from deepflow.interop.astra.conformance import Case

    case = Case(row["case_id"], row["family"], Backend.CONGESTION_UNAWARE, row)
    with pytest.raises(TraceError, match=r"is_cpu_op true: ASTRA-sim refuses|cyclic dependency"):
        run_case(case, inputs)


def _coll(size: int, comm_type: int = 0, inputs: bool = True) -> ExecutionTrace:
    node = Node(
        id=0,
        name="coll",
        type=NodeType.COMM_COLL_NODE,
        attrs=(
            Attribute("is_cpu_op", AttrKind.BOOL, False),
            Attribute("comm_type", AttrKind.INT64, comm_type),
            Attribute("comm_size", AttrKind.INT64, size),
        ),
    )
    return ExecutionTrace(GlobalMetadata("0.0.4"), (node,))


def test_track_local_mem_without_inputs_warns() -> None:
    """ASTRA-sim's local-memory tracker stops on nodes without inputs (U4)."""
    network = parse_network("topology: [Ring]\nnpus_count: [4]\nbandwidth: [50]\nlatency: [500]\n")
    system = parse_system(
        '{"all-reduce-implementation": ["ring"], "local-mem-bw": 50, "track-local-mem": 1}',
        "track.json",
    )
    result = simulate_workload({r: _coll(1 << 20) for r in range(4)}, network, system)
    assert any("track-local-mem" in w and "no inputs" in w for w in result.warnings)


# -- properties of the congestion-aware engine ---------------------------------------------

_OPS = {"all-reduce": 0, "all-gather": 2, "all-to-all": 6, "reduce-scatter": 7}


@st.composite
def _inputs(draw):  # type: ignore[no-untyped-def]
    topo = draw(st.sampled_from(["Ring", "FullyConnected", "Switch"]))
    p = draw(st.sampled_from([4, 8] if topo != "Ring" else [4, 8, 6]))
    op = draw(st.sampled_from(sorted(_OPS)))
    impls = ["ring", "direct"]
    if p & (p - 1) == 0 and op != "all-to-all":
        impls.append("halvingDoubling")
    if op == "all-reduce" and p & (p - 1) == 0:
        impls.append("doubleBinaryTree")
    impl = draw(st.sampled_from(impls))
    splits = draw(st.sampled_from([1, 2, 4]))
    active = draw(st.sampled_from([1, 2]))
    policy = draw(st.sampled_from(["LIFO", "FIFO"]))
    size = draw(st.sampled_from([1 << 12, 1 << 16, 1 << 20]))
    bw = draw(st.sampled_from([25, 50, 200]))
    lat = draw(st.sampled_from([0, 100, 500]))
    return topo, p, op, impl, splits, active, policy, size, bw, lat


def _run(args, backend: Backend):  # type: ignore[no-untyped-def]
    topo, p, op, impl, splits, active, policy, size, bw, lat = args
    network = parse_network(
        f"topology: [{topo}]\nnpus_count: [{p}]\nbandwidth: [{bw}]\nlatency: [{lat}]\n"
    )
    system = parse_system(
        f'{{"{op}-implementation": ["{impl}"], "preferred-dataset-splits": {splits},'
        f' "active-chunks-per-dimension": {active}, "scheduling-policy": "{policy}",'
        ' "local-mem-bw": 1600, "endpoint-delay": 10}',
        "prop.json",
    )
    traces = {r: _coll(size, _OPS[op]) for r in range(p)}
    return simulate_workload(traces, network, system, backend=backend)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_inputs())
def test_congestion_aware_is_never_faster(args) -> None:  # type: ignore[no-untyped-def]
    cu = _run(args, Backend.CONGESTION_UNAWARE)
    ca = _run(args, Backend.CONGESTION_AWARE)
    for a, u in zip(ca.ranks, cu.ranks, strict=True):
        assert a.finish_ns >= u.finish_ns


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_inputs())
def test_congestion_aware_equals_unaware_where_no_link_is_shared(args) -> None:  # type: ignore[no-untyped-def]
    """The conformance README's list: one active chunk per dimension and the ring on a
    Ring or FullyConnected dimension, or direct or halvingDoubling on FullyConnected."""
    topo, _p, op, impl, _splits, active, _policy, _size, _bw, _lat = args
    unshared = active == 1 and (
        (impl == "ring" and topo in ("Ring", "FullyConnected") and op != "all-to-all")
        or (impl in ("direct", "halvingDoubling") and topo == "FullyConnected")
    )
    if not unshared:
        return
    cu = _run(args, Backend.CONGESTION_UNAWARE)
    ca = _run(args, Backend.CONGESTION_AWARE)
    assert [r.finish_ns for r in ca.ranks] == [r.finish_ns for r in cu.ranks]
