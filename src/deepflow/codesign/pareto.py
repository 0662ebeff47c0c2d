"""Multi-objective co-design: step time, energy per step and cost per step, searched with
Optuna's NSGA-II sampler (Deb et al. 2002, IEEE TEVC 6(2)), through Optuna's ask/tell
interface (docs/STYLE.md, practice 9). Optuna is an optional dependency, imported only here
when a search runs. Each trial's raw values are mapped onto the design space (projected onto
the group sums), evaluated with the point's best strategy, and told back; an infeasible point
is told as a failed trial. Nothing is written to disk (in-memory storage).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from deepflow.codesign.point import PointResult, WorkloadProblem, evaluate_design
from deepflow.codesign.space import DesignSpace
from deepflow.errors import DeepflowError

OBJECTIVES = ("time", "energy", "cost")


def non_dominated(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``values`` (points x objectives, minimized) that no other
    row dominates (no worse in every objective and better in one; Deb et al. 2002, sec. 2)."""
    v = np.asarray(values, dtype=float)
    le = np.all(v[:, None, :] <= v[None, :, :], axis=2)
    lt = np.any(v[:, None, :] < v[None, :, :], axis=2)
    dominates = le & lt  # [i, j]: i dominates j
    return ~np.any(dominates, axis=0)


@dataclass(frozen=True)
class ParetoResult:
    """Every evaluated point and the non-dominated front among the feasible ones."""

    objectives: tuple[str, ...]
    points: tuple[np.ndarray, ...]
    values: np.ndarray  # points x objectives (inf where infeasible)
    front: tuple[int, ...]  # indices into points
    results: tuple[PointResult, ...]


def nsga2_search(
    space: DesignSpace,
    problem: WorkloadProblem,
    objectives: Sequence[str] = ("time", "energy"),
    trials: int = 60,
    population: int = 20,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> ParetoResult:
    """NSGA-II over the allocation fractions of ``space`` (module docstring).
    ``on_progress(done, total)`` hears the finished trial count (it cannot change the run)."""
    for name in objectives:
        if name not in OBJECTIVES:
            raise DeepflowError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DeepflowError("multi-objective co-design needs Optuna: pip install optuna") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    study = optuna.create_study(directions=["minimize"] * len(objectives), sampler=sampler)
    sums = space.sums()
    groups = space.groups()
    points: list[np.ndarray] = []
    values: list[list[float]] = []
    results: list[PointResult] = []
    for _ in range(trials):
        trial = study.ask()
        raw = np.array([trial.suggest_float(f"{g}.{k}", 0.0, 1.0) for g, k in space.variables])
        x = np.array(raw)
        for group, idx in groups.items():
            share = raw[idx] + 1e-9
            x[idx] = space.lower + (sums[group] - len(idx) * space.lower) * share / share.sum()
        result = evaluate_design(space.design(x), problem)
        vals = [result.objective(name) for name in objectives]
        points.append(x)
        values.append(vals)
        results.append(result)
        if all(np.isfinite(vals)):
            study.tell(trial, vals)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if on_progress is not None:
            on_progress(len(values), trials)
    v = np.array(values)
    finite = np.all(np.isfinite(v), axis=1)
    idx = np.nonzero(finite)[0]
    mask = non_dominated(v[idx]) if len(idx) else np.zeros(0, bool)
    front = tuple(int(i) for i in idx[mask])
    return ParetoResult(tuple(objectives), tuple(points), v, front, tuple(results))
