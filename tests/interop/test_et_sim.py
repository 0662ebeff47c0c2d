"""Chakra ET in and out of the simulator: lowered graphs export to per-rank ETs that read
back identically, and imported ETs (the ASTRA-sim microbenchmarks, the MSCCL ring
all-reduce, the PyTorch-derived trace) run on the executor lowered scenarios run on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.interop.paths import ASTRA, CUSTOM_PREFIX, MICROBENCH

from deepflow.cli import main
from deepflow.errors import TraceError
from deepflow.graph.ir import Task, TaskGraph, TaskKind
from deepflow.interop.astra import load_network, parse_network
from deepflow.interop.chakra import (
    Attribute,
    AttrKind,
    CommModel,
    ComputeTiming,
    DependencyPolicy,
    ExecutionTrace,
    GlobalMetadata,
    Node,
    NodeType,
    Roofline,
    check_workload,
    encode_et,
    et_to_graph,
    graph_to_et,
    read_et,
    read_workload,
    write_workload,
)
from deepflow.network import Collective, Ring
from deepflow.sim import execute, lower, simulate
from deepflow.sim.executor import Execution
from deepflow.specs import scenario_from_dict

RING8 = ASTRA / "examples/network/analytical/Ring_8npus.yml"
RING8_BW = 50 * 2**30  # bytes/s per link, the YAML's GB = 2**30 bytes
RING8_LAT = 500e-9

SCENARIOS = {
    "interleaved-tp-pp": {
        "model": "llama2-7b",
        "system": {"preset": "dgx-a100-80gb", "num_accelerators": 32},
        "strategy": {"tp": 2, "pp": 4, "vpp": 2},
        "training": {"global_batch_size": 16},
    },
    "moe-ep": {
        "model": "mixtral-8x7b",
        "system": {"preset": "dgx-h100", "num_accelerators": 32},
        "strategy": {"tp": 2, "pp": 2, "ep": 4, "micro_batch_size": 1},
        "training": {"global_batch_size": 16},
    },
    "cp-zero3-gpipe": {
        "model": "llama3-8b",
        "system": {"preset": "dgx-h100", "num_accelerators": 32},
        "strategy": {
            "tp": 2,
            "pp": 2,
            "cp": 2,
            "zero": 3,
            "overlap_grad_reduce": False,
            "pipeline_schedule": "gpipe",
        },
        "training": {"global_batch_size": 16},
    },
}


def _same_task(original: Task, imported: Task, rank: int, deps: tuple[int, ...]) -> bool:
    fields = ("name", "kind", "stream", "duration_s", "size_bytes", "category", "phase")
    fields += ("layer", "micro_batch", "chunk")
    return (
        all(getattr(original, f) == getattr(imported, f) for f in fields)
        and original.rank == rank
        and original.deps == deps
    )


def _resolved_deps(graph: TaskGraph, task: Task, n: int) -> tuple[int, ...]:
    """Dependencies with each added receive (id >= n) replaced by what it waits for."""
    out: list[int] = []
    for d in task.deps:
        out.extend([d] if d < n else _resolved_deps(graph, graph.tasks[d], n))
    return tuple(dict.fromkeys(out))


def _assert_round_trip(graph: TaskGraph, tmp_path: Path, stage_ranks: tuple[int, ...]) -> None:
    traces = graph_to_et(graph)
    check_workload(traces)  # ids, types, attributes, every send has its receive
    paths = write_workload(traces, tmp_path / "step")
    back = read_workload(tmp_path / "step")
    assert back == traces  # the same node sets: ids, types, names, deps, durations, sizes
    for path, trace in zip(paths, back.values(), strict=True):
        assert encode_et(trace) == Path(path).read_bytes()  # byte-identical re-write
    imported = et_to_graph(back)
    n = len(graph)
    assert imported.sources.get("recorded") == n
    for t in graph.tasks:
        u = imported.graph.tasks[t.id]
        assert imported.task_of[(u.rank, t.id)] == t.id
        assert _same_task(t, u, stage_ranks[u.rank], _resolved_deps(imported.graph, u, n))
    added = imported.graph.tasks[n:]
    assert all(t.kind in (TaskKind.RECV, TaskKind.SEND) and t.duration_s == 0 for t in added)
    # one executor for both: the times of every task agree
    lowered_run, imported_run = execute(graph), execute(imported.graph)
    assert imported_run.makespan == lowered_run.makespan
    np.testing.assert_array_equal(imported_run.end[:n], lowered_run.end)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_lowered_graph_exports_and_reads_back(name: str, tmp_path: Path) -> None:
    scenario = scenario_from_dict(SCENARIOS[name])
    lowered = lower(scenario)
    _assert_round_trip(lowered.graph, tmp_path, tuple(lowered.stage_ranks))


def test_exported_attributes_follow_chakra() -> None:
    lowered = lower(scenario_from_dict(SCENARIOS["interleaved-tp-pp"]))
    traces = graph_to_et(lowered.graph)
    assert [t.metadata.attr("rank").value for t in traces.values()] == list(  # type: ignore[union-attr]
        lowered.stage_ranks
    )
    nodes = [n for t in traces.values() for n in t.nodes]
    tp = next(n for n in nodes if n.attr_value("category") == "tp_comm")
    assert tp.type is NodeType.COMM_COLL_NODE
    assert tp.attr("comm_type") == Attribute("comm_type", AttrKind.INT64, 0)  # ALL_REDUCE
    assert tp.attr_value("pg_name") == "tp"
    send = next(n for n in nodes if n.type is NodeType.COMM_SEND_NODE)
    assert send.attr("comm_dst").kind is AttrKind.INT32  # type: ignore[union-attr]
    assert send.attr("comm_size").kind is AttrKind.INT64  # type: ignore[union-attr]
    comp = next(n for n in nodes if n.type is NodeType.COMP_NODE and n.duration_micros > 10)
    task = lowered.graph.tasks[comp.id]
    assert comp.duration_micros == round(task.duration_s * 1e6)
    assert comp.attr_value("duration_s") == task.duration_s


_KINDS = (TaskKind.COMPUTE, TaskKind.COLLECTIVE, TaskKind.SEND, TaskKind.MEMORY)


@st.composite
def task_graphs(draw: st.DrawFn) -> TaskGraph:
    """Random graphs whose dependencies point to earlier tasks (so stream order, which is
    id order, never contradicts them), over up to three ranks and three streams."""
    n = draw(st.integers(1, 24))
    tasks = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        kind = draw(st.sampled_from(_KINDS))
        sizes = (0.0,) if kind is TaskKind.COMPUTE else (0.0, 1024.0, 1536.5)
        tasks.append(
            Task(
                i,
                f"t{i}",
                kind,
                draw(st.sampled_from((0, 4, 8))),
                draw(st.sampled_from(("compute", "comm", "pp"))),
                draw(st.floats(0, 1e-3, allow_nan=False, allow_infinity=False)),
                tuple(deps),
                draw(st.sampled_from(sizes)),
                micro_batch=draw(st.integers(-1, 3)),
            )
        )
    return TaskGraph(tuple(tasks))


@settings(max_examples=60, deadline=None)
@given(task_graphs())
def test_any_graph_round_trips(graph: TaskGraph) -> None:
    """Cross-rank edges from any task (zero-byte sends of their own), several receivers of
    one send, fractional sizes: all read back and run to the same times."""
    traces = graph_to_et(graph)
    check_workload(traces)
    for trace in traces.values():
        assert encode_et(ExecutionTrace(trace.metadata, trace.nodes)) == encode_et(trace)
    imported = et_to_graph({r: t for r, t in traces.items()})
    n = len(graph)
    ranks = graph.ranks
    for t in graph.tasks:
        u = imported.graph.tasks[t.id]
        assert _same_task(t, u, ranks[u.rank], _resolved_deps(imported.graph, u, n))
    np.testing.assert_array_equal(execute(imported.graph).end[:n], execute(graph).end)


def test_graph_receive_task_pairs_with_its_send() -> None:
    graph = TaskGraph(
        (
            Task(0, "work", TaskKind.COMPUTE, 0, "compute", 1e-6),
            Task(1, "send", TaskKind.SEND, 0, "comm", 2e-6, (0,), 4096.0),
            Task(2, "recv", TaskKind.RECV, 1, "recv", 0.0, (1,), 4096.0),
            Task(3, "use", TaskKind.COMPUTE, 1, "compute", 1e-6, (2,)),
            Task(4, "also", TaskKind.COMPUTE, 1, "compute", 1e-6, (1,)),
        )
    )
    traces = graph_to_et(graph)
    assert [len(t.nodes) for t in traces.values()] == [2, 3]  # no receive added
    assert traces[1].nodes[2].data_deps == (2,)  # waits on the graph's receive
    imported = et_to_graph(traces)
    assert [t.deps for t in imported.graph.tasks] == [(), (0,), (1,), (2,), (2,)]
    assert execute(imported.graph).makespan == pytest.approx(5e-6)


# --- import: the fixtures on the simulator's executor --------------------------------------


def _ring8() -> CommModel:
    return CommModel.from_astra(load_network(RING8))


@pytest.mark.parametrize(
    ("collective", "op", "gathered"),
    [
        ("all_reduce", Collective.ALL_REDUCE, 1),
        ("reduce_scatter", Collective.REDUCE_SCATTER, 1),
        ("all_gather", Collective.ALL_GATHER, 8),
        ("all_to_all", Collective.ALL_TO_ALL, 1),
    ],
)
def test_microbenchmark_matches_ring_closed_form(
    collective: str, op: Collective, gathered: int
) -> None:
    """One 1 MiB collective per rank on the 8-NPU ring (50 GB/s, 500 ns per hop): the
    network layer's ring closed form, e.g. all-reduce 2 (p-1) (alpha + S / (p B))."""
    traces = read_workload(MICROBENCH / f"{collective}/8npus_1MB/{collective}")
    imported = et_to_graph(traces, _ring8())
    run = execute(imported.graph)
    assert isinstance(run, Execution)
    size = 1_048_576 * gathered  # Chakra's all-gather size is the per-rank input
    expected = float(Ring().closed_form(op, size, 8, RING8_BW, RING8_LAT))
    assert run.makespan == pytest.approx(expected, rel=1e-12)
    assert all(run.rank_end(r) == run.makespan for r in range(8))  # synchronous
    assert imported.sources == {"network": 8}
    if collective == "all_reduce":
        assert run.makespan == pytest.approx(41.1796875e-6, rel=1e-12)


