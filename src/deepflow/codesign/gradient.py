"""DeepFlow's gradient-based co-design search, done robustly.

DeepFlow (reference sec. 5) descends step time over the budget fractions with
finite-difference gradients, many random starts, a fixed unit step and renormalisation.
Here, per start (reference sec. 8.9 lists what is fixed):

* the objective is ``ln T`` (scale-free steps; relative time changes);
* the gradient is taken *inside* the constraint set: variable ``j`` is probed along
  ``d_j = e_j - 1/n_g`` (the projection of ``e_j`` onto the group's sum constraint), by
  central differences ``(f(x + h d_j) - f(x - h d_j)) / 2h`` with ``h`` small enough that
  both probes stay feasible (never a probe whose group sum exceeds the budget);
  an infinite (infeasible) probe falls back to the one-sided difference, two give 0;
* the step is projected gradient descent, ``x <- P(x - eta g)`` (Bertsekas 1999, Nonlinear
  Programming, sec. 2.3), with ``P`` the projection onto the capped simplices
  (:mod:`deepflow.codesign.space`), and a backtracking line search over several ``eta`` at
  once; a step is taken only if it lowers the objective, so the time never rises;
* it stops when no step length improves, when the relative improvement falls below
  ``tol``, or after ``iterations``.

Starts are the base design plus seeded random points (``numpy.random.default_rng(seed)``,
created once). Every probe of an iteration is independent, so they are evaluated as one
batch of design points (``evaluate_points``), each with its best strategy; nothing touches
the file system.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deepflow.codesign.point import PointResult, WorkloadProblem, evaluate_design
from deepflow.codesign.space import DesignSpace

Objective = Callable[[list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class StartResult:
    """One start of the search: its initial and final point and ln-time, the history of
    accepted objective values, and the evaluation count."""

    x0: np.ndarray
    x: np.ndarray
    time0: float
    time: float
    history: tuple[float, ...]
    evaluations: int


@dataclass(frozen=True)
class GradientResult:
    """All starts, the best final point and its evaluated design."""

    space: DesignSpace
    starts: tuple[StartResult, ...]
    best: PointResult

    @property
    def best_start(self) -> StartResult:
        return min(self.starts, key=lambda s: s.time)


def time_objective(space: DesignSpace, problem: WorkloadProblem) -> Objective:
    """Step times (s) of a list of points, each with its best strategy (inf: infeasible)."""

    def f(points: list[np.ndarray]) -> np.ndarray:
        return np.array([evaluate_design(space.design(x), problem).step_time_s for x in points])

    return f


def _descend(
    space: DesignSpace,
    objective: Objective,
    x0: np.ndarray,
    iterations: int,
    probe: float,
    tol: float,
) -> StartResult:
    groups = space.groups()
    n = len(x0)
    size = {i: len(idx) for idx in groups.values() for i in idx}
    members = {i: idx for idx in groups.values() for i in idx}
    x = space.project(x0)
    t0 = float(objective([x])[0])
    fx = math.log(t0) if t0 > 0 and math.isfinite(t0) else math.inf
    history = [fx]
    evaluations = 1
    eta_scale = 0.05  # largest move of one fraction in the first step
    for _ in range(iterations):
        points, hs = [], []
        for j in range(n):
            d = np.zeros(n)
            d[members[j]] = -1.0 / size[j]
            d[j] += 1.0
            # both probes feasible: x +- h d >= lower in every component
            room = min((x[i] - space.lower) / abs(d[i]) for i in members[j] if abs(d[i]) > 0)
            h = max(min(probe, 0.5 * room), 1e-6)
            hs.append(h)
            points += [x + h * d, x - h * d]
        values = objective(points)
        evaluations += len(points)
        with np.errstate(divide="ignore"):
            logs = np.where(values > 0, np.log(values), np.inf)
        g = np.zeros(n)
        for j in range(n):
            up, down = logs[2 * j], logs[2 * j + 1]
            if math.isfinite(up) and math.isfinite(down):
                g[j] = (up - down) / (2.0 * hs[j])
            elif math.isfinite(up) and math.isfinite(fx):
                g[j] = (up - fx) / hs[j]
            elif math.isfinite(down) and math.isfinite(fx):
                g[j] = (fx - down) / hs[j]
        gmax = float(np.max(np.abs(g)))
        if gmax == 0.0:
            break
        etas = eta_scale / gmax * np.array([2.0, 1.0, 0.5, 0.25, 0.125, 0.0625])
        cands = [space.project(x - eta * g) for eta in etas]
        cvals = objective(cands)
        evaluations += len(cands)
        with np.errstate(divide="ignore"):
            clogs = np.where(cvals > 0, np.log(cvals), np.inf)
        k = int(np.argmin(clogs))
        if not clogs[k] < fx:
            eta_scale *= 0.25
            if eta_scale < 1e-4:
                break
            continue
        improvement = fx - float(clogs[k])
        x, fx = cands[k], float(clogs[k])
        eta_scale = float(min(0.2, max(eta_scale * (2.0 if k == 0 else 1.0), 1e-4)))
        history.append(fx)
        if improvement < tol:
            break
    return StartResult(
        x0=space.project(x0),
        x=x,
        time0=t0,
        time=math.exp(fx) if math.isfinite(fx) else math.inf,
        history=tuple(history),
        evaluations=evaluations,
    )


def gradient_search(
    space: DesignSpace,
    problem: WorkloadProblem,
    starts: int = 4,
    iterations: int = 30,
    seed: int = 0,
    probe: float = 0.01,
    tol: float = 1e-4,
    objective: Objective | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> GradientResult:
    """Multi-start projected-gradient search for the fastest allocation (module docstring).

    ``starts`` counts the base design; the others are seeded random points of the space.
    ``on_progress(done, total)`` hears the finished start count (it cannot change the run)."""
    rng = np.random.default_rng(seed)
    f = objective or time_objective(space, problem)
    x_starts = [space.start()] + [space.random(rng) for _ in range(max(0, starts - 1))]
    descents = []
    for x0 in x_starts:
        descents.append(_descend(space, f, x0, iterations, probe, tol))
        if on_progress is not None:
            on_progress(len(descents), len(x_starts))
    results = tuple(descents)
    best = min(results, key=lambda s: s.time)
    return GradientResult(space, results, evaluate_design(space.design(best.x), problem))


def grid_search(
    space: DesignSpace, problem: WorkloadProblem, points: int = 41
) -> tuple[np.ndarray, float]:
    """Dense grid over a space of two groups of two variables (one free fraction each): the
    reference optimum the gradient search is checked against."""
    groups = list(space.groups().values())
    assert len(groups) == 2 and all(len(g) == 2 for g in groups), "two 2-variable groups"
    sums = list(space.sums().values())
    axes = [np.linspace(space.lower, s - space.lower, points) for s in sums]
    best_x, best_t = space.start(), math.inf
    f = time_objective(space, problem)
    for a in axes[0]:
        row = []
        for b in axes[1]:
            x = np.zeros(4)
            x[groups[0]] = (a, sums[0] - a)
            x[groups[1]] = (b, sums[1] - b)
            row.append(x)
        times = f(row)
        i = int(np.argmin(times))
        if times[i] < best_t:
            best_x, best_t = row[i], float(times[i])
    return best_x, best_t
