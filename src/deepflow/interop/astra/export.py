"""Write ASTRA-sim inputs for a deepflow scenario, so a step can be cross-checked there.

:func:`export_scenario` writes, into one directory:

* ``network.yml``: the system's hierarchy as ASTRA-sim dimensions (reference doc section
  2.2): a ``Switch`` of ``scale_up_size`` NPUs, then a ``Switch`` of the nodes; bandwidth is
  the per-accelerator bandwidth times the collective efficiency, in the file's GB = 2**30
  bytes; latency is half the per-message latency, because a switch counts two hops;
* ``system.json``: ring collectives on every dimension, ``localBWAware`` hierarchical
  all-reduce, ASTRA-sim's default endpoint delay (10 ns), 4 splits, and the accelerator's
  peak and memory bandwidth (section 2.3);
* ``comm_groups.json``: one communicator per tensor-parallel, data-parallel group;
* ``workload.<rank>.et``: one Chakra ET per rank for one training step.

The step of each rank, in issue order (every node data-depends on the one before it, so the
order is the program; a GPipe schedule, all forwards then all backwards, Huang et al.,
"GPipe", NeurIPS 2019, sec. 2.2):

* for each micro-batch: receive the activations from the previous stage (if any), then per
  layer a forward COMP and the layer's two tensor-parallel all-reduces of ``b s h`` bytes
  (Shoeybi et al. 2019, sec. 3, Fig. 4), then send to the next stage;
* for each micro-batch: the same in reverse with backward COMP nodes (backward compute plus
  recomputation) and gradient messages;
* a data-parallel all-reduce of the stage's gradients.

Compute durations are the closed-form evaluator's per-layer costs
(:func:`deepflow.estimate.layer_cost.layer_cost`, embedding and head on the first and last
stage), rounded to whole microseconds (the ET's resolution; at least 1 us). Layers are split
evenly over stages, MoE layers cost as the MoE template.

Big jobs: every rank of the job gets a file when the job has at most ``max_ranks`` ranks
(default 64).
Otherwise the exported job keeps ``tp`` and ``pp`` and reduces the data-parallel degree to
the largest power of two that fits; ranks of different data-parallel replicas run the same
program, so the exported replicas stand for the others, and ``export.json`` records the
original and exported degrees. The data-parallel all-reduce then spans fewer ranks than in
the real job, which understates its time by at most the ring's ``2(n-1)/n`` factor (Patarasuk
and Yuan, JPDC 69, 2009) on the level it crosses.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from deepflow.errors import ConfigError
from deepflow.estimate.context import Env
from deepflow.estimate.edges import embedding_cost, head_cost
from deepflow.estimate.layer_cost import layer_cost
from deepflow.interop.astra.network import NETWORK_GB
from deepflow.interop.chakra.codec import write_workload
from deepflow.interop.chakra.model import (
    Attribute,
    AttrKind,
    CommType,
    ExecutionTrace,
    GlobalMetadata,
    Node,
    NodeType,
)
from deepflow.network.hierarchy import Hierarchy
from deepflow.parallel.batch import StrategyBatch
from deepflow.specs.scenario import Scenario
from deepflow.workload.transformer import layer_template

__all__ = ["ExportResult", "export_scenario"]

ET_VERSION = "0.0.4"
"""GlobalMetadata version of the written ETs (the one ASTRA-sim's own generators write)."""


@dataclass(frozen=True)
class ExportResult:
    """What was written: the files, the exported parallel degrees and node counts."""

    directory: str
    files: tuple[str, ...]
    ranks: int
    tp: int
    pp: int
    dp: int
    job_dp: int
    nodes_per_rank: int

    @property
    def workload_prefix(self) -> str:
        return os.path.join(self.directory, "workload")


def _us(seconds: float) -> int:
    return max(1, round(seconds * 1e6))


class _Builder:
    """One rank's nodes, chained in order."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def _add(self, name: str, kind: NodeType, **fields) -> None:  # type: ignore[no-untyped-def]
        nid = len(self.nodes) + 1
        deps = (nid - 1,) if self.nodes else ()
        self.nodes.append(Node(id=nid, name=name, type=kind, data_deps=deps, **fields))

    def comp(self, name: str, seconds: float) -> None:
        self._add(
            name,
            NodeType.COMP_NODE,
            duration_micros=_us(seconds),
            attrs=(Attribute("is_cpu_op", AttrKind.BOOL, False),),
        )

    def coll(self, name: str, comm: CommType, size: float, group: str) -> None:
        self._add(
            name,
            NodeType.COMM_COLL_NODE,
            attrs=(
                Attribute("is_cpu_op", AttrKind.BOOL, False),
                Attribute("comm_type", AttrKind.INT64, int(comm)),
                Attribute("comm_size", AttrKind.INT64, max(1, round(size))),
                Attribute("pg_name", AttrKind.STRING, group),
            ),
        )

    def p2p(self, name: str, kind: NodeType, peer: int, size: float, tag: int) -> None:
        peer_key = "comm_dst" if kind is NodeType.COMM_SEND_NODE else "comm_src"
        self._add(
            name,
            kind,
            attrs=(
                Attribute("is_cpu_op", AttrKind.BOOL, False),
                Attribute("comm_size", AttrKind.INT64, max(1, round(size))),
                Attribute(peer_key, AttrKind.INT32, peer),
                Attribute("comm_tag", AttrKind.INT32, tag),
            ),
        )


def _network_yaml(hierarchy: Hierarchy, ranks: int) -> str:
    up = min(hierarchy.scale_up_size, ranks)
    dims = []
    if up > 1:
        dims.append((up, hierarchy.scale_up))
    if ranks // max(up, 1) > 1:
        dims.append((ranks // max(up, 1), hierarchy.scale_out))
    if not dims:
        raise ConfigError("the exported job has one rank; ASTRA-sim needs at least two", "system")
    topo = ", ".join("Switch" for _ in dims)
    count = ", ".join(str(n) for n, _ in dims)
    bw = ", ".join(f"{lv.effective_bandwidth / NETWORK_GB:.6g}" for _, lv in dims)
    lat = ", ".join(f"{lv.latency * 1e9 / 2:.6g}" for _, lv in dims)
    return (
        "# written by deepflow et export: the system's hierarchy as ASTRA-sim dimensions\n"
        f"topology: [ {topo} ]\n"
        f"npus_count: [ {count} ]\n"
        f"bandwidth: [ {bw} ]  # GB/s per NPU and direction, GB = 2**30 bytes\n"
        f"latency: [ {lat} ]  # ns per link; a switch is two links\n"
    ), len(dims)


def _system_json(scenario: Scenario, dims: int) -> str:
    acc = scenario.system.accelerator
    precision = scenario.strategy.precision
    ring = ["ring"] * dims
    data = {
        "scheduling-policy": "FIFO",
        "endpoint-delay": 10,
        "active-chunks-per-dimension": 1,
        "preferred-dataset-splits": 4,
        "all-reduce-implementation": ring,
        "all-gather-implementation": ring,
        "reduce-scatter-implementation": ring,
        "all-to-all-implementation": ring,
        "collective-optimization": "localBWAware",
        "local-mem-bw": acc.memory_bandwidth / 1e9,
        "peak-perf": acc.peak(precision) / 1e12,
        "roofline-enabled": 0,
    }
    return json.dumps(data, indent=2) + "\n"


def export_scenario(
    scenario: Scenario,
    out_dir: str | os.PathLike[str],
    max_ranks: int = 64,
    merge_layers: bool = False,
) -> ExportResult:
    """Write ASTRA-sim inputs for one training step of ``scenario`` into ``out_dir``.

    ``merge_layers`` writes one COMP node and one tensor-parallel all-reduce (of the summed
    size) per stage and micro-batch instead of one per layer: the files shrink by the layer
    count, and the all-reduces lose all but one of their per-message latencies.
    """
    s = scenario.strategy
    model, system = scenario.model, scenario.system
    tp, pp, job_dp = int(s.tp), int(s.pp), scenario.dp
    if int(s.cp) != 1:
        raise ConfigError("export supports cp = 1 only", "strategy.cp")
    if int(getattr(s, "ep", 1)) != 1:
        raise ConfigError("export supports ep = 1 only", "strategy.ep")
    dp = job_dp
    while tp * pp * dp > max_ranks and dp > 1:
        dp = 1 << ((dp - 1).bit_length() - 1) if dp & (dp - 1) else dp // 2
    ranks = tp * pp * dp
    batch = StrategyBatch.from_specs([s])
    env = Env.build(model, system, batch, scenario.training.global_batch_size)
    moe = model.moe is not None
    layer = layer_cost(env, layer_template(model, moe=moe))
    emb, head = embedding_cost(env), head_cost(env)
    micro = int(env.micro_batches[0])
    hidden = float(env.tokens[0]) * model.hidden_size * float(env.elem[0])
    per_stage = model.num_layers // pp
    extra = model.num_layers - per_stage * pp
    fwd = float(layer.forward_compute[0])
    bwd = float(layer.backward_compute[0] + layer.recompute[0])
    tp_colls = 2
    # rank = tp index + tp * (dp index + dp * stage): tensor-parallel innermost, as deepflow
    # places the mesh axes (deepflow.parallel), pipeline stages outermost
    groups: dict[str, list[int]] = {}

    def rank(t: int, d: int, p: int) -> int:
        return t + tp * (d + dp * p)

    def group(members: list[int]) -> str:
        gid = str(len(groups) + 1)
        groups[gid] = members
        return gid

    tp_group = {
        (d, p): group([rank(t, d, p) for t in range(tp)])
        for d in range(dp)
        for p in range(pp)
        if tp > 1
    }
    dp_group = {
        (t, p): group([rank(t, d, p) for d in range(dp)])
        for t in range(tp)
        for p in range(pp)
        if dp > 1
    }
    traces: dict[int, ExecutionTrace] = {}
    for p in range(pp):
        layers = per_stage + (1 if p < extra else 0)
        stage_params = float(layer.params[0] + layer.expert_params[0]) * layers
        # (node count, compute per node, all-reduces per node and their size)
        blocks, scale = (1, layers) if merge_layers else (layers, 1)
        f_extra = (float(emb.forward_compute[0]) if p == 0 else 0.0) + (
            float(head.forward_compute[0]) if p == pp - 1 else 0.0
        )
        b_extra = (float(emb.backward_compute[0]) if p == 0 else 0.0) + (
            float(head.backward_compute[0]) if p == pp - 1 else 0.0
        )
        for d in range(dp):
            for t in range(tp):
                me = rank(t, d, p)
                nb = _Builder()
                for m in range(micro):
                    if p > 0:
                        nb.p2p(f"recv_act_mb{m}", NodeType.COMM_RECV_NODE, rank(t, d, p - 1),
                               hidden / tp, m)  # fmt: skip
                    if f_extra:
                        nb.comp(f"fwd_edges_mb{m}", f_extra)
                    for i in range(blocks):
                        nb.comp(f"fwd_layer{i}_mb{m}", fwd * scale)
                        if tp > 1:
                            for j in range(1 if merge_layers else tp_colls):
                                nb.coll(f"fwd_tp_ar{j}_layer{i}_mb{m}", CommType.ALL_REDUCE,
                                        hidden * (tp_colls * scale if merge_layers else 1),
                                        tp_group[(d, p)])  # fmt: skip
                    if p < pp - 1:
                        nb.p2p(f"send_act_mb{m}", NodeType.COMM_SEND_NODE, rank(t, d, p + 1),
                               hidden / tp, m)  # fmt: skip
                for m in range(micro):
                    tag = micro + m
                    if p < pp - 1:
                        nb.p2p(f"recv_grad_mb{m}", NodeType.COMM_RECV_NODE, rank(t, d, p + 1),
                               hidden / tp, tag)  # fmt: skip
                    if b_extra:
                        nb.comp(f"bwd_edges_mb{m}", b_extra)
                    for i in reversed(range(blocks)):
                        nb.comp(f"bwd_layer{i}_mb{m}", bwd * scale)
                        if tp > 1:
                            for j in range(1 if merge_layers else tp_colls):
                                nb.coll(f"bwd_tp_ar{j}_layer{i}_mb{m}", CommType.ALL_REDUCE,
                                        hidden * (tp_colls * scale if merge_layers else 1),
                                        tp_group[(d, p)])  # fmt: skip
                    if p > 0:
                        nb.p2p(f"send_grad_mb{m}", NodeType.COMM_SEND_NODE, rank(t, d, p - 1),
                               hidden / tp, tag)  # fmt: skip
                if dp > 1:
                    grad = stage_params * float(env.grad_bytes[0])
                    nb.coll("dp_grad_ar", CommType.ALL_REDUCE, grad, dp_group[(t, p)])
                traces[me] = ExecutionTrace(GlobalMetadata(ET_VERSION), tuple(nb.nodes))
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    net_text, dims = _network_yaml(Hierarchy.from_system(system), ranks)
    files = []
    for name, text in (
        ("network.yml", net_text),
        ("system.json", _system_json(scenario, dims)),
        ("comm_groups.json", json.dumps(groups) + "\n"),
        (
            "export.json",
            json.dumps(
                {
                    "scenario": scenario.name,
                    "ranks": ranks,
                    "tp": tp,
                    "pp": pp,
                    "dp": dp,
                    "job_dp": job_dp,
                    "micro_batches": micro,
                    "rank_layout": "rank = tp_index + tp * (dp_index + dp * stage)",
                    "note": (
                        "every data-parallel replica runs the same program; "
                        f"{dp} of {job_dp} replicas are exported"
                        if dp < job_dp
                        else "every rank of the job is exported"
                    ),
                },
                indent=2,
            )
            + "\n",
        ),
    ):
        path = os.path.join(out, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        files.append(path)
    files += write_workload(traces, os.path.join(out, "workload"))
    nodes = int(np.mean([len(t.nodes) for t in traces.values()]))
    return ExportResult(out, tuple(files), ranks, tp, pp, dp, job_dp, nodes)