def test_custom_ring_all_reduce_is_closed_form_plus_reductions() -> None:
    """The MSCCL ring all-reduce as 8 x 35 point-to-point nodes: 14 sends of S/p one after
    the other on the ring, each alpha + S/(p B) (the closed form's 2 (p-1) steps), plus the
    7 reduction nodes of 7 us each on the critical path."""
    traces = read_workload(CUSTOM_PREFIX)
    imported = et_to_graph(traces, _ring8())
    assert len(imported.graph) == 8 * 35
    assert imported.sources == {"duration_micros": 56, "network": 112, "none": 112}
    run = execute(imported.graph)
    closed = float(Ring().closed_form(Collective.ALL_REDUCE, 1_048_576, 8, RING8_BW, RING8_LAT))
    reductions = sum(
        n.duration_micros * 1e-6 for n in traces[0].nodes if n.type is NodeType.COMP_NODE
    )
    assert reductions == pytest.approx(49e-6)
    assert run.makespan == pytest.approx(closed + reductions, rel=1e-12)  # 90.18 us


def test_pytorch_trace_runs_to_completion(pytorch_et: Path) -> None:
    """Rank 0 of a data-parallel PyTorch job on both NPUs of a 2-NPU ring, data edges only
    (its control edges name host operators the trace omits); compute replays
    ``duration_micros``, the all-reduces and broadcasts are costed by the network layer."""
    trace = read_et(pytorch_et)
    network = parse_network("topology: [Ring]\nnpus_count: [2]\nbandwidth: [50]\nlatency: [500]\n")
    imported = et_to_graph(
        {0: trace, 1: trace}, CommModel.from_astra(network), policy=DependencyPolicy.DATA_ONLY
    )
    assert len(imported.graph) == 2 * 3664
    assert imported.sources["network"] == 2 * 7
    run = execute(imported.graph)
    assert np.isfinite(run.end).all()  # every task ran
    assert run.makespan == pytest.approx(0.297046, rel=1e-6)
    gpu_compute = sum(
        n.duration_micros * 1e-6
        for n in trace.nodes
        if n.type is NodeType.COMP_NODE and n.attr_value("is_cpu_op") is False
    )
    assert run.makespan >= gpu_compute
    with pytest.raises(TraceError, match=r"chakra\.0\.et: node \d+: ctrl_deps references node"):
        et_to_graph({0: trace}, CommModel.from_astra(network))


