"""Lowering: a scenario -> per-rank task graphs for the executor.

The lowering reads the *same* per-layer, per-micro-batch costs as the closed-form
estimator (:func:`deepflow.estimate.layer_cost.layer_cost`, :mod:`deepflow.estimate.edges`,
the network layer's collective and point-to-point times), so the two evaluators differ
only in how the pieces are composed: by formula there, by an event-driven schedule here.
It lives in ``sim`` rather than ``parallel`` because it needs those cost objects, and
``estimate`` sits above ``parallel`` in the layer order.

What one pipeline stage runs, per pass of its schedule table (:mod:`.schedules`):

* ``F`` of chunk ``c`` (virtual stage ``c p + s``), per layer in order: the forward
  kernels, then the exposed tensor-parallel collectives (Megatron-LM puts two per layer on
  the critical path; Shoeybi et al. 2019, sec. 3), the exposed context-parallel ring
  exchange (Liu et al. 2023), the expert all-to-alls (Lepikhin et al. 2020), the exposed
  ZeRO-3 parameter gathers (Zhao et al. 2023, sec. 3.3) and the host issue time that the
  device cannot hide. The first virtual stage begins with the embedding, the last ends
  with the LM head and loss. Then a blocking send of the activations to the next virtual
  stage (Megatron-LM's synchronous ``send_forward``).
* ``B``: the same in reverse layer order: recomputation (and its collectives) first, then
  the backward kernels; with a ``W`` pass in the table (ZB-H1) ``B`` is the input gradient
  only and ``W`` the weight-gradient GEMMs (Qi et al. 2023, sec. 2).
* During the last micro-batch's backward, each layer's gradients fill 25 MB buckets
  (PyTorch DDP, Li et al. 2020, sec. 3.2.3); a full bucket is all-reduced over the
  data-parallel group on the rank's ``dp`` communication stream, overlapping the rest of
  the backward. The optimizer step waits for the last bucket.

Ranks with identical programs are simulated once: one representative rank (data-, tensor-
and context-parallel index 0) per pipeline stage. Collectives among replicas therefore
take their closed-form time on the representative, which is exact when all replicas run
the same program (they do, in lock step).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from deepflow.estimate.context import Env
from deepflow.estimate.edges import EdgeCost, embedding_cost, head_cost
from deepflow.estimate.evaluate import (
    GRAD_BUCKET_BYTES,
    optimizer_traffic,
    param_gather_exposed,
    zero3_edges,
    zero3_exposed,
)
from deepflow.estimate.fp8 import gather_bytes
from deepflow.estimate.layer_cost import LayerCost, layer_costs
from deepflow.graph.ir import Task, TaskGraph, TaskKind
from deepflow.hardware.roofline import memory_time
from deepflow.network.collectives import Algorithm, p2p_time
from deepflow.network.programs import ProgramAlgorithm
from deepflow.parallel.batch import StrategyBatch
from deepflow.parallel.pipeline_split import pipeline_split
from deepflow.parallel.sharding import sharded_state, step_sync, sync_time
from deepflow.sim.schedules import Op, Table, table_for, validate_table
from deepflow.specs.model import ModelSpec
from deepflow.specs.scenario import Scenario
from deepflow.specs.strategy import PipelineSchedule

__all__ = ["COMPUTE", "DP", "PP", "Lowered", "lower"]

COMPUTE, PP, DP = "compute", "pp", "dp"
"""Streams of a rank: the compute stream (kernels and the collectives Megatron-LM runs on
the critical path), the pipeline send channel, the data-parallel gradient channel."""

AFTER_OPTIMIZER = "after_optimizer"
"""Phase of the tasks that follow the optimizer step (the ZeRO-1/2 parameter gather)."""
COMPUTE_KIND = TaskKind.COMPUTE
COLL = TaskKind.COLLECTIVE


@dataclass(frozen=True)
class Lowered:
    """A lowered scenario: the graph, its schedule table and the facts a report needs."""

    graph: TaskGraph
    table: Table
    stages: int
    chunks: int
    micro_batches: int
    stage_ranks: tuple[int, ...]  # representative global rank of each pipeline stage
    env: Env  # the cost context it was lowered with (group placements)


# a piece of a pass: (label, category, duration, kind)
Piece = tuple[str, str, float, TaskKind]


def _f(x: object) -> float:
    return float(np.asarray(x, dtype=np.float64).ravel()[0])


class _Costs:
    """Per-layer and per-edge pieces of each pass, as plain floats (one strategy)."""

    def __init__(
        self,
        scenario: Scenario,
        algorithms: Mapping[str, Algorithm | ProgramAlgorithm] | None = None,
    ) -> None:
        model, system, strategy = scenario.model, scenario.system, scenario.strategy
        batch = StrategyBatch.from_specs([strategy])
        env = Env.build(model, system, batch, scenario.training.global_batch_size, algorithms)
        self.env = env
        self.split = strategy.schedule is PipelineSchedule.ZERO_BUBBLE
        dense, moe = layer_costs(env)
        self.elem = _f(env.elem)
        # the parameter all-gather's bytes per parameter (FP8 with fp8_param_gather)
        self.gather_elem = _f(gather_bytes(env))
        # gradient bytes per parameter in the accumulation buffers that are all-reduced
        self.grad_elem = _f(env.grad_bytes)
        self.layers = {False: self._layer(dense), True: self._layer(moe)}
        self.forward = {False: _f(dense.forward), True: _f(moe.forward)}
        edge_f, edge_b = zero3_edges(env, (dense, moe) if model.moe else (dense,))
        self.z3_edge = {"F": _f(edge_f), "B": _f(edge_b)}
        self.grads = {
            False: (_f(dense.params) * self.grad_elem, _f(dense.expert_params) * self.grad_elem),
            True: (_f(moe.params) * self.grad_elem, _f(moe.expert_params) * self.grad_elem),
        }
        emb, head = embedding_cost(env), head_cost(env, (dense, moe))
        self.emb = self._edge(emb, "emb", split=False)
        self.head = self._edge(head, "head", split=self.split)
        self.emb_grad = _f(emb.params) * self.grad_elem
        self.head_grad = _f(head.params) * self.grad_elem
        hidden = env.tokens * model.hidden_size * env.elem
        self.p2p = (
            _f(p2p_time(hidden / batch.tp, env.pp_crosses_domain, env.hierarchy))
            if strategy.pp > 1
            else 0.0
        )
        self.p2p_bytes = _f(hidden / batch.tp)
        self.zero = strategy.zero
        self.overlap = strategy.overlap_grad_reduce
        self.m = int(_f(env.micro_batches))
        self.opt_traffic = _f(optimizer_traffic(env))
        self.accelerator = system.accelerator

    def _zero3(self, cost: LayerCost) -> tuple[float, float]:
        """Exposed ZeRO-3 gathers and reduce-scatters of one layer and micro-batch, forward
        and backward (the estimator's rule, :func:`deepflow.estimate.evaluate.zero3_exposed`)."""
        fwd, bwd = zero3_exposed(self.env, cost)
        return _f(fwd), _f(bwd)

    def _layer(self, c: LayerCost) -> dict[str, list[Piece]]:
        z3f, z3b = self._zero3(c)
        wgrad = _f(c.weight_grad) if self.split else 0.0
        fwd = [
            ("F", "compute", _f(c.forward_compute), COMPUTE_KIND),
            ("tp", "tp_comm", _f(c.tp_comm_forward), COLL),
            ("cp", "cp_comm", _f(c.cp_comm_forward), COLL),
            ("ep", "ep_comm", _f(c.ep_comm_forward), COLL),
            ("zero3", "dp_comm", z3f, COLL),
            ("host", "host_overhead", _f(c.host_excess_forward), COMPUTE_KIND),
        ]
        bwd = [
            ("R", "recompute", _f(c.recompute), COMPUTE_KIND),
            ("R tp", "tp_comm", _f(c.recompute_tp), COLL),
            ("R cp", "cp_comm", _f(c.recompute_cp), COLL),
            ("R ep", "ep_comm", _f(c.recompute_ep), COLL),
            ("B", "compute", _f(c.backward_compute) - wgrad, COMPUTE_KIND),
            ("tp", "tp_comm", _f(c.tp_comm_backward), COLL),
            ("cp", "cp_comm", _f(c.cp_comm_backward), COLL),
            ("ep", "ep_comm", _f(c.ep_comm_backward), COLL),
            ("zero3", "dp_comm", z3b, COLL),
            ("host", "host_overhead", _f(c.host_excess_backward), COMPUTE_KIND),
        ]
        w = [("W", "compute", wgrad, COMPUTE_KIND)] if self.split else []
        return {"F": _nonzero(fwd), "B": _nonzero(bwd), "W": _nonzero(w)}

    def _edge(self, c: EdgeCost, label: str, split: bool) -> dict[str, list[Piece]]:
        wgrad = _f(c.weight_grad) if split else 0.0
        fwd = [
            (f"{label} F", "compute", _f(c.forward_compute), COMPUTE_KIND),
            (f"{label} tp", "tp_comm", _f(c.tp_comm_forward), COLL),
            (f"{label} dp", "dp_comm", _f(c.dp_comm_forward), COLL),
            (f"{label} host", "host_overhead", _f(c.host_excess_forward), COMPUTE_KIND),
        ]
        bwd = [
            (f"{label} B", "compute", _f(c.backward_compute) - wgrad, COMPUTE_KIND),
            (f"{label} tp", "tp_comm", _f(c.tp_comm_backward), COLL),
            (f"{label} host", "host_overhead", _f(c.host_excess_backward), COMPUTE_KIND),
        ]
        w = [(f"{label} W", "compute", wgrad, COMPUTE_KIND)] if split else []
        return {"F": _nonzero(fwd), "B": _nonzero(bwd), "W": _nonzero(w)}


def _nonzero(pieces: list[Piece]) -> list[Piece]:
    return [p for p in pieces if p[2] > 0.0]


class _Rows:
    """Tasks under construction; dependencies on sends may point forward (a stage's
    backward waits for a later stage), so they are named by key and resolved at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.keyed: dict[tuple[str, int, int], int] = {}
        self.pending: list[tuple[int, tuple[str, int, int]]] = []

    def add(
        self,
        name: str,
        kind: TaskKind,
        rank: int,
        stream: str,
        duration: float,
        deps: list[int],
        category: str,
        phase: str,
        layer: int = -1,
        mb: int = -1,
        chunk: int = -1,
        size: float = 0.0,
    ) -> int:
        tid = len(self.rows)
        self.rows.append(
            [tid, name, kind, rank, stream, duration, deps, size, category, phase, layer, mb, chunk]
        )
        return tid

    def build(self, meta: dict[str, object]) -> TaskGraph:
        for tid, key in self.pending:
            self.rows[tid][6].append(self.keyed[key])
        tasks = tuple(
            Task(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                tuple(r[6]),
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                r[12],
            )
            for r in self.rows
        )
        return TaskGraph(tasks, meta)


def _stage_pass_times(
    costs: _Costs, layers: list[range], model: ModelSpec, p: int
) -> tuple[list[float], list[float], list[float]]:
    """Per-stage F, B and W times of one micro-batch (ZB-H1's table generator uses them)."""
    f, b, w = [0.0] * p, [0.0] * p, [0.0] * p
    for vs, rng in enumerate(layers):
        s = vs % p
        f[s] += costs.p2p if vs < len(layers) - 1 else 0.0
        b[s] += costs.p2p if vs > 0 else 0.0
        for layer in rng:
            pieces = costs.layers[model.is_moe_layer(layer)]
            f[s] += sum(x[2] for x in pieces["F"])
            b[s] += sum(x[2] for x in pieces["B"])
            w[s] += sum(x[2] for x in pieces["W"])
    last = len(layers) - 1
    for edge, vs in ((costs.emb, 0), (costs.head, last)):
        s = vs % p
        f[s] += sum(x[2] for x in edge["F"])
        b[s] += sum(x[2] for x in edge["B"])
        w[s] += sum(x[2] for x in edge["W"])
    return f, b, w


def lower(
    scenario: Scenario,
    table: Table | None = None,
    algorithms: Mapping[str, Algorithm | ProgramAlgorithm] | None = None,
) -> Lowered:
    """Lower ``scenario`` to one task graph holding one representative rank per pipeline
    stage; ``table`` overrides the schedule the strategy names, ``algorithms`` the
    collective algorithm of a mesh axis (as in :func:`deepflow.estimate.predict`)."""
    model, strategy = scenario.model, scenario.strategy
    costs = _Costs(scenario, algorithms)
    p, v, m = strategy.pp, strategy.vpp, costs.m
    schedule = strategy.schedule
    # the layers of each virtual stage: the estimator's split (one definition)
    layers = list(pipeline_split(model, p, v, strategy.stage_layers).chunks)
    if table is None:
        times = _stage_pass_times(costs, layers, model, p)
        table = table_for(schedule, p, m, v, times)
    validate_table(table, m, v)
    split = any(op.kind == "W" for op in table[0])
    if split != costs.split:
        # a table with W passes on a schedule without them (or the reverse): recost
        costs.split = split
        dense, moe = layer_costs(costs.env)
        costs.layers = {False: costs._layer(dense), True: costs._layer(moe)}
        costs.head = costs._edge(head_cost(costs.env, (dense, moe)), "head", split=split)
    stride_pp = int(costs.env.batch.stride_pp[0])
    ranks = tuple(s * stride_pp for s in range(p))
    n_virtual = p * v
    env = costs.env
    dp_algo = env.algorithms.get("dp", Algorithm.RING)
    rows = _Rows()
    bucket_cap = GRAD_BUCKET_BYTES

    for s in range(p):
        rank = ranks[s]
        blocking: list[int] = []  # sends the next compute task must wait for
        # data-parallel gradient state of this stage
        stage_dense = stage_expert = 0.0
        for vs in range(s, n_virtual, p):
            for layer in layers[vs]:
                d, e = costs.grads[model.is_moe_layer(layer)]
                stage_dense += d
                stage_expert += e
        if vs_has_edge(0, s, p):
            stage_dense += costs.emb_grad
        if vs_has_edge(n_virtual - 1, s, p):
            stage_dense += costs.head_grad
        # volumes and groups: deepflow.parallel.sharding (elements = bytes / grad_elem)
        ge = costs.grad_elem
        sync_dense = _f(
            sync_time(
                step_sync(stage_dense / ge, 0.0, costs.zero, env.dp_groups,
                          costs.gather_elem, ge),
                env.dp_groups, env.hierarchy, dp_algo, phase="backward",
            )
        )  # fmt: skip
        sync_expert = _f(
            sync_time(
                step_sync(0.0, stage_expert / ge, costs.zero, env.dp_groups,
                          costs.gather_elem, ge),
                env.dp_groups, env.hierarchy, dp_algo, phase="backward",
            )
        )  # fmt: skip
        param_gather = sync_time(
            step_sync(stage_dense / ge, stage_expert / ge, costs.zero, env.dp_groups,
                      costs.gather_elem, ge),
            env.dp_groups, env.hierarchy, dp_algo, phase="forward",
        )  # fmt: skip
        rate_d = sync_dense / stage_dense if stage_dense > 0 else 0.0
        rate_e = sync_expert / stage_expert if stage_expert > 0 else 0.0
        sync = costs.zero < 3 and (sync_dense + sync_expert) > 0
        bucket = [0.0, 0.0]
        buckets: list[int] = []
        last_grad_task = -1
        n_buckets = [0]

        def flush(
            dep: int,
            rank: int = rank,
            bucket: list[float] = bucket,
            buckets: list[int] = buckets,
            n_buckets: list[int] = n_buckets,
            rate_d: float = rate_d,
            rate_e: float = rate_e,
        ) -> None:
            if bucket[0] + bucket[1] <= 0:
                return
            dur = bucket[0] * rate_d + bucket[1] * rate_e
            tid = rows.add(
                f"dp all-reduce bucket {n_buckets[0]}",
                COLL,
                rank,
                DP,
                dur,
                [dep],
                "dp_comm",
                "dp",
                size=bucket[0] + bucket[1],
            )
            n_buckets[0] += 1
            buckets.append(tid)
            bucket[0] = bucket[1] = 0.0

        def emit(
            piece: Piece,
            op: Op,
            layer: int,
            grads: tuple[float, float] | None,
            rank: int = rank,
            blocking: list[int] = blocking,
            sync: bool = sync,
            bucket: list[float] = bucket,
            flush=flush,
        ) -> int:
            nonlocal last_grad_task
            label, category, dur, kind = piece
            lname = f"L{layer} " if layer >= 0 else ""
            what = op.kind if label == op.kind else f"{op.kind} {label}"
            name = f"{lname}{what} mb{op.micro_batch}" + (f" c{op.chunk}" if v > 1 else "")
            pieces_n = 1
            if grads is not None and sync and costs.overlap:
                pieces_n = max(1, math.ceil((grads[0] + grads[1]) / bucket_cap))
            tid = -1
            for k in range(pieces_n):
                deps = list(blocking)
                blocking.clear()
                suffix = f" [{k + 1}/{pieces_n}]" if pieces_n > 1 else ""
                tid = rows.add(
                    name + suffix,
                    kind,
                    rank,
                    COMPUTE,
                    dur / pieces_n,
                    deps,
                    category,
                    op.kind,
                    layer,
                    op.micro_batch,
                    op.chunk,
                )
                if grads is not None and sync:
                    last_grad_task = tid
                    if costs.overlap:
                        bucket[0] += grads[0] / pieces_n
                        bucket[1] += grads[1] / pieces_n
                        if bucket[0] + bucket[1] >= bucket_cap:
                            flush(tid)
                    else:
                        bucket[0] += grads[0]
                        bucket[1] += grads[1]
            return tid

        for op in table[s]:
            vs = op.chunk * p + s
            last_mb = op.micro_batch == m - 1
            grad_kind = "W" if split else "B"
            first_of_pass = len(rows.rows)
            if op.kind == "F":
                if vs == 0:
                    for piece in costs.emb["F"]:
                        emit(piece, op, -1, None)
                if layers[vs] and costs.z3_edge["F"] > 0:
                    emit(("zero3 first gather", "dp_comm", costs.z3_edge["F"], COLL), op, -1, None)
                for layer in layers[vs]:
                    for piece in costs.layers[model.is_moe_layer(layer)]["F"]:
                        emit(piece, op, layer, None)
                if vs == n_virtual - 1:
                    for piece in costs.head["F"]:
                        emit(piece, op, -1, None)
                if vs < n_virtual - 1:
                    send = rows.add(
                        f"send F mb{op.micro_batch}" + (f" c{op.chunk}" if v > 1 else ""),
                        TaskKind.SEND,
                        rank,
                        PP,
                        costs.p2p,
                        [*_take(blocking), *_last_of_pass(rows, first_of_pass)],
                        "pp_comm",
                        "F",
                        -1,
                        op.micro_batch,
                        op.chunk,
                        costs.p2p_bytes,
                    )
                    rows.keyed[("F", vs, op.micro_batch)] = send
                    blocking.append(send)
                # the pass waits for the neighbour's send (its first task does; a chunk
                # without layers has only its own send)
                if vs > 0:
                    _depend_on(rows, first_of_pass, ("F", vs - 1, op.micro_batch), blocking, rank)
            elif op.kind == "B":
                gather = last_mb and grad_kind == "B"
                if vs == n_virtual - 1:
                    for piece in costs.head["B"]:
                        g = (costs.head_grad, 0.0) if gather and piece[0] == "head B" else None
                        emit(piece, op, -1, g)
                for layer in reversed(layers[vs]):
                    moe = model.is_moe_layer(layer)
                    for piece in costs.layers[moe]["B"]:
                        g = costs.grads[moe] if gather and piece[0] == "B" else None
                        emit(piece, op, layer, g)
                if layers[vs] and costs.z3_edge["B"] > 0:
                    emit(("zero3 edge", "dp_comm", costs.z3_edge["B"], COLL), op, -1, None)
                if vs == 0:
                    for piece in costs.emb["B"]:
                        g = (costs.emb_grad, 0.0) if last_mb and piece[0] == "emb B" else None
                        emit(piece, op, -1, g)
                if vs > 0:
                    send = rows.add(
                        f"send B mb{op.micro_batch}" + (f" c{op.chunk}" if v > 1 else ""),
                        TaskKind.SEND,
                        rank,
                        PP,
                        costs.p2p,
                        [*_take(blocking), *_last_of_pass(rows, first_of_pass)],
                        "pp_comm",
                        "B",
                        -1,
                        op.micro_batch,
                        op.chunk,
                        costs.p2p_bytes,
                    )
                    rows.keyed[("B", vs, op.micro_batch)] = send
                    blocking.append(send)
                # the pass waits for the neighbour's send (its first task does; a chunk
                # without layers has only its own send)
                if vs < n_virtual - 1:
                    _depend_on(rows, first_of_pass, ("B", vs + 1, op.micro_batch), blocking, rank)
            else:  # W
                if vs == n_virtual - 1:
                    for piece in costs.head["W"]:
                        emit(piece, op, -1, (costs.head_grad, 0.0) if last_mb else None)
                for layer in reversed(layers[vs]):
                    moe = model.is_moe_layer(layer)
                    for piece in costs.layers[moe]["W"]:
                        emit(piece, op, layer, costs.grads[moe] if last_mb else None)
        if sync and last_grad_task >= 0:
            flush(last_grad_task)
        opt_params = sharded_state(
            stage_dense / ge, stage_expert / ge, costs.zero, 1, env.dp_groups
        )
        opt = _f(memory_time(opt_params * costs.opt_traffic, costs.accelerator, 4))
        opt_task = rows.add(
            "optimizer step",
            COMPUTE_KIND,
            rank,
            COMPUTE,
            opt,
            _take(blocking) + buckets[-1:],
            "optimizer",
            "opt",
        )
        # ZeRO 1/2: the updated parameters are gathered; with overlap_param_gather under
        # the next step's first forward pass (the estimator's rule)
        param_bytes = (stage_dense + stage_expert) / ge * costs.gather_elem
        gather_bucket = param_gather * min(1.0, bucket_cap / max(param_bytes, 1.0))
        stage_fwd = sum(
            costs.forward[model.is_moe_layer(layer)]
            for vs in range(s, n_virtual, p)
            for layer in layers[vs]
        )
        exposed = _f(
            param_gather_exposed(
                env.batch.overlap_param_gather, param_gather, np.asarray(stage_fwd), gather_bucket
            )
        )
        if exposed > 0:
            rows.add(
                "dp param all-gather",
                COLL,
                rank,
                COMPUTE,
                exposed,
                [opt_task],
                "dp_comm",
                AFTER_OPTIMIZER,
            )

    graph = rows.build(
        {
            "stages": p,
            "chunks": v,
            "micro_batches": m,
            "schedule": schedule.value,
            "stage_ranks": list(ranks),
        }
    )
    return Lowered(graph, table, p, v, m, ranks, env)


def vs_has_edge(vs: int, s: int, p: int) -> bool:
    """Whether virtual stage ``vs`` runs on stage ``s``."""
    return vs % p == s


def _last_of_pass(rows: _Rows, first: int) -> list[int]:
    """The last task of the pass that began at task ``first``, if it has any."""
    return [len(rows.rows) - 1] if len(rows.rows) > first else []


def _take(blocking: list[int]) -> list[int]:
    out = list(blocking)
    blocking.clear()
    return out


def _depend_on(
    rows: _Rows, first: int, key: tuple[str, int, int], blocking: list[int], rank: int
) -> None:
    """Make the first task of a pass wait for the send of ``key`` from the neighbour."""
    if first < len(rows.rows):
        rows.pending.append((first, key))
