"""MSCCL-IR import: parsing, per-rank schedules, symbolic data movement, ET conversion."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

# (file, coll, gpus, total steps, step-type counts) from tests/fixtures/msccl/README.md's source
from tests.interop.paths import CUSTOM_DIR, CUSTOM_PREFIX, MSCCL, MSCCL_XMLS

from deepflow.errors import TraceError
from deepflow.interop.chakra import NodeType, check_workload, encode_et, read_et
from deepflow.interop.msccl import (
    Buffer,
    MscclCollective,
    StepType,
    chunk_bytes,
    msccl_to_chakra,
    parse_msccl,
    rank_schedules,
    read_msccl,
    run_dataflow,
    verify_collective,
)

FACTS = {
    "custom_allreduce.xml": ("allreduce", 8, 224, {"s": 112, "rrc": 56, "r": 56}),
    "ring_8_1.xml": ("allreduce", 8, 120, {"s": 8, "rrs": 48, "rrcs": 8, "rcs": 48, "r": 8}),
    "ring_1_8.xml": ("allreduce", 8, 960, {"s": 64, "rrs": 384, "rrcs": 64, "rcs": 384, "r": 64}),
    "ap1_nop.xml": ("allreduce", 8, 1336, {"nop": 664, "re": 448, "s": 112, "r": 112}),
    "ar_hier_12_Simple.xml": ("allreduce", 4, 336, {"s": 144, "r": 96, "rrc": 48, "re": 48}),
    "ag-1k-512k.xml": ("allgather", 8, 224, {"r": 112, "s": 112}),
    "ag_hier_4_LL.xml": ("allgather", 4, 96, {"r": 32, "s": 32, "rcs": 16, "cpy": 16}),
    "a2a2ll.xml": ("alltoall", 8, 240, {"r": 112, "s": 112, "cpy": 16}),
}


@pytest.mark.parametrize("path", MSCCL_XMLS, ids=lambda p: p.name)
def test_parse_matches_published_counts(path: Path) -> None:
    algo = read_msccl(path)
    coll, gpus, total, kinds = FACTS[path.name]
    assert algo.coll is MscclCollective(coll)
    assert algo.ngpus == len(algo.gpus) == gpus
    steps = [s for g in algo.gpus for tb in g.threadblocks for s in tb.steps]
    assert len(steps) == total
    assert Counter(s.type.value for s in steps) == kinds


@pytest.mark.parametrize("path", MSCCL_XMLS, ids=lambda p: p.name)
def test_every_rank_holds_what_the_collective_defines(path: Path) -> None:
    algo = read_msccl(path)
    result = verify_collective(algo)
    nops = sum(s.type is StepType.NOP for g in algo.gpus for tb in g.threadblocks for s in tb.steps)
    assert result.steps_run == FACTS[path.name][2] - nops


def test_ring_allreduce_final_buffers_explicitly() -> None:
    algo = read_msccl(MSCCL / "ring_8_1.xml")
    result = run_dataflow(algo)
    for rank in range(8):
        chunks = result.buffers[rank][Buffer.INPUT]
        assert chunks == tuple(tuple((q, c) for q in range(8)) for c in range(8))


def test_alltoall_final_buffers_explicitly() -> None:
    algo = read_msccl(MSCCL / "a2a2ll.xml")
    out = run_dataflow(algo).buffers[5][Buffer.OUTPUT]
    # chunk 2q+k of rank 5's output is chunk 2*5+k of rank q's input
    assert out[2 * 3 + 1] == ((3, 11),)


def test_schedule_of_the_unfused_ring() -> None:
    sched = rank_schedules(read_msccl(CUSTOM_DIR / "custom_allreduce.xml"))
    steps = sched[0]
    assert len(steps) == 28
    assert [s.op.value for s in steps[:4]] == ["s", "rrc", "s", "rrc"]
    assert {s.send_peer for s in steps if s.op.sends} == {1}
    assert {s.recv_peer for s in steps if s.op.receives} == {7}
    assert steps[0].deps == ()
    assert all(s.deps == ((0, s.index - 1),) for s in steps[1:])
    assert all(s.chunks == 1 for s in steps)


def test_nop_dependencies_are_forwarded() -> None:
    algo = read_msccl(MSCCL / "ap1_nop.xml")
    sched = {s.key: s for s in rank_schedules(algo)[0]}
    assert all(s.op is not StepType.NOP for s in sched.values())
    # gpu 0, tb 0: steps 0..5 are nops waiting on step 1 of tbs 2..7; step 6 ("re") waits on
    # tb 1 step 1 itself, so it inherits all seven
    re_step = sched[(0, 6)]
    assert re_step.op is StepType.REDUCE
    assert sorted(re_step.deps) == [(t, 1) for t in range(1, 8)]
    order = [s.key for s in rank_schedules(algo)[0]]
    position = {k: i for i, k in enumerate(order)}
    assert all(position[d] < position[k] for k, s in sched.items() for d in s.deps)


def test_cross_threadblock_dependency() -> None:
    algo = read_msccl(MSCCL / "ar_hier_12_Simple.xml")
    sched = {s.key: s for s in rank_schedules(algo)[0]}
    # gpu 0, tb 1, step 0 has depid=24 deps=2
    assert sched[(1, 0)].deps == ((24, 2),)
    assert sched[(1, 1)].deps == ((1, 0), (0, 0))


def test_conversion_reproduces_astra_sim_custom_allreduce_byte_for_byte() -> None:
    algo = read_msccl(CUSTOM_DIR / "custom_allreduce.xml")
    traces = msccl_to_chakra(algo, 1 << 20)
    assert sorted(traces) == list(range(8))
    for rank, trace in traces.items():
        expected = (CUSTOM_DIR / f"custom_allreduce.{rank}.et").read_bytes()
        assert encode_et(trace) == expected
        assert trace == read_et(f"{CUSTOM_PREFIX}.{rank}.et")


def test_fused_steps_become_node_chains() -> None:
    algo = read_msccl(MSCCL / "ring_8_1.xml")
    traces = msccl_to_chakra(algo, 1 << 20)
    check_workload(traces)
    t0 = traces[0]
    # gpu 0 tb 2 is (rrs, r): RECV -> COMP -> SEND, then RECV
    names = [n.name for n in t0.nodes if "_tb2_" in n.name]
    assert names == [
        "COMM_RECV_NODE_tb2_step0",
        "COMP_NODE_tb2_step0",
        "COMM_SEND_NODE_tb2_step0",
        "COMM_RECV_NODE_tb2_step1",
    ]
    by_name = {n.name: n for n in t0.nodes}
    comp = by_name["COMP_NODE_tb2_step0"]
    assert comp.data_deps == (by_name["COMM_RECV_NODE_tb2_step0"].id,)
    assert comp.duration_micros == 7  # floor(3 * floor(131072 / 50) / 1000)
    send = by_name["COMM_SEND_NODE_tb2_step0"]
    assert send.data_deps == (comp.id,)
    assert send.attr_value("comm_tag") == 2 and send.attr_value("comm_dst") == 1
    assert by_name["COMM_RECV_NODE_tb2_step1"].data_deps == (send.id,)
    kinds = Counter(n.type for t in traces.values() for n in t.nodes)
    # s 8, rrs 48 (3 nodes), rrcs 8 (3), rcs 48 (2), r 8
    assert kinds[NodeType.COMM_SEND_NODE] == 8 + 48 + 8 + 48
    assert kinds[NodeType.COMM_RECV_NODE] == 48 + 8 + 48 + 8
    assert kinds[NodeType.COMP_NODE] == 48 + 8


@pytest.mark.parametrize("path", MSCCL_XMLS, ids=lambda p: p.name)
def test_every_conversion_passes_the_et_checks(path: Path) -> None:
    check_workload(msccl_to_chakra(read_msccl(path), 1 << 20))


def test_chunk_sizes_follow_astra_sim_size_semantics() -> None:
    ring = read_msccl(CUSTOM_DIR / "custom_allreduce.xml")
    assert chunk_bytes(ring, 1 << 20) == 131_072
    gather = read_msccl(MSCCL / "ag-1k-512k.xml")  # 16 chunks per loop, 2 per rank input
    assert chunk_bytes(gather, 1 << 20) == 1 << 19
    a2a = read_msccl(MSCCL / "a2a2ll.xml")
    assert chunk_bytes(a2a, 1 << 20) == 1 << 16
    copy = next(
        n for n in msccl_to_chakra(a2a, 64_000_000)[0].nodes if n.type is NodeType.COMP_NODE
    )
    assert copy.duration_micros == 160  # floor(2 * floor(4e6 / 50) / 1000)
    with pytest.raises(TraceError, match="collective size 4 B is smaller than its 8 chunks"):
        chunk_bytes(ring, 4)


def _ring_xml(step_type: str = "s", send: str = "1", depid: str = "-1") -> str:
    return f"""<algo name="t" proto="LL" nchannels="1" nchunksperloop="2" ngpus="2" coll="allreduce" inplace="1">
  <gpu id="0" i_chunks="2" o_chunks="0" s_chunks="0">
    <tb id="0" send="{send}" recv="1" chan="0">
      <step s="0" type="{step_type}" srcbuf="i" srcoff="0" dstbuf="i" dstoff="0" cnt="1" depid="{depid}" deps="0" hasdep="0"/>
    </tb>
  </gpu>
  <gpu id="1" i_chunks="2" o_chunks="0" s_chunks="0">
    <tb id="0" send="0" recv="0" chan="0">
      <step s="0" type="r" srcbuf="i" srcoff="0" dstbuf="i" dstoff="0" cnt="1" depid="-1" deps="-1" hasdep="0"/>
    </tb>
  </gpu>
