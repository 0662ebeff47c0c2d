"""Strategy search (docs/search.md): the space of parallelization strategies as data, an
exhaustive grid sampler through the vectorized closed-form evaluator, an exact pruned
search (the same top strategies from fewer evaluations), objectives (time,
cost, energy per step), Pareto fronts, and executors (in-process, local processes, Dask).

The per-operator MCMC search of FlexFlow runs on the event-driven simulator and is not
here yet.
"""

from deepflow.search.best import best_scenario, equivalent_groups
from deepflow.search.executors import (
    DaskExecutor,
    Executor,
    ProcessExecutor,
    SerialExecutor,
    make_executor,
)
from deepflow.search.exhaustive import (
    DEFAULT_CHUNK_SIZE,
    REASONS,
    Candidate,
    ChunkSummary,
    GridSampler,
    SearchResult,
    combine,
    exhaustive_search,
    pareto_front,
    run_chunk,
)
from deepflow.search.objective import Objective, check_objective, objective_values
from deepflow.search.prune import pruned_search
from deepflow.search.space import (
    SEARCH_KNOBS,
    Restriction,
    SearchSpace,
    parse_fix,
    parse_fixes,
    strategy_dict,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "REASONS",
    "SEARCH_KNOBS",
    "Candidate",
    "ChunkSummary",
    "DaskExecutor",
    "Executor",
    "GridSampler",
    "Objective",
    "ProcessExecutor",
    "Restriction",
    "SearchResult",
    "SearchSpace",
    "SerialExecutor",
    "best_scenario",
    "check_objective",
    "combine",
    "equivalent_groups",
    "exhaustive_search",
    "make_executor",
    "objective_values",
    "pareto_front",
    "parse_fix",
    "parse_fixes",
    "pruned_search",
    "run_chunk",
    "strategy_dict",
]