def _node(nid: int, ntype: NodeType, *attrs: Attribute, **fields: object) -> Node:
    return Node(id=nid, name=f"n{nid}", type=ntype, attrs=attrs, **fields)  # type: ignore[arg-type]


def _trace(*nodes: Node, source: str = "w.0.et") -> ExecutionTrace:
    return ExecutionTrace(GlobalMetadata("0.0.4"), nodes, source)


def test_compute_from_flops_and_bytes_uses_the_roofline() -> None:
    flops = Attribute("num_ops", AttrKind.INT64, 2_000_000)
    size = Attribute("tensor_size", AttrKind.UINT64, 1_000)
    traces = {0: _trace(_node(1, NodeType.COMP_NODE, flops, size))}
    roofline = Roofline(peak_flops=1e12, memory_bandwidth=1e9)
    imported = et_to_graph(traces, roofline=roofline)
    assert imported.sources == {"roofline": 1}
    assert imported.graph.tasks[0].duration_s == pytest.approx(2e-6)  # compute bound
    with pytest.raises(TraceError, match=r"w\.0\.et: node 1: .*num_ops.*roofline"):
        et_to_graph(traces)
    timed = {0: _trace(_node(1, NodeType.COMP_NODE, flops, size, duration_micros=5))}
    assert et_to_graph(timed, roofline=roofline).graph.tasks[0].duration_s == 5e-6
    forced = et_to_graph(timed, roofline=roofline, compute=ComputeTiming.ROOFLINE)
    assert forced.graph.tasks[0].duration_s == pytest.approx(2e-6)


