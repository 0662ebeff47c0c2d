"""Per-operator strategy search by Markov chain Monte Carlo (FlexFlow, sec. 6).

Jia, Zaharia, Aiken ("Beyond Data and Model Parallelism for Deep Neural Networks", SysML
2019, arXiv 1807.05358) search the SOAP space with the Metropolis-Hastings algorithm:

* **target**: ``p(S) ∝ exp(-β cost(S))`` with ``cost`` the simulated step time
  (:meth:`deepflow.sim.opsim.OpSimulator.step_time`);
* **proposal**: pick an operator uniformly and give it a config drawn uniformly from all of
  its configs (degrees on its parallelizable dimensions times a start device). The draw
  does not depend on the current config, and every config of the op is equally likely, so
  ``q(S -> S') = q(S' -> S)``: the proposal is symmetric and the acceptance is
  ``min(1, exp(β (cost(S) - cost(S'))))`` (paper eq. 3);
* **branch proposal** (graphs with parallel branches, :attr:`OpGraph.branches`): with
  probability :data:`BRANCH_MOVE_PROBABILITY` the move instead places a whole branch of a
  multi-branch module (an Inception branch, a chain of 1-5 ops) on one device block,
  sample-split inside it, drawn uniformly. This is FlexFlow's operation parallelism of the
  Inception-v3 case study (sec. 8.5: branches of a module on different GPUs), which
  one-op moves reach only through a run of worse intermediate strategies (each op moved
  alone pays transfers to and from its neighbours). The move is not reversible in one
  step, so the chain no longer satisfies detailed balance exactly; FlexFlow r22.07's
  ``--enable-propagation`` proposal (a config copied along graph edges) is non-symmetric
  in the same way. The search keeps the best strategy it sees either way;
* **restarts**: every ``clamp(budget / 100, 1, 1000)`` iterations the chain returns to
  the best strategy found so far (FlexFlow's ``FFModel::optimize``, tag r22.07);
* **stop**: when the budget (iterations, or seconds) is spent, or when the best strategy
  has not improved for half of the elapsed search (paper sec. 6.2);
* **starts**: data parallelism, expert strategies (Krizhevsky's "one weird trick" for
  CNNs, arXiv 1404.5997: data-parallel convolutions and model-parallel fully connected
  layers; for RNNs, GNMT-style placement of each layer on its own node, Wu et al. 2016,
  arXiv 1609.08144, sec. 3), for graphs with parallel branches each module's branches on
  disjoint device blocks (``branch-placement``), and random strategies. Each start runs
  its own chain on an equal share of the budget; the result is the best over all chains.

β is scale-free here: costs enter as ``cost / cost(data parallel)``, so ``β = 100``
accepts a move 1 % worse with probability ``e^-1`` whatever the model's step time
(``p(S) ∝ exp(-β cost(S) / c_0)`` is still FlexFlow's target, with ``β / c_0`` fixed for a
search).

The search is space + sampler + objective: :class:`OpSpace` is the space as data,
:class:`MetropolisHastings` the sampler (``ask`` / ``tell``), the simulator's step time the
objective. Randomness comes from one ``numpy.random.Generator`` seeded by the caller, so
the same seed gives the same result (with an iteration budget; a time budget depends on
the machine).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from deepflow.errors import ConfigError
from deepflow.sim.kernelpar import KernelSplit
from deepflow.sim.opsim import (
    MEMORY_PENALTY_S,
    OpConfig,
    OpSimulator,
    Strategy,
    data_parallel,
)
from deepflow.sim.opstarts import divisors as _divisors
from deepflow.sim.opstarts import kernel_parallel_start
from deepflow.sim.opstarts import kernel_splits as _kernel_splits
from deepflow.sim.opstarts import split_param as _split_param
from deepflow.workload.opgraph import DimKind, Op, OpGraph, OpKind

__all__ = [
    "BRANCH_MOVE_PROBABILITY",
    "McmcResult",
    "MetropolisHastings",
    "OpSpace",
    "TraceEntry",
    "branch_config",
    "branch_placement",
    "expert_strategies",
    "kernel_parallel_start",
    "mcmc_search",
]


BRANCH_MOVE_PROBABILITY = 0.2
"""Share of proposals that place a whole branch (graphs with parallel branches only)."""


def branch_config(op: Op, parts: int, start: int) -> OpConfig | None:
    """``op`` split ``parts`` ways on its sample dimension on devices ``start ..
    start + parts - 1`` (every other degree 1), or ``None`` when its sample dimension does
    not divide."""
    degrees = []
    for d in op.dims:
        if d.kind is DimKind.SAMPLE and d.splittable and d.size % parts == 0:
            degrees.append(parts)
            parts = 1
        else:
            degrees.append(1)
    return None if parts != 1 else OpConfig(tuple(degrees), start)


@dataclass(frozen=True)
class OpSpace:
    """Every config of every op: degree tuples whose product is at most the device count
    (each degree divides its dimension; unsplittable dimensions keep 1), each with every
    start device that keeps the block on the machine; and, for the parallel branches of
    the graph (:attr:`OpGraph.branches`), every sample-split device block a whole branch
    can be placed on (``branch_blocks``, empty without branch moves)."""

    graph: OpGraph
    num_devices: int
    degrees: tuple[tuple[tuple[int, ...], ...], ...]
    cum_counts: tuple[np.ndarray, ...]
    kernels: tuple[tuple[KernelSplit | None, ...], ...] = ()
    branches: tuple[tuple[int, ...], ...] = ()
    branch_blocks: tuple[tuple[tuple[int, int], ...], ...] = ()
    """per branch: the ``(parts, start)`` blocks every op of the branch can take"""

    @classmethod
    def build(
        cls,
        graph: OpGraph,
        num_devices: int,
        kernel_parallel: bool = False,
        branch_moves: bool = True,
    ) -> OpSpace:
        """``kernel_parallel`` adds, for every op with a GEMM and every degree tuple, the
        CR and RC kernel splits of its partition GEMM (:mod:`deepflow.sim.kernelpar`) on
        power-of-two grids that fit the remaining devices. ``branch_moves`` lists the
        branch placements of :meth:`propose_branch`."""
        all_degrees = []
        all_kernels = []
        cums = []
        for op in graph.ops:
            options: list[tuple[int, ...]] = [()]
            for d in op.dims:
                ks = _divisors(d.size, num_devices) if d.splittable else [1]
                options = [(*o, k) for o in options for k in ks]
            options = [o for o in options if math.prod(o) <= num_devices]
            rows: list[tuple[tuple[int, ...], KernelSplit | None]] = [(o, None) for o in options]
            if kernel_parallel and op.gemm is not None:
                for o in options:
                    rows += [(o, ks) for ks in _kernel_splits(op, o, num_devices // math.prod(o))]
            all_degrees.append(tuple(r[0] for r in rows))
            all_kernels.append(tuple(r[1] for r in rows))
            counts = np.array(
                [num_devices - math.prod(o) * (ks.size if ks else 1) + 1 for o, ks in rows]
            )
            cums.append(np.cumsum(counts))
        branches = graph.branches if branch_moves else ()
        blocks = []
        for ops in branches:
            sizes = [
                k
                for k in range(1, num_devices + 1)
                if all(branch_config(graph.ops[i], k, 0) is not None for i in ops)
            ]
            blocks.append(tuple((k, s) for k in sizes for s in range(num_devices - k + 1)))
        return cls(
            graph,
            num_devices,
            tuple(all_degrees),
            tuple(cums),
            tuple(all_kernels),
            branches,
            tuple(blocks),
        )

    def propose_branch(self, current: Strategy, rng: np.random.Generator) -> Strategy:
        """``current`` with one branch, drawn uniformly, placed on one of its device blocks,
        drawn uniformly (:func:`branch_config` for each of its ops)."""
        b = int(rng.integers(len(self.branches)))
        blocks = self.branch_blocks[b]
        parts, start = blocks[int(rng.integers(len(blocks)))]
        out = list(current)
        for i in self.branches[b]:
            cfg = branch_config(self.graph.ops[i], parts, start)
            assert cfg is not None
            out[i] = cfg
        return tuple(out)

    def size(self, op: int) -> int:
        """Number of configs of op ``op``."""
        return int(self.cum_counts[op][-1])

    def config(self, op: int, index: int) -> OpConfig:
        """The ``index``-th config of op ``op`` (degrees outer, start inner)."""
        cum = self.cum_counts[op]
        j = int(np.searchsorted(cum, index, side="right"))
        before = int(cum[j - 1]) if j else 0
        kernel = self.kernels[op][j] if self.kernels else None
        return OpConfig(self.degrees[op][j], index - before, kernel)

    def random_config(self, op: int, rng: np.random.Generator) -> OpConfig:
        return self.config(op, int(rng.integers(self.size(op))))

    def random_strategy(self, rng: np.random.Generator) -> Strategy:
        return tuple(self.random_config(i, rng) for i in range(len(self.graph.ops)))

    def log10_size(self) -> float:
        """log10 of the number of strategies (FlexFlow's space is astronomically large)."""
        return float(sum(math.log10(self.size(i)) for i in range(len(self.graph.ops))))


def expert_strategies(graph: OpGraph, num_devices: int, per_node: int) -> dict[str, Strategy]:
    """Hand-designed starts.

    * ``one-weird-trick`` (graphs with convolutions): every op data parallel except the
      fully connected layers, which split their output features over all devices
      (Krizhevsky 2014, arXiv 1404.5997, sec. 3).
    * ``layer-placement`` (graphs with LSTMs): the ops of each layer (``Op.stage``) data
      parallel inside one node, stages assigned to nodes round-robin, so that the weights of
      a layer never cross a node and successive layers pipeline over time chunks (GNMT, Wu et
      al. 2016, sec. 3); the vocabulary projections split their vocabulary over all devices.
    """
    kinds = {op.kind for op in graph.ops}
    dp = data_parallel(graph, num_devices)
    out: dict[str, Strategy] = {}
    if OpKind.CONV2D in kinds:
        s = list(dp)
        for i, op in enumerate(graph.ops):
            if op.kind is OpKind.LINEAR:
                s[i] = _split_param(op, num_devices, 0)
        out["one-weird-trick"] = tuple(s)
    if OpKind.LSTM in kinds:
        nodes = max(1, num_devices // per_node)
        s = []
        for op in graph.ops:
            if op.kind is OpKind.LINEAR and op.dims[-1].size >= num_devices:
                s.append(_split_param(op, num_devices, 0))
                continue
            block = min(per_node, num_devices)
            start = (op.stage % nodes) * block
            degrees = []
            for d in op.dims:
                if d.kind is DimKind.SAMPLE and d.splittable:
                    degrees.append(max(_divisors(d.size, block)))
                else:
                    degrees.append(1)
            s.append(OpConfig(tuple(degrees), start))
        out["layer-placement"] = tuple(s)
    branches = graph.branches
    if branches:
        out["branch-placement"] = branch_placement(graph, num_devices)
    return out


def branch_placement(graph: OpGraph, num_devices: int) -> Strategy:
    """Operation parallelism for multi-branch modules: the ``B`` branches of each module
    (:attr:`OpGraph.branches`, grouped by the module prefix of their names) on disjoint
    blocks of ``max(1, D // B)`` devices, round-robin, sample-split inside the block; every
    other op data parallel. On 4 GPUs an Inception-A module's four branches each run on one
    GPU with the whole batch, so that their weights are not replicated and need no
    all-reduce (FlexFlow's Inception-v3 case study, sec. 8.5: -75 % parameter
    synchronization)."""
    out = list(data_parallel(graph, num_devices))
    modules: dict[str, list[tuple[int, ...]]] = {}
    for ops in graph.branches:
        module = graph.ops[ops[0]].branch.rsplit(".", 1)[0]
        modules.setdefault(module, []).append(ops)
    for members in modules.values():
        size = max(1, num_devices // len(members))
        for b, ops in enumerate(members):
            start = (b * size) % num_devices
            parts = max(
                k
                for k in range(1, size + 1)
                if all(branch_config(graph.ops[i], k, start) is not None for i in ops)
            )
            for i in ops:
                cfg = branch_config(graph.ops[i], parts, start)
                assert cfg is not None
                out[i] = cfg
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One proposal: the chain, the iteration (over the whole search), the proposal's cost,
    whether it was accepted, and the best cost so far (seconds)."""

    chain: int
    iteration: int
    cost: float
    accepted: bool
    best: float


class MetropolisHastings:
    """One Markov chain over strategies (ask / tell).

    ``ask`` proposes a neighbour of the current strategy (one op's config redrawn);
    ``tell`` accepts it with probability ``min(1, exp(-β (c' - c) / c_ref))`` and keeps
    the best. ``restart_every`` tells return the chain to its best strategy.
    """

    def __init__(
        self,
        space: OpSpace,
        start: Strategy,
        start_cost: float,
        rng: np.random.Generator,
        *,
        beta: float = 100.0,
        reference_cost: float | None = None,
        restart_every: int = 0,
    ) -> None:
        self.space = space
        self.rng = rng
        self.beta = beta
        self.ref = reference_cost or start_cost or 1.0
        self.restart_every = restart_every
        self.current, self.current_cost = start, start_cost
        self.best, self.best_cost = start, start_cost
        self.tells = 0

    def ask(self) -> Strategy:
        if self.space.branches and self.rng.random() < BRANCH_MOVE_PROBABILITY:
            return self.space.propose_branch(self.current, self.rng)
        i = int(self.rng.integers(len(self.space.graph.ops)))
        cfg = self.space.random_config(i, self.rng)
        return (*self.current[:i], cfg, *self.current[i + 1 :])

    def tell(self, strategy: Strategy, cost: float) -> bool:
        self.tells += 1
        delta = (cost - self.current_cost) / self.ref
        u = self.rng.random()
        accepted = delta <= 0 or u < math.exp(-self.beta * delta)
        if accepted:
            self.current, self.current_cost = strategy, cost
        if cost < self.best_cost:
            self.best, self.best_cost = strategy, cost
        if self.restart_every and self.tells % self.restart_every == 0:
            self.current, self.current_cost = self.best, self.best_cost
        return accepted


@dataclass(frozen=True)
class McmcResult:
    """The best strategy and how the search got there.

    ``start_costs`` maps each start's label to its simulated step time; ``best_cost`` is
    never above any of them. ``stopped`` says why the search ended (``budget`` or
    ``no-improvement``).
    """

    best: Strategy
    best_cost: float
    best_start: str
    start_costs: dict[str, float]
    iterations: int
    elapsed_s: float
    stopped: str
    trace: tuple[TraceEntry, ...]

    @property
    def data_parallel_cost(self) -> float:
        return self.start_costs["data-parallel"]

    @property
    def speedup(self) -> float:
        """Data-parallel step time over the best found."""
        return self.data_parallel_cost / self.best_cost if self.best_cost > 0 else 1.0


def mcmc_search(
    simulator: OpSimulator,
    *,
    iterations: int | None = 1000,
    time_budget_s: float | None = None,
    seed: int = 0,
    beta: float = 100.0,
    random_starts: int = 1,
    starts: dict[str, Strategy] | None = None,
    min_iterations: int = 50,
    on_progress: Callable[[int, int], None] | None = None,
    kernel_parallel: bool = False,
    branch_moves: bool = True,
) -> McmcResult:
    """Search the per-operator strategies of ``simulator``'s graph on its system.

    ``iterations`` and ``time_budget_s`` bound the whole search (either may be ``None``;
    not both); they are shared equally among the chains. A chain also stops once its best
    has not improved for half of its elapsed iterations (or seconds), after at least
    ``min_iterations``. ``starts`` replaces the default starts (data parallel, the expert
    strategies of :func:`expert_strategies` and ``random_starts`` random strategies).
    ``on_progress(done, total)`` hears the finished chain count (it cannot change the run).
    ``branch_moves`` (default) adds the branch proposal and the ``branch-placement`` start
    on graphs with parallel branches; without it the search is the one-op-move search.
    """
    if iterations is None and time_budget_s is None:
        raise ConfigError("give an iteration budget or a time budget", "budget")
    if iterations is not None and iterations < 0:
        raise ConfigError(f"must be >= 0, got {iterations}", "budget")
    graph = simulator.graph
    n_dev = simulator.num_devices
    space = OpSpace.build(graph, n_dev, kernel_parallel, branch_moves)
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    dp = data_parallel(graph, n_dev)
    if starts is None:
        starts = {"data-parallel": dp}
        experts = expert_strategies(graph, n_dev, simulator.per_node)
        if not branch_moves:
            experts.pop("branch-placement", None)
        starts.update(experts)
        if kernel_parallel:
            starts["kernel-parallel"] = kernel_parallel_start(graph, n_dev)
        for r in range(random_starts):
            starts[f"random-{r}"] = space.random_strategy(rng)
    elif "data-parallel" not in starts:
        starts = {"data-parallel": dp, **starts}
    # memory over-subscription is a soft penalty (OpSimulator.search_cost); a result that
    # never fits is reported with an infinite cost
    cost_of = simulator.search_cost
    start_costs = {label: cost_of(s) for label, s in starts.items()}
    reference = start_costs["data-parallel"]
    if reference >= MEMORY_PENALTY_S:
        # data parallelism does not fit in memory: scale by the best start that does
        finite = [c for c in start_costs.values() if c < MEMORY_PENALTY_S]
        reference = min(finite) if finite else 1.0
    n_chains = len(starts)
    per_iters = None if iterations is None else iterations // n_chains
    per_time = None if time_budget_s is None else time_budget_s / n_chains
    budget_for_restart = per_iters if per_iters is not None else 1000
    restart_every = min(1000, max(1, budget_for_restart // 100))

    best_label = min(start_costs, key=lambda k: (start_costs[k], k))
    best, best_cost = starts[best_label], start_costs[best_label]
    trace: list[TraceEntry] = []
    total = 0
    stopped = "budget"
    for c, (label, start) in enumerate(starts.items()):
        chain = MetropolisHastings(
            space,
            start,
            start_costs[label],
            rng,
            beta=beta,
            reference_cost=reference,
            restart_every=restart_every,
        )
        t0 = time.perf_counter()
        last_improve_it, last_improve_t = 0, 0.0
        it = 0
        while True:
            if per_iters is not None and it >= per_iters:
                break
            elapsed = time.perf_counter() - t0
            if per_time is not None and elapsed >= per_time:
                break
            if it >= min_iterations:
                # FlexFlow sec. 6.2: stop when the best has not improved for half the search
                stale = (
                    it - last_improve_it > it / 2
                    if per_iters is not None
                    else elapsed - last_improve_t > elapsed / 2
                )
                if stale:
                    stopped = "no-improvement"
                    break
            proposal = chain.ask()
            cost = cost_of(proposal)
            before = chain.best_cost
            accepted = chain.tell(proposal, cost)
            it += 1
            total += 1
            if chain.best_cost < before:
                last_improve_it, last_improve_t = it, time.perf_counter() - t0
            trace.append(TraceEntry(c, total, cost, accepted, min(best_cost, chain.best_cost)))
        if chain.best_cost < best_cost:
            best, best_cost, best_label = chain.best, chain.best_cost, label
        if on_progress is not None:
            on_progress(c + 1, n_chains)
    if best_cost >= MEMORY_PENALTY_S:
        best_cost = math.inf
    start_costs = {k: (math.inf if c >= MEMORY_PENALTY_S else c) for k, c in start_costs.items()}
    return McmcResult(
        best,
        best_cost,
        best_label,
        start_costs,
        total,
        time.perf_counter() - t_start,
        stopped,
        tuple(trace),
    )


def describe(graph: OpGraph, strategy: Sequence[OpConfig]) -> list[dict[str, object]]:
    """Per-op configs as plain data: ``{op, kind, degrees: {dim: degree}, devices: [first,
    last]}`` (degrees of 1 left out)."""
    out: list[dict[str, object]] = []
    for op, cfg in zip(graph.ops, strategy, strict=True):
        out.append(
            {
                "op": op.name,
                "kind": op.kind.value,
                "degrees": {d.name: k for d, k in zip(op.dims, cfg.degrees, strict=True) if k > 1},
                "devices": [cfg.start, cfg.start + cfg.parts * cfg.group - 1],
                **({"kernel": str(cfg.kernel)} if cfg.kernel is not None else {}),
            }
        )
    return out
