"""Heterogeneous clusters: assign virtual nodes (or samples) to mixed accelerators.

VirtualFlow (Or, Zhang, Freedman, MLSys 2022, arXiv 2009.09523) splits the global batch
``B`` of a step into ``V`` *virtual nodes* (VNs) of ``s = B / V`` sequences. A device
processes its VNs one after another and accumulates their gradients; one all-reduce per
step combines them. Because the unit of work is the VN, not the device, a step can be spread
over accelerators of different speeds: a fast device takes more VNs than a slow one.

The cluster is a list of :class:`Pool` objects, each a homogeneous
:class:`~deepflow.specs.SystemSpec` (accelerator, count, node shape, links). The planner's
"device" is one data-parallel replica of the cluster strategy (``tp * pp * cp``
accelerators of one pool; one accelerator when the strategy is pure data parallelism).

**Per-VN cost of a pool** (:func:`profile_pool`). The closed-form estimator evaluates the
model on one replica of the pool (``dp = 1``) with ``virtual_nodes = V``, so the replica
runs ``m = V`` micro-batches of ``s`` sequences. From the breakdown of that step:

* ``tau_k = (step - optimizer - dp_comm - pipeline_bubble) / m``: the time of one VN,
  forward + backward + recomputation of all layers with the exposed tensor/pipeline
  communication (``dp_comm`` is zero at ``dp = 1``);
* ``c_k = optimizer + pipeline_bubble``: paid once per step by a participating replica;
* the peak memory of that step, which must fit the pool's capacity (the activations of one
  VN at a time, VirtualFlow sec. 3; the reference's sec. 5.2 memory model), else the pool
  cannot take a VN.

**Step time of an assignment** (reference sec. 5.2, "Iteration time")::

    T_iter = max_d  t_k(d)(u_d)  +  T_AR(|W|, {d : u_d > 0})

with ``t_k(u) = c_k + u * tau_k`` for ``u > 0`` VNs (``t_k(0) = 0``: an idle replica does
not take part). The gradient all-reduce is not overlapped with the last VN's backward pass
(an upper bound; the homogeneous estimator overlaps it). Its cost is
:func:`allreduce_time`: hierarchical (reduce-scatter and all-gather inside each scale-up
domain, all-reduce of the shard across domains) with the cross-domain step on the slowest
participating scale-out link, and on ``inter_pool`` when several pools take part.

**Form A, equal VNs** (exact; reference sec. 5.4, "Form A"). For a makespan ``T`` a type-k
replica can take ``u_k(T) = max{u : t_k(u) <= T}`` units; ``T`` is feasible iff
``sum_k n_k u_k(T) >= V``. The optimum lies in the candidate set ``{t_k(j)}``, so a bisection
over the sorted candidates finds it; surplus units are then removed, which never raises the
makespan. Because ``T_AR`` depends on which replicas participate, the bisection runs for
every vector of participating counts ``n_k <= N_k`` (vectorized), and the best
``T* + T_AR(n)`` wins. Plain averaging of the replicas' VN sums (divide by ``V``) is exact,
since every VN holds the same batch.

**Form B, uneven per-device batches** (VirtualFlow's ``HETEROGENEOUS_SPLIT``; reference
sec. 5.4, "Form B"). The unit becomes one sample; a replica with ``b`` samples processes
them as ``b // s`` micro-batches of ``s`` and one of ``b mod s``:
``t_k(b) = c_k + (b // s) tau_k(s) + tau_k(b mod s)``, with ``tau_k(r)`` from the estimator
at micro-batch ``r``. The same exact bisection applies. Gradients must then be
batch-weighted, ``g = sum_d (b_d / B) g_d`` with ``g_d`` the replica's mean gradient, which
equals the full-batch mean; the plain mean over replicas would over-weight small batches.
Batch-dependent layers (BatchNorm) then see other batches than in a homogeneous run, so
Form B does not reproduce a homogeneous run bit for bit; Form A does.

The **even split** gives every replica of every pool ``V / D`` VNs (the remainder to the
first replicas, in pool order), what a homogeneous VirtualFlow job does when it is handed a
mixed cluster. The planner's optimum is never slower (the even split is one of the
assignments it minimizes over).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from deepflow.errors import ConfigError
from deepflow.estimate import evaluate, prediction_at
from deepflow.network.collectives import Collective, level_time
from deepflow.network.hierarchy import Hierarchy, Level, place_group
from deepflow.network.ops import Algorithm
from deepflow.parallel.batch import StrategyBatch
from deepflow.specs import LinkSpec, ModelSpec, StrategySpec, SystemSpec, model_from, system_from
from deepflow.specs.base import MAX_ACCELERATORS, MAX_BATCH
from deepflow.specs.files import brief, load_config_file
from deepflow.specs.scenario import config_error_from

__all__ = [
    "Cluster",
    "HeteroComparison",
    "Plan",
    "Pool",
    "PoolProfile",
    "allreduce_time",
    "brute_force",
    "cluster_from_dict",
    "compare",
    "even_split",
    "even_units",
    "form_a_tables",
    "form_b_tables",
    "load_cluster",
    "plan",
    "profile_pool",
    "solve",
]

# cluster strategy keys the planner sets itself
_PLANNER_KEYS = ("dp", "virtual_nodes", "micro_batch_size")


@dataclass(frozen=True)
class Pool:
    """A homogeneous group of accelerators: ``system.num_accelerators`` of
    ``system.accelerator``, in nodes of ``system.accelerators_per_node``, with the system's
    scale-up and scale-out links."""

    name: str
    system: SystemSpec

    @property
    def count(self) -> int:
        return self.system.num_accelerators


@dataclass(frozen=True)
class Cluster:
    """A training job on a heterogeneous cluster.

    ``strategy`` is the per-replica layout (``tp``, ``pp``, ``cp``, precision,
    recomputation ...); ``dp``, ``virtual_nodes`` and the micro-batch are the planner's.
    ``inter_pool`` is the link between pools (per accelerator per direction); without it
    the slowest scale-out link of the participating pools is used.
    """

    name: str
    model: ModelSpec
    pools: tuple[Pool, ...]
    global_batch_size: int
    virtual_nodes: int
    strategy: StrategySpec
    inter_pool: LinkSpec | None = None

    @property
    def replica_size(self) -> int:
        """Accelerators per data-parallel replica: ``tp * pp * cp``."""
        return self.strategy.model_parallel_size

    @property
    def vn_batch(self) -> int:
        """Sequences per virtual node, ``s = B / V``."""
        return self.global_batch_size // self.virtual_nodes


@dataclass(frozen=True)
class PoolProfile:
    """What the planner needs to know about one pool (see the module docstring).

    ``micro_batch_times_s[r - 1]`` is ``tau_k(r)``, the time of one micro-batch of ``r``
    sequences, for ``r = 1 .. s``; ``vn_time_s`` is ``tau_k(s)``.
    """

    pool: Pool
    replicas: int
    vn_time_s: float
    overhead_s: float
    peak_memory_bytes: float
    gradient_bytes: float
    weight_bytes: float
    micro_batch_times_s: tuple[float, ...]
    feasible: bool
    reason: str | None


@dataclass(frozen=True)
class Plan:
    """An assignment of work units to replicas and its step time.

    ``units[k][i]`` is what replica ``i`` of pool ``k`` processes per step: virtual nodes
    (``form`` ``"A"`` and ``"even"``) or samples (``form`` ``"B"``).
    """

    form: str
    units: tuple[tuple[int, ...], ...]
    compute_s: float
    allreduce_s: float
    global_batch_size: int
    vn_batch: int
    reason: str | None = None

    @property
    def step_time_s(self) -> float:
        return self.compute_s + self.allreduce_s

    @property
    def feasible(self) -> bool:
        return bool(np.isfinite(self.step_time_s))

    @property
    def samples_per_s(self) -> float:
        return self.global_batch_size / self.step_time_s if self.feasible else 0.0

    @property
    def participants(self) -> tuple[int, ...]:
        """Replicas with work, per pool."""
        return tuple(sum(1 for u in pool if u > 0) for pool in self.units)

    def samples(self) -> tuple[tuple[int, ...], ...]:
        """Samples per replica (VNs times the VN batch for forms A and even)."""
        scale = 1 if self.form == "B" else self.vn_batch
        return tuple(tuple(u * scale for u in pool) for pool in self.units)

    def gradient_weights(self) -> tuple[tuple[float, ...], ...]:
        """Weight of each replica's mean gradient in the update, ``b_d / B`` (batch-weighted
        averaging, VirtualFlow Form B). For equal VNs this is ``v_d / V``, the same as
        summing the VN gradients and dividing by ``V``."""
        return tuple(tuple(b / self.global_batch_size for b in pool) for pool in self.samples())

    def to_json(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "feasible": self.feasible,
            "reason": self.reason,
            "step_time_s": self.step_time_s if self.feasible else None,
            "compute_s": self.compute_s if self.feasible else None,
            "allreduce_s": self.allreduce_s if self.feasible else None,
            "samples_per_s": self.samples_per_s,
            "units": [list(p) for p in self.units],
            "participants": list(self.participants),
        }


# --------------------------------------------------------------------------- profiles


def _per_micro_batch(result: Any) -> tuple[float, float]:
    """``(tau, c)`` of element 0 of a batch result: time per micro-batch and the once-per-step
    part (optimizer + pipeline fill and drain). Taken from the breakdown, which is defined
    even where the element is infeasible."""
    bd = {k: float(v[0]) for k, v in result.breakdown.items()}
    once = bd["optimizer"] + bd["pipeline_bubble"]
    per_step = sum(bd.values()) - once - bd["dp_comm"]
    return per_step / float(result.micro_batches[0]), once


def profile_pool(pool: Pool, cluster: Cluster) -> PoolProfile:
    """Per-VN time, once-per-step overhead and peak memory of one replica of ``pool``.

    Evaluates the closed-form estimator on a homogeneous system of the pool's type with
    ``dp = 1`` and ``virtual_nodes = V`` (``V`` micro-batches of ``s`` sequences), and at
    micro-batches ``r = 1 .. s - 1`` for Form B. ``tau = (step - optimizer - dp_comm -
    pipeline_bubble) / micro_batches`` (the module docstring says why).
    """
    r_size = cluster.replica_size
    replicas = pool.count // r_size
    system = pool.system.replace(num_accelerators=r_size)
    assert isinstance(system, SystemSpec)
    s, v, b = cluster.vn_batch, cluster.virtual_nodes, cluster.global_batch_size
    spec = cluster.strategy.replace(dp=1, micro_batch_size=s, virtual_nodes=v)
    assert isinstance(spec, StrategySpec)
    result = evaluate(cluster.model, system, b, StrategyBatch.from_specs([spec]))
    tau, once = _per_micro_batch(result)
    times = []
    for r in range(1, s):
        small = cluster.strategy.replace(dp=1, micro_batch_size=r, virtual_nodes=None)
        assert isinstance(small, StrategySpec)
        res_r = evaluate(cluster.model, system, r, StrategyBatch.from_specs([small]))
        times.append(_per_micro_batch(res_r)[0])
    times.append(tau)
    pred = prediction_at(result, 0, pool.name)
    return PoolProfile(
        pool=pool,
        replicas=replicas,
        vn_time_s=tau,
        overhead_s=once,
        peak_memory_bytes=pred.peak_memory_bytes,
        gradient_bytes=pred.memory_bytes["gradients"],
        weight_bytes=pred.memory_bytes["weights"],
        micro_batch_times_s=tuple(times),
        feasible=pred.feasible,
        reason=pred.reason,
    )


# --------------------------------------------------------------------------- all-reduce


def allreduce_time(
    profiles: Sequence[PoolProfile],
    counts: np.ndarray,
    replica_size: int = 1,
    inter_pool: LinkSpec | None = None,
) -> np.ndarray:
    """Gradient all-reduce across the participating replicas, for rows of ``counts``
    (shape ``(P, K)``: participating replicas per pool), in seconds.

    Hierarchical, as the homogeneous estimator's (Rashidi et al., ASTRA-SIM, ISPASS 2020,
    sec. IV-B; ring closed forms after Thakur et al., IJHPCA 2005): each pool's ``m_k``
    members per scale-up domain reduce-scatter and all-gather on their own fabric (the
    slowest pool sets that time), and the ``1 / m`` shard (``m`` = the smallest
    ``m_k``) is all-reduced across all ``D = sum_k domains_k`` domains on the slowest
    participating scale-out link, or ``inter_pool`` if slower when several pools take part.
    With one pool this is exactly :func:`~deepflow.network.collective_time`.
    """
    counts = np.atleast_2d(np.asarray(counts, dtype=np.int64))
    size = max((p.gradient_bytes for p in profiles), default=0.0)
    hierarchies = [Hierarchy.from_system(p.pool.system) for p in profiles]
    rows = counts.shape[0]
    inner = np.zeros(rows)
    members = np.full(rows, np.inf)
    domains = np.zeros(rows)
    for k, h in enumerate(hierarchies):
        n = counts[:, k]
        place = place_group(np.maximum(n, 1), replica_size, h.scale_up_size)
        on = n > 0
        t = level_time(
            Collective.REDUCE_SCATTER, Algorithm.RING, size, place.members_per_domain, h.scale_up
        ) + level_time(
            Collective.ALL_GATHER, Algorithm.RING, size, place.members_per_domain, h.scale_up
        )
        inner = np.maximum(inner, np.where(on, t, 0.0))
        members = np.where(on, np.minimum(members, place.members_per_domain), members)
        domains = domains + np.where(on, place.domains, 0.0)
    members = np.where(np.isfinite(members), members, 1.0)
    outer = np.zeros(rows)
    active = counts > 0
    for mask in {tuple(r) for r in active.tolist()}:
        ks = [k for k, on in enumerate(mask) if on]
        if not ks:
            continue
        levels = [hierarchies[k].scale_out for k in ks]
        if len(ks) > 1 and inter_pool is not None:
            levels.append(
                Level("inter-pool", inter_pool.bandwidth, inter_pool.latency, inter_pool.efficiency)
            )
        slow = Level(
            "slowest",
            min(lv.effective_bandwidth for lv in levels),
            max(lv.latency for lv in levels),
        )
        sel = np.all(active == np.array(mask), axis=1)
        outer[sel] = level_time(
            Collective.ALL_REDUCE, Algorithm.RING, size / members[sel], domains[sel], slow
        )
    return inner + outer


# --------------------------------------------------------------------------- solver


def form_a_tables(profiles: Sequence[PoolProfile], virtual_nodes: int) -> list[np.ndarray]:
    """``t_k(u) = c_k + u tau_k`` for ``u = 0 .. V`` VNs (``t_k(0) = 0``; ``inf`` where
    the pool cannot run a VN)."""
    u = np.arange(virtual_nodes + 1, dtype=np.float64)
    out = []
    for p in profiles:
        if not p.feasible or p.replicas == 0:
            t = np.full(virtual_nodes + 1, np.inf)
        else:
            t = p.overhead_s + u * p.vn_time_s
        t[0] = 0.0
        out.append(t)
    return out


def form_b_tables(profiles: Sequence[PoolProfile], global_batch_size: int) -> list[np.ndarray]:
    """``t_k(b) = c_k + (b // s) tau_k(s) + tau_k(b mod s)`` for ``b = 0 .. B`` samples."""
    b = np.arange(global_batch_size + 1)
    out = []
    for p in profiles:
        s = len(p.micro_batch_times_s)
        if not p.feasible or p.replicas == 0:
            t = np.full(global_batch_size + 1, np.inf)
        else:
            rem = np.concatenate([[0.0], np.asarray(p.micro_batch_times_s)])
            t = p.overhead_s + (b // s) * p.vn_time_s + rem[b % s]
            # a larger batch never takes less time: monotone envelope (exactness of the
            # bisection needs nondecreasing tables)
            t = np.maximum.accumulate(t)
        t[0] = 0.0
        out.append(t)
    return out


SyncFn = Callable[[np.ndarray], np.ndarray]


def _capacity(tables: Sequence[np.ndarray], t: np.ndarray) -> np.ndarray:
    """Units one device of each type can take within makespan ``t``: shape ``(K, len(t))``."""
    return np.stack([np.searchsorted(tab, t, side="right") - 1 for tab in tables])


def _assign(
    tables: Sequence[np.ndarray], n: Sequence[int], makespan: float, total: int
) -> tuple[tuple[int, ...], ...]:
    """Give ``n_k`` devices of type k as many units as fit in ``makespan``, then remove the
    surplus from the currently slowest devices (never raises the makespan)."""
    cap = _capacity(tables, np.array([makespan]))[:, 0]
    units = [[int(cap[k])] * int(n[k]) for k in range(len(tables))]
    surplus = sum(map(sum, units)) - total
    assert surplus >= 0
    heap = [(-float(tables[k][u]), k, i) for k, row in enumerate(units) for i, u in enumerate(row)]
    heapq.heapify(heap)
    while surplus > 0:
        _, k, i = heapq.heappop(heap)
        units[k][i] -= 1
        surplus -= 1
        if units[k][i] > 0:
            heapq.heappush(heap, (-float(tables[k][units[k][i]]), k, i))
    return tuple(tuple(row) for row in units)


def _evaluate(
    tables: Sequence[np.ndarray], units: Sequence[Sequence[int]], sync: SyncFn
) -> tuple[float, float]:
    """``(max_d t_k(u_d), T_AR(participants))`` of an assignment."""
    compute = max((float(tables[k][u]) for k, row in enumerate(units) for u in row), default=0.0)
    counts = np.array([[sum(1 for u in row if u > 0) for row in units]])
    return compute, float(sync(counts)[0])


def solve(
    tables: Sequence[np.ndarray], devices: Sequence[int], total: int, sync: SyncFn
) -> tuple[tuple[tuple[int, ...], ...], float, float]:
    """Exact minimum of ``max_d t_k(d)(u_d) + sync(participants)`` subject to
    ``sum_d u_d = total``: returns ``(units, compute_s, sync_s)``.

    ``tables[k][u]`` is the (nondecreasing) time of a type-k device given ``u`` units, with
    ``tables[k][0] = 0``; ``devices[k]`` is how many type-k devices there are; ``sync`` maps
    rows of participating counts ``(P, K)`` to times. For every vector of participating
    counts, a bisection over the sorted candidate makespans ``{tables[k][j]}`` finds the
    smallest ``T`` with ``sum_k n_k u_k(T) >= total`` (VirtualFlow Form A, reference
    sec. 5.4); all count vectors are bisected at once with NumPy.
    """
    finite = np.concatenate([t[1:][np.isfinite(t[1:])] for t in tables] or [np.zeros(0)])
    candidates = np.unique(finite)
    empty = tuple(tuple(0 for _ in range(n)) for n in devices)
    if candidates.size == 0 or total <= 0:
        return empty, (0.0 if total <= 0 else np.inf), 0.0
    cap = np.minimum(_capacity(tables, candidates), total)  # (K, J)
    grids = np.meshgrid(*[np.arange(n + 1) for n in devices], indexing="ij")
    n = np.stack([g.ravel() for g in grids], axis=1)  # (P, K)
    n = n[n.sum(axis=1) > 0]
    j_max = candidates.size - 1
    enough = (n * cap[:, j_max]).sum(axis=1) >= total
    lo = np.zeros(n.shape[0], dtype=np.int64)
    hi = np.full(n.shape[0], j_max)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        ok = (n * cap[:, mid].T).sum(axis=1) >= total
        hi = np.where(ok & (lo < hi), mid, hi)
        lo = np.where(~ok & (lo < hi), mid + 1, lo)
    makespan = np.where(enough, candidates[lo], np.inf)
    cost = makespan + np.where(enough, sync(n), 0.0)
    if not np.any(np.isfinite(cost)):
        return empty, np.inf, 0.0
    best = int(np.argmin(cost))
    per_type = _assign(tables, n[best].tolist(), float(makespan[best]), total)
    units = tuple(row + (0,) * (devices[k] - len(row)) for k, row in enumerate(per_type))
    compute, sync_s = _evaluate(tables, units, sync)
    assert compute + sync_s <= cost[best] * (1 + 1e-12) + 1e-15
    return units, compute, sync_s


def brute_force(
    tables: Sequence[np.ndarray], devices: Sequence[int], total: int, sync: SyncFn
) -> float:
    """Best step time over every assignment of ``total`` units to the devices (tests only:
    exponential)."""
    flat = [k for k, n in enumerate(devices) for _ in range(n)]
    best = np.inf

    def rec(d: int, left: int, units: list[int]) -> None:
        nonlocal best
        if d == len(flat) - 1:
            full = [*units, left]
            per = [
                [u for u, kk in zip(full, flat, strict=True) if kk == k]
                for k in range(len(devices))
            ]
            c, s = _evaluate(tables, per, sync)
            best = min(best, c + s)
            return
        for u in range(left + 1):
            rec(d + 1, left - u, [*units, u])

    if flat:
        rec(0, total, [])
    return float(best)


def even_units(devices: Sequence[int], total: int) -> tuple[tuple[int, ...], ...]:
    """``total // D`` units each, the remainder one each to the first devices."""
    d = sum(devices)
    base, extra = divmod(total, d)
    out, i = [], 0
    for n in devices:
        out.append(tuple(base + (1 if i + j < extra else 0) for j in range(n)))
        i += n
    return tuple(out)


# --------------------------------------------------------------------------- cluster plans


def _sync_fn(cluster: Cluster, profiles: Sequence[PoolProfile]) -> SyncFn:
    def sync(counts: np.ndarray) -> np.ndarray:
        return allreduce_time(profiles, counts, cluster.replica_size, cluster.inter_pool)

    return sync


def _plan(
    form: str,
    cluster: Cluster,
    profiles: Sequence[PoolProfile],
    units: tuple[tuple[int, ...], ...],
    compute: float,
    sync_s: float,
) -> Plan:
    reason = None
    if not np.isfinite(compute):
        bad = [f"{p.pool.name}: {p.reason}" for p in profiles if not p.feasible]
        reason = "; ".join(bad) or "no pool can take a virtual node"
    return Plan(form, units, compute, sync_s, cluster.global_batch_size, cluster.vn_batch, reason)


def plan(cluster: Cluster, profiles: Sequence[PoolProfile] | None = None, form: str = "A") -> Plan:
    """The optimal plan of ``cluster``: Form ``"A"`` (equal VNs) or ``"B"`` (per-device
    batches)."""
    profiles = profiles or [profile_pool(p, cluster) for p in cluster.pools]
    if form == "A":
        tables, total = form_a_tables(profiles, cluster.virtual_nodes), cluster.virtual_nodes
    elif form == "B":
        tables, total = (
            form_b_tables(profiles, cluster.global_batch_size),
            cluster.global_batch_size,
        )
    else:
        raise ValueError(f"form must be 'A' or 'B', got {form!r}")
    devices = [p.replicas for p in profiles]
    units, compute, sync_s = solve(tables, devices, total, _sync_fn(cluster, profiles))
    return _plan(form, cluster, profiles, units, compute, sync_s)


def even_split(cluster: Cluster, profiles: Sequence[PoolProfile] | None = None) -> Plan:
    """Every replica of every pool gets ``V / D`` VNs (remainder to the first ones)."""
    profiles = profiles or [profile_pool(p, cluster) for p in cluster.pools]
    tables = form_a_tables(profiles, cluster.virtual_nodes)
    units = even_units([p.replicas for p in profiles], cluster.virtual_nodes)
    compute, sync_s = _evaluate(tables, units, _sync_fn(cluster, profiles))
    return _plan("even", cluster, profiles, units, compute, sync_s)


@dataclass(frozen=True)
class HeteroComparison:
    """The profiles, the even split and the Form A and Form B optima of a cluster."""

    cluster: Cluster
    profiles: tuple[PoolProfile, ...]
    even: Plan
    form_a: Plan
    form_b: Plan

    @property
    def gain(self) -> float:
        """Throughput of the Form A plan over the even split, minus one (``inf`` when the
        even split is infeasible and the plan is not)."""
        return _gain(self.form_a, self.even)

    @property
    def gain_b(self) -> float:
        return _gain(self.form_b, self.even)

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster.name,
            "global_batch_size": self.cluster.global_batch_size,
            "virtual_nodes": self.cluster.virtual_nodes,
            "vn_batch": self.cluster.vn_batch,
            "pools": [
                {
                    "name": p.pool.name,
                    "accelerator": p.pool.system.accelerator.name,
                    "accelerators": p.pool.count,
                    "replicas": p.replicas,
                    "vn_time_s": p.vn_time_s,
                    "overhead_s": p.overhead_s,
                    "peak_memory_bytes": p.peak_memory_bytes,
                    "memory_capacity_bytes": p.pool.system.accelerator.memory_capacity,
                    "feasible": p.feasible,
                    "reason": p.reason,
                }
                for p in self.profiles
            ],
            "even": self.even.to_json(),
            "plan": self.form_a.to_json(),
            "plan_form_b": self.form_b.to_json(),
            "gain": _json_float(self.gain),
            "gain_form_b": _json_float(self.gain_b),
        }


def _json_float(x: float) -> float | None:
    return x if np.isfinite(x) else None


def _gain(plan_: Plan, even: Plan) -> float:
    if not plan_.feasible:
        return float("nan")
    if not even.feasible:
        return float("inf")
    return even.step_time_s / plan_.step_time_s - 1.0


def compare(cluster: Cluster) -> HeteroComparison:
    """Profile the pools once, then plan Form A, Form B and the even split."""
    profiles = tuple(profile_pool(p, cluster) for p in cluster.pools)
    return HeteroComparison(
        cluster=cluster,
        profiles=profiles,
        even=even_split(cluster, profiles),
        form_a=plan(cluster, profiles, "A"),
        form_b=plan(cluster, profiles, "B"),
    )


# --------------------------------------------------------------------------- loading

_CLUSTER_KEYS = (
    "name",
    "model",
    "pools",
    "global_batch_size",
    "virtual_nodes",
    "strategy",
    "inter_pool",
)
_POOL_KEYS = (
    "name",
    "count",
    "system",
    "accelerator",
    "accelerators_per_node",
    "scale_up_size",
    "intra_node",
    "inter_node",
)


MAX_PLAN_VECTORS = 1 << 20
"""Most vectors of participating replica counts the exact planner bisects (product over the
pools of replicas + 1; two pools of 1,000 replicas each are within it)."""
MAX_PLAN_BATCH = 1 << 20
"""Largest global batch planned: Form B keeps a table with one entry per sequence."""


def _positive_int(data: dict[str, Any], key: str, path: str, maximum: int) -> int:
    """A positive integer up to ``maximum`` (the bounds of :mod:`deepflow.specs.base`),
    checked before anything sized by it is allocated."""
    if key not in data:
        raise ConfigError("missing required key", path)
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"expected a positive integer (got {brief(value)})", path)
    if value > maximum:
        raise ConfigError(f"must be <= {maximum:,} (got {value:,})", path)
    return value