def test_malformed_input_names_file_node_and_problem() -> None:
    coll = _node(
        3,
        NodeType.COMM_COLL_NODE,
        Attribute("comm_type", AttrKind.INT64, 0),
        Attribute("comm_size", AttrKind.INT64, 1024),
    )
    with pytest.raises(TraceError, match=r"w\.0\.et: node 3: COMM_COLL_NODE .* no network"):
        et_to_graph({0: _trace(coll)})
    dangling = _node(2, NodeType.COMP_NODE, data_deps=(9,))
    with pytest.raises(TraceError, match=r"w\.0\.et: node 2: data_deps references node 9"):
        et_to_graph({0: _trace(dangling)})
    group = _node(
        4,
        NodeType.COMM_COLL_NODE,
        Attribute("comm_type", AttrKind.INT64, 0),
        Attribute("comm_size", AttrKind.INT64, 1024),
        Attribute("pg_name", AttrKind.STRING, "7"),
    )
    with pytest.raises(TraceError, match=r"node 4: collective over group '7'"):
        et_to_graph({0: _trace(group)}, _ring8())
    # a later id that must run first on the same stream: the executor would deadlock
    first = _node(1, NodeType.COMP_NODE, data_deps=(2,), duration_micros=1)
    second = _node(2, NodeType.COMP_NODE, duration_micros=1)
    with pytest.raises(TraceError, match=r"w\.0\.et: node 1: can never run"):
        et_to_graph({0: _trace(first, second)})


