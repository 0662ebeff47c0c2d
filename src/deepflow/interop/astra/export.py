"""Write ASTRA-sim inputs for a deepflow scenario, so a step can be cross-checked there.

:func:`export_scenario` writes, into one directory:

* ``network.yml``: the system's hierarchy as ASTRA-sim dimensions (reference doc section
  2.2): a ``Switch`` of ``scale_up_size`` NPUs, then a ``Switch`` of the nodes; bandwidth is
  the per-accelerator bandwidth times the collective efficiency, in the file's GB = 2**30
  bytes; latency is half the per-message latency, because a switch counts two hops;
* ``system.json``: ring collectives on every dimension, ``localBWAware`` hierarchical
  all-reduce, ASTRA-sim's default endpoint delay (10 ns), 4 splits, and the accelerator's
  peak and memory bandwidth (section 2.3);
* ``comm_groups.json``: one communicator per tensor-parallel, expert-parallel,
  data-parallel and expert-data-parallel group;
* ``workload.<rank>.et``: one Chakra ET per rank for one training step.

Ranks follow deepflow's default mesh order, ``rank = t + tp (c + cp (d + dp p))`` (tensor,
context, data parallel, pipeline stage outermost). The step of each rank, in issue order
(each node data-depends on the one before it, except where noted):

* forward, chunk by chunk: receive the activations from the previous virtual stage (if
  any), the embedding on the first chunk, then per layer a forward COMP, the layer's two
  tensor-parallel all-reduces of ``b s h`` bytes (Shoeybi et al. 2019, sec. 3, Fig. 4) and,
  on MoE layers with ``ep > 1``, two expert all-to-alls over the ``ep`` group (dispatch and
  combine, Lepikhin et al. 2020, sec. 3.2); the head on the last chunk; then send to the
  next virtual stage. With ``cp > 1`` each layer's COMP has beside it (both depend on the
  node before, the next node on both) the ring-attention exchange: ``cp - 1`` steps of a
  send of the local K,V block to the next context rank and a receive from the previous one
  (Liu et al. 2023, arXiv 2310.01889, sec. 3), twice as many in backward;
* the order is Megatron's interleaved one (Narayanan et al. 2021, sec. 2.2.2): ``vpp``
  chunks per stage (chunk ``c`` on stage ``c mod pp``), micro-batches in groups of ``pp``
  run chunk by chunk; with ``vpp = 1`` this is GPipe's all-forwards-then-all-backwards
  (Huang et al., "GPipe", NeurIPS 2019, sec. 2.2);
* backward: the same in reverse, with backward COMP nodes (backward compute plus
  recomputation) and gradient messages;
* the data-parallel synchronization of the stage's gradients over the ``dp x cp`` ranks
  (expert gradients over the ``dp x cp / ep`` ranks that hold the same experts), as
  :mod:`deepflow.parallel.sharding` lists it: an all-reduce (ZeRO 0), or a reduce-scatter
  over the shard group and an all-reduce of the shard across replicas (ZeRO 1/2, HSDP);
* the optimizer step as one COMP node: the estimator's memory-bound Adam update
  (:func:`deepflow.estimate.evaluate.evaluate`, breakdown ``optimizer``).

Compute durations are the closed-form evaluator's per-layer costs
(:func:`deepflow.estimate.layer_cost.layer_cost`, dense or MoE template per layer,
embedding and head on the first and last chunk), rounded to whole microseconds (the ET's
resolution; at least 1 us).

With sequence parallelism each tensor-parallel all-reduce becomes an all-gather and a
reduce-scatter of the same buffer (Korthikanti et al. 2022, sec. 4.2.2). ZeRO 1/2 gather
the updated parameters (in the parameter precision) after the optimizer step; ZeRO-3
gathers each layer's parameters before its forward and (resharded after forward) its
backward compute and reduce-scatters its gradients after the backward, with the replica
all-reduce under hybrid sharding (Rajbhandari et al. 2020, sec. 5; Zhao et al. 2023), and no
gradient sync at the end. Every volume and group comes from :mod:`deepflow.parallel.sharding`.

Not exported: the estimator's overlaps (gradient sync under backward, ZeRO-3 prefetch):
every node of a rank waits for the one before it, except the context-parallel exchanges.

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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deepflow.errors import ConfigError
from deepflow.estimate.context import Env
from deepflow.estimate.edges import embedding_cost, head_cost
from deepflow.estimate.evaluate import evaluate
from deepflow.estimate.layer_cost import LayerCost, layer_cost
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
from deepflow.network.ops import Collective
from deepflow.parallel.batch import StrategyBatch
from deepflow.parallel.pipeline_split import pipeline_split
from deepflow.parallel.sharding import (
    SyncCollective,
    data_parallel_groups,
    step_sync,
    unit_backward,
    unit_forward,
)
from deepflow.specs.scenario import Scenario
from deepflow.workload.operators import LayerTemplate
from deepflow.workload.transformer import layer_template

__all__ = ["ExportResult", "export_scenario"]

CP_TAG = 1 << 20
"""Tag of the context-parallel ring exchanges (pipeline messages use smaller tags)."""
GRAD_TAG = 1 << 19
"""Offset of the pipeline's gradient tags from its activation tags."""
ET_VERSION = "0.0.4"
"""GlobalMetadata version of the written ETs (the one ASTRA-sim's own generators write)."""