def _unknown(data: dict[str, Any], known: Sequence[str], prefix: str) -> None:
    import difflib

    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            path = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"unknown key{hint}", path)


def _pool_from(data: object, index: int) -> Pool:
    path = f"pools[{index}]"
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {data!r}", path)
    _unknown(data, _POOL_KEYS, path)
    count = _positive_int(data, "count", f"{path}.count", MAX_ACCELERATORS)
    system = data.get("system")
    if system is None and "accelerator" not in data:
        raise ConfigError("give 'system' (a preset or mapping) or 'accelerator'", path)
    section: dict[str, Any]
    if system is None:
        section = {}
    elif isinstance(system, str):
        section = {"preset": system}
    elif isinstance(system, dict):
        section = dict(system)
    else:
        raise ConfigError(f"expected a preset name or a mapping, got {system!r}", f"{path}.system")
    for key in (
        "accelerator",
        "accelerators_per_node",
        "scale_up_size",
        "intra_node",
        "inter_node",
    ):
        if key in data:
            section[key] = data[key]
    section["num_accelerators"] = count
    spec = system_from(section, f"{path}.system")
    name = data.get("name") or f"{spec.accelerator.name} x{count}"
    return Pool(name=str(name), system=spec)


def cluster_from_dict(data: object, name: str = "cluster") -> Cluster:
    """Build a :class:`Cluster` from a mapping; :class:`ConfigError` names the key path.

    Keys: ``model`` (preset or mapping), ``pools`` (list of ``{name, count, system |
    accelerator, accelerators_per_node, intra_node, inter_node}``), ``global_batch_size``,
    ``virtual_nodes``, optional ``strategy`` (tp, pp, cp, precision, recompute ...; not dp,
    virtual_nodes or micro_batch_size, which the planner sets) and ``inter_pool`` (a link).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a cluster must be a mapping with keys {', '.join(_CLUSTER_KEYS)}")
    _unknown(data, _CLUSTER_KEYS, "")
    if "model" not in data:
        raise ConfigError("missing required key", "model")
    model = model_from(data["model"])
    gbs = _positive_int(data, "global_batch_size", "global_batch_size", MAX_PLAN_BATCH)
    vn = _positive_int(data, "virtual_nodes", "virtual_nodes", MAX_BATCH)
    if gbs % vn:
        raise ConfigError(f"does not divide global_batch_size={gbs} (got {vn})", "virtual_nodes")
    pools_data = data.get("pools")
    if pools_data is None:
        raise ConfigError("missing required key", "pools")
    if not isinstance(pools_data, list) or not pools_data:
        raise ConfigError(f"expected a non-empty list of pools (got {pools_data!r})", "pools")
    pools = tuple(_pool_from(p, i) for i, p in enumerate(pools_data))
    strategy_data = data.get("strategy") or {}
    if not isinstance(strategy_data, dict):
        raise ConfigError(f"expected a mapping, got {strategy_data!r}", "strategy")
    for key in _PLANNER_KEYS:
        if key in strategy_data:
            raise ConfigError(
                "set by the planner (give virtual_nodes at the top level)", f"strategy.{key}"
            )
    if strategy_data.get("zero", 0):
        raise ConfigError(
            "heterogeneous planning replicates optimizer state on every replica; use zero: 0",
            "strategy.zero",
        )
    try:
        strategy = StrategySpec.model_validate({**strategy_data, "dp": 1})
    except ValidationError as exc:
        raise config_error_from(exc, StrategySpec, "strategy") from None
    for i, pool in enumerate(pools):
        if pool.count % strategy.model_parallel_size:
            raise ConfigError(
                f"count={pool.count} is not a multiple of tp*pp*cp="
                f"{strategy.model_parallel_size} (one data-parallel replica)",
                f"pools[{i}].count",
            )
    # the exact solver bisects every vector of participating replica counts at once
    # (solve): bound their number before any array is built
    vectors = 1
    for pool in pools:
        vectors *= pool.count // strategy.model_parallel_size + 1
        if vectors > MAX_PLAN_VECTORS:
            raise ConfigError(
                f"the pools hold too many data-parallel replicas to plan exactly: the product "
                f"of (replicas + 1) over the pools exceeds {MAX_PLAN_VECTORS:,} (at "
                f"pools[{pools.index(pool)}].count={pool.count:,})",
                f"pools[{pools.index(pool)}].count",
            )
    inter_pool = None
    if data.get("inter_pool") is not None:
        try:
            inter_pool = LinkSpec.model_validate(data["inter_pool"])
        except ValidationError as exc:
            raise config_error_from(exc, LinkSpec, "inter_pool") from None
    return Cluster(
        name=str(data.get("name", name)),
        model=model,
        pools=pools,
        global_batch_size=gbs,
        virtual_nodes=vn,
        strategy=strategy,
        inter_pool=inter_pool,
    )


def load_cluster(path: str | Path) -> Cluster:
    """Load a cluster file (YAML or JSON); errors name the file and the key path."""
    return load_config_file(path, lambda data, name: cluster_from_dict(data, name=name))