# --- command line --------------------------------------------------------------------------


def test_cli_simulate_writes_ets_that_read_back(tmp_path: Path) -> None:
    doc = SCENARIOS["interleaved-tp-pp"]
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(doc))
    prefix = tmp_path / "et" / "step"
    result = CliRunner().invoke(main, ["simulate", str(path), "--et-out", str(prefix), "--json"])
    assert result.exit_code == 0, result.output
    step = json.loads(result.output)["step_time_s"]
    traces = read_workload(prefix)
    graph = simulate(scenario_from_dict(doc)).lowered.graph
    assert traces == graph_to_et(graph)
    network = tmp_path / "ring4.yml"
    network.write_text("topology: [Ring]\nnpus_count: [4]\nbandwidth: [50]\nlatency: [500]\n")
    run = CliRunner().invoke(
        main,
        ["et", "simulate", str(prefix), "--network", str(network), "--engine", "sim", "--json"],
    )
    assert run.exit_code == 0, run.output
    data = json.loads(run.output)
    assert data["makespan_ns"] == round(step * 1e9)
    receives = sum(n.type is NodeType.COMM_RECV_NODE for t in traces.values() for n in t.nodes)
    assert data["durations"] == {"none": receives, "recorded": len(graph)}


def test_cli_et_simulate_engine_sim_and_astra_default() -> None:
    prefix = MICROBENCH / "all_reduce/8npus_1MB/all_reduce"
    base = ["et", "simulate", str(prefix), "--network", str(RING8)]
    sim = CliRunner().invoke(main, [*base, "--engine", "sim", "--json"])
    assert sim.exit_code == 0, sim.output
    data = json.loads(sim.output)
    assert data["engine"] == "sim" and data["makespan_ns"] == 41_180
    system = ASTRA / "examples/system/native_collectives/Ring_4chunks.json"
    astra = CliRunner().invoke(main, [*base, "--system", str(system), "--json"])
    assert astra.exit_code == 0, astra.output
    assert "engine" not in json.loads(astra.output)  # the default is unchanged
    missing = CliRunner().invoke(main, base)
    assert missing.exit_code == 2 and "--system is required" in missing.output


def test_cli_engine_sim_bad_trace_exits_2(tmp_path: Path) -> None:
    bad = _trace(_node(2, NodeType.COMP_NODE, data_deps=(9,)), source="")
    write_workload({0: bad, 1: bad}, tmp_path / "bad")
    network = tmp_path / "ring2.yml"
    network.write_text("topology: [Ring]\nnpus_count: [2]\nbandwidth: [50]\nlatency: [500]\n")
    result = CliRunner().invoke(
        main,
        ["et", "simulate", str(tmp_path / "bad"), "--network", str(network), "--engine", "sim"],
    )
    assert result.exit_code == 2
    assert "bad.0.et: node 2: data_deps references node 9" in result.output


def test_collective_starts_when_its_last_member_is_ready() -> None:
    """Rank 1 computes 10 us before the all-reduce, rank 0 not at all: both finish the
    all-reduce together, 10 us plus its closed-form time after the start."""
    coll = _node(
        2,
        NodeType.COMM_COLL_NODE,
        Attribute("comm_type", AttrKind.INT64, 0),
        Attribute("comm_size", AttrKind.INT64, 1 << 20),
        data_deps=(1,),
    )
    idle = _node(1, NodeType.COMP_NODE)
    busy = _node(1, NodeType.COMP_NODE, duration_micros=10)
    network = CommModel.from_astra(
        parse_network("topology: [Ring]\nnpus_count: [2]\nbandwidth: [50]\nlatency: [500]\n")
    )
    imported = et_to_graph({0: _trace(idle, coll), 1: _trace(busy, coll)}, network)
    run = execute(imported.graph)
    ar = float(Ring().closed_form(Collective.ALL_REDUCE, 1 << 20, 2, RING8_BW, RING8_LAT))
    assert run.rank_end(0) == run.rank_end(1) == pytest.approx(10e-6 + ar, rel=1e-12)