_COMM_TYPES = {
    Collective.ALL_REDUCE: CommType.ALL_REDUCE,
    Collective.ALL_GATHER: CommType.ALL_GATHER,
    Collective.REDUCE_SCATTER: CommType.REDUCE_SCATTER,
    Collective.ALL_TO_ALL: CommType.ALL_TO_ALL,
}


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
    cp: int = 1
    ep: int = 1
    vpp: int = 1

    @property
    def workload_prefix(self) -> str:
        return os.path.join(self.directory, "workload")


def _us(seconds: float) -> int:
    return max(1, round(seconds * 1e6))


class _Builder:
    """One rank's nodes, chained in order: each node data-depends on the current ``tail``
    (the node before it, or every branch of a fork once they are joined)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.tail: tuple[int, ...] = ()

    def _add(self, name: str, kind: NodeType, **fields) -> None:  # type: ignore[no-untyped-def]
        nid = len(self.nodes) + 1
        self.nodes.append(Node(id=nid, name=name, type=kind, data_deps=self.tail, **fields))
        self.tail = (nid,)

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


def _kv_bytes(env: Env, model_layer: LayerTemplate) -> float:
    """Bytes of the local K,V block one ring-attention step passes on: ``b (s/cp)
    max(kv_heads/tp, 1) (d_qk + d_v)`` elements, as the estimator's context-parallel
    exchange (:mod:`deepflow.estimate.layer_cost`; Liu et al. 2023, arXiv 2310.01889)."""
    b = env.batch
    core = model_layer.attention
    kv_heads = max(core.kv_heads / int(b.tp[0]), 1.0)
    tokens = float(b.micro_batch_size[0]) * env.model.seq_len / int(b.cp[0])
    return tokens * kv_heads * (core.qk_dim + core.v_dim) * float(env.elem[0])


def export_scenario(
    scenario: Scenario,
    out_dir: str | os.PathLike[str],
    max_ranks: int = 64,
    merge_layers: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Write ASTRA-sim inputs for one training step of ``scenario`` into ``out_dir``.

    ``on_progress(done, total)`` hears the number of ranks whose trace is built (it cannot
    change the output).

    ``merge_layers`` writes one COMP node and one tensor-parallel all-reduce (of the summed
    size) per stage chunk and micro-batch instead of one per layer: the files shrink by the
    layer count, and the all-reduces lose all but one of their per-message latencies.
    """
    s = scenario.strategy
    model, system = scenario.model, scenario.system
    tp, pp, cp, ep, vpp = int(s.tp), int(s.pp), int(s.cp), int(s.ep), int(s.vpp)
    if s.etp != tp:
        # the export's communicator lists follow the unfolded expert grid (EP over dp*cp)
        raise ConfigError(
            f"the ASTRA-sim export writes expert groups over dp*cp only; expert_tp={s.etp} "
            f"differs from tp={tp} (MoE parallel folding is costed by predict and simulate)",
            "strategy.expert_tp",
        )
    job_dp = scenario.dp
    dp = job_dp
    if ep > 1 and (job_dp * cp) % ep:
        # the expert groups are the innermost ep ranks of dp x cp
        # (deepflow.parallel.sharding.data_parallel_groups): ep must divide it
        raise ConfigError(
            f"ep {ep} must divide dp x cp = {job_dp} x {cp} = {job_dp * cp} (an expert-"
            "parallel group is ep whole ranks of the data- and context-parallel grid); the "
            "export cannot place its groups",
            "strategy.ep",
        )
    # fewer replicas for big jobs; expert parallelism needs whole groups of ep replicas
    shard_degree = s.shard_degree or 0
    while tp * cp * pp * dp > max_ranks and dp * cp > ep:
        smaller = 1 << ((dp - 1).bit_length() - 1) if dp & (dp - 1) else dp // 2
        if smaller * cp < ep or (smaller * cp) % ep or (smaller * cp) % max(shard_degree, 1):
            break
        dp = smaller
    ranks = tp * cp * pp * dp
    batch = StrategyBatch.from_specs([s])
    gbs = scenario.training.global_batch_size
    env = Env.build(model, system, batch, gbs)
    dense_t = layer_template(model, moe=False)
    moe_t = layer_template(model, moe=True) if model.moe is not None else dense_t
    costs = {False: layer_cost(env, dense_t), True: layer_cost(env, moe_t)}
    emb, head = embedding_cost(env), head_cost(env)
    optimizer_s = float(evaluate(model, system, gbs, batch).breakdown["optimizer"][0])
    micro = int(env.micro_batches[0])
    elem = float(env.elem[0])
    hidden = float(env.tokens[0]) * model.hidden_size * elem
    sp_div = float(env.sp_div[0])
    kv = _kv_bytes(env, dense_t)
    tp_colls = 2
    sequence_parallel = bool(s.sequence_parallel)
    zero = int(s.zero)
    zero3 = zero >= 3 and dp * cp > 1
    reshard = bool(s.reshard_after_forward)
    grad = float(env.grad_bytes[0])
    # layers per chunk: pp * vpp chunks, chunk c on stage c mod pp, the estimator's and the
    # simulator's split (deepflow.parallel.pipeline_split)
    chunks = pp * vpp
    bounds = list(pipeline_split(model, pp, vpp, s.stage_layers).chunks)
    # rank = t + tp (c + cp (d + dp p)): the mesh axes in deepflow's default order
    # (tp, cp, dp, pp; deepflow.parallel), pipeline stages outermost
    groups: dict[str, list[int]] = {}

    def rank(t: int, c: int, d: int, p: int) -> int:
        return t + tp * (c + cp * (d + dp * p))

    def group(members: list[int]) -> str:
        gid = str(len(groups) + 1)
        groups[gid] = members
        return gid

    coords = [
        (t, c, d, p) for p in range(pp) for d in range(dp) for c in range(cp) for t in range(tp)
    ]
    tp_group = {}
    if tp > 1:
        for p in range(pp):
            for d in range(dp):
                for c in range(cp):
                    tp_group[(c, d, p)] = group([rank(t, c, d, p) for t in range(tp)])
    # data-parallel communicators over the dp x cp ranks (index j = c + cp d), expert
    # parallelism innermost: the placement of deepflow.parallel.sharding, whose collective
    # lists (step_sync, unit_forward, unit_backward) give every volume below
    n_dp = dp * cp
    dpg = data_parallel_groups(dp, cp, ep, shard_degree, cp, 1, max(n_dp, 1))
    shard_n = int(dpg.shard.size)
    eshard_n = int(dpg.expert_shard.size)
    by_members: dict[tuple[int, ...], str] = {}

    def dp_members(kind: str, j: int) -> list[int]:
        if kind == "grad":
            return list(range(n_dp))
        if kind in ("shard", "replica"):
            inner, outer = shard_n, n_dp // shard_n
            if kind == "shard":
                return [j // inner * inner + k for k in range(inner)]
            return [j % inner + inner * k for k in range(outer)]
        if kind == "ep":
            return [j // ep * ep + k for k in range(ep)]
        r = j // ep  # position among the ranks holding the same experts
        if kind == "expert_grad":
            return [j % ep + ep * k for k in range(n_dp // ep)]
        if kind == "expert_shard":
            return [j % ep + ep * (r // eshard_n * eshard_n + k) for k in range(eshard_n)]
        return [j % ep + ep * (r % eshard_n + eshard_n * k) for k in range(n_dp // ep // eshard_n)]

    def dp_group(kind: str, t: int, c: int, d: int, p: int) -> str | None:
        """Id of the ``kind`` communicator (a DataParallelGroups field) of a rank, or None
        where it has one member."""
        members = dp_members(kind, c + cp * d)
        if len(members) < 2:
            return None
        ranks_ = tuple(t + tp * (jj + n_dp * p) for jj in members)
        if ranks_ not in by_members:
            by_members[ranks_] = group(list(ranks_))
        return by_members[ranks_]

    def dp_colls(nb: _Builder, where: tuple[int, int, int, int],
                 colls: tuple[SyncCollective, ...], name: str) -> None:  # fmt: skip
        """Write the data-parallel collectives ``colls`` (each on its group) in order."""
        t, c, d, p = where
        for k in colls:
            size = float(np.asarray(k.size).ravel()[0])
            gid = dp_group(k.group, t, c, d, p)
            if size > 0 and gid is not None:
                label = (
                    k.label.replace("all-gather", "ag")
                    .replace("reduce-scatter", "rs")
                    .replace("all-reduce", "ar")
                    .replace(" ", "_")
                )
                nb.coll(f"{name}_{label}", _COMM_TYPES[k.op], size, gid)

    def layer_block(nb: _Builder, where: tuple[int, int, int, int], layers: range, fwd: bool,
                    label: str) -> None:  # fmt: skip
        """Forward or backward of ``layers`` on one rank: compute, the context-parallel
        ring exchange beside it, the tensor-parallel reductions and expert all-to-alls."""
        t, c, d, p = where
        blocks = [layers] if merge_layers else [range(i, i + 1) for i in layers]
        for blk in blocks:
            if not blk:
                continue
            n_moe = sum(model.is_moe_layer(i) for i in blk)
            parts = [(costs[False], len(blk) - n_moe), (costs[True], n_moe)]
            if fwd:
                seconds = sum(float(k.forward_compute[0]) * n for k, n in parts)
            else:
                seconds = sum(float(k.backward_compute[0] + k.recompute[0]) * n for k, n in parts)
            name = f"{label}_layer{blk.start}" + (f"-{blk.stop - 1}" if len(blk) > 1 else "")
            if zero3:
                # ZeRO-3 / FSDP: gather the layers' parameters before their compute, in
                # forward and (resharded after forward) again in backward
                p_, e_ = unit_params(parts)
                if fwd or reshard:
                    dp_colls(nb, where, unit_forward(p_, e_, zero, elem), f"{name}_zero3")
            start = nb.tail
            nb.comp(name, seconds)
            if cp > 1:
                # ring attention beside the attention compute: cp-1 steps forward, twice as
                # many backward (K,V and their gradients; the estimator's exchange)
                done = nb.tail
                nb.tail = start
                # (merged layers: one exchange per step carrying every layer's block)
                steps = (cp - 1) * (1 if fwd else 2)
                size = kv * len(blk)
                nxt, prv = rank(t, (c + 1) % cp, d, p), rank(t, (c - 1) % cp, d, p)
                for k in range(steps):
                    nb.p2p(f"{name}_cp_send{k}", NodeType.COMM_SEND_NODE, nxt, size, CP_TAG)
                    nb.p2p(f"{name}_cp_recv{k}", NodeType.COMM_RECV_NODE, prv, size, CP_TAG)
                nb.tail = (*done, *nb.tail)
            if tp > 1:
                for j in range(1 if merge_layers else tp_colls):
                    size = hidden * (tp_colls * len(blk) if merge_layers else 1)
                    if sequence_parallel:
                        # all-gather before the column-parallel GEMM, reduce-scatter after the
                        # row-parallel one; backward mirrors them with the same pair
                        # (Korthikanti et al. 2022, sec. 4.2.2)
                        nb.coll(f"{name}_tp_ag{j}", CommType.ALL_GATHER, size,
                                tp_group[(c, d, p)])  # fmt: skip
                        nb.coll(f"{name}_tp_rs{j}", CommType.REDUCE_SCATTER, size,
                                tp_group[(c, d, p)])  # fmt: skip
                    else:
                        nb.coll(f"{name}_tp_ar{j}", CommType.ALL_REDUCE, size,
                                tp_group[(c, d, p)])  # fmt: skip
            if ep > 1 and n_moe:
                routed = hidden * moe_t.top_k / sp_div
                for j in range(2 * n_moe):
                    nb.coll(f"{name}_ep_a2a{j}", CommType.ALL_TO_ALL, routed,
                            dp_group("ep", t, c, d, p))  # fmt: skip
            if zero3 and not fwd:
                # the gradient reduce-scatter (and the replica all-reduce), without the
                # gathers already written before the compute
                p_, e_ = unit_params(parts)
                colls = unit_backward(p_, e_, zero, False, dpg, elem, grad)
                dp_colls(nb, where, colls, f"{name}_zero3")

    def unit_params(parts: list[tuple[LayerCost, int]]) -> tuple[float, float]:
        """Non-expert and expert parameters of a block of layers on one rank."""
        return (
            sum(float(k.params[0]) * n for k, n in parts),
            sum(float(k.expert_params[0]) * n for k, n in parts),
        )

    traces: dict[int, ExecutionTrace] = {}
    for t, c, d, p in coords:
        me = rank(t, c, d, p)
        nb = _Builder()
        mine = [v * pp + p for v in range(vpp)]  # this stage's chunks, in order
        act = hidden / tp  # activations a stage passes on, per rank

        def virtual(v: int, step: int, p: int = p) -> tuple[int, int] | None:
            """(stage, chunk index) ``step`` virtual stages from chunk ``v`` of stage p."""
            g = v * pp + p + step
            return (g % pp, g // pp) if 0 <= g < chunks else None

        # Megatron's interleaved order: groups of pp micro-batches run chunk by chunk
        # (Narayanan et al. 2021, sec. 2.2.2); with vpp = 1 this is GPipe's order
        order = [
            (m, v)
            for g in range(0, micro, pp)
            for v in range(vpp)
            for m in range(g, min(g + pp, micro))
        ]
        back = [
            (m, v)
            for g in range(0, micro, pp)
            for v in reversed(range(vpp))
            for m in range(g, min(g + pp, micro))
        ]
        for m, v in order:  # forward
            chunk = mine[v]
            prev, nxt = virtual(v, -1), virtual(v, +1)
            tag = m * chunks + chunk  # a message's tag is its sender's chunk
            if prev is not None:
                nb.p2p(f"recv_act_mb{m}_c{chunk}", NodeType.COMM_RECV_NODE,
                       rank(t, c, d, prev[0]), act, tag - 1)  # fmt: skip
            if chunk == 0:
                nb.comp(f"fwd_embedding_mb{m}", float(emb.forward_compute[0]))
            layer_block(nb, (t, c, d, p), bounds[chunk], True, f"fwd_mb{m}_c{chunk}")
            if chunk == chunks - 1:
                nb.comp(f"fwd_head_mb{m}", float(head.forward_compute[0]))
            if nxt is not None:
                nb.p2p(f"send_act_mb{m}_c{chunk}", NodeType.COMM_SEND_NODE,
                       rank(t, c, d, nxt[0]), act, tag)  # fmt: skip
        for m, v in back:  # backward, chunks in reverse
            chunk = mine[v]
            prev, nxt = virtual(v, -1), virtual(v, +1)
            tag = GRAD_TAG + m * chunks + chunk
            if nxt is not None:
                nb.p2p(f"recv_grad_mb{m}_c{chunk}", NodeType.COMM_RECV_NODE,
                       rank(t, c, d, nxt[0]), act, tag + 1)  # fmt: skip
            if chunk == chunks - 1:
                nb.comp(f"bwd_head_mb{m}", float(head.backward_compute[0]))
            layer_block(nb, (t, c, d, p), bounds[chunk][::-1], False, f"bwd_mb{m}_c{chunk}")
            if chunk == 0:
                nb.comp(f"bwd_embedding_mb{m}", float(emb.backward_compute[0]))
            if prev is not None:
                nb.p2p(f"send_grad_mb{m}_c{chunk}", NodeType.COMM_SEND_NODE,
                       rank(t, c, d, prev[0]), act, tag)  # fmt: skip
        # data-parallel gradient all-reduce: replicated weights over dp, expert weights over
        # the replicas that hold the same experts (dp / ep)
        layers = [i for chunk in mine for i in bounds[chunk]]
        n_moe = sum(model.is_moe_layer(i) for i in layers)
        dense_p = float(costs[False].params[0]) * (len(layers) - n_moe)
        moe_p = float(costs[True].params[0]) * n_moe
        expert_p = float(costs[True].expert_params[0]) * n_moe
        if p == 0:
            dense_p += float(emb.params[0])
        if p == pp - 1:
            dense_p += float(head.params[0])
        # ZeRO 0: gradient all-reduce; ZeRO 1/2: reduce-scatter (and replica all-reduce)
        # before the optimizer step, parameter all-gather after it (Rajbhandari et al.
        # 2020, sec. 5.1-5.2); ZeRO-3 reduced per layer above
        sync = step_sync(dense_p + moe_p, expert_p, zero, dpg, elem, grad)
        dp_colls(nb, (t, c, d, p), tuple(k for k in sync if k.phase == "backward"), "dp")
        # the optimizer step: the estimator's memory-bound Adam update (evaluate.py)
        nb.comp("optimizer_step", optimizer_s)
        dp_colls(nb, (t, c, d, p), tuple(k for k in sync if k.phase == "forward"), "dp")
        traces[me] = ExecutionTrace(GlobalMetadata(ET_VERSION), tuple(nb.nodes))
        if on_progress is not None:
            on_progress(len(traces), len(coords))
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
                    "cp": cp,
                    "ep": ep,
                    "pp": pp,
                    "vpp": vpp,
                    "dp": dp,
                    "job_dp": job_dp,
                    "micro_batches": micro,
                    "rank_layout": "rank = tp_index + tp * (cp_index + cp * (dp_index + dp * stage))",
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
    return ExportResult(out, tuple(files), ranks, tp, pp, dp, job_dp, nodes, cp, ep, vpp)