</algo>"""


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (_ring_xml(step_type="ra"), r"bad\.xml: gpu 0, tb 0, step #0: type='ra' is not one of"),
        (_ring_xml(send="0"), r"bad\.xml: gpu 0, tb 0: send peer is the GPU itself"),
        (_ring_xml(send="9"), r"bad\.xml: gpu 0, tb 0: send=9 is not a rank in 0\.\.1"),
        (_ring_xml(depid="3"), r"bad\.xml: gpu 0, tb 0, step 0: depid=3 names no threadblock"),
        (_ring_xml(send="-1"), r"gpu 0, tb 0, step 0: step type 's' sends, but the tb has send=-1"),
        ("<algo", r"bad\.xml: not well-formed XML"),
        ("<gpu/>", r"bad\.xml: root element is <gpu>, expected <algo>"),
    ],
)
def test_malformed_algorithms(xml: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        parse_msccl(xml, "bad.xml")


def test_wrong_algorithm_is_caught_by_the_dataflow_check() -> None:
    xml = _ring_xml()
    algo = parse_msccl(xml, "half.xml")  # sends one chunk one way: not an all-reduce
    with pytest.raises(
        TraceError, match=r"half\.xml: gpu 0: after the algorithm, chunk 0 of buffer 'i'"
    ):
        verify_collective(algo)


def test_deadlock_is_reported() -> None:
    xml = _ring_xml(step_type="r")  # both GPUs receive, nobody sends
    with pytest.raises(TraceError, match=r"dead\.xml: gpu 0, tb 0, step 0: deadlock"):
        run_dataflow(parse_msccl(xml, "dead.xml"))
