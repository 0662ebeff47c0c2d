"""Validation results: predicted vs. measured values, per row and per data set."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RowResult:
    """One measurement compared with its prediction.

    ``error`` is the signed relative error (predicted - measured) / measured; ``None`` when
    the prediction is infeasible (then ``reason`` says why).
    """

    dataset: str
    row_id: str
    description: str
    measured: float
    predicted: float | None
    unit: str = "s"
    reason: str | None = None
    measured_memory: float | None = None  # peak bytes, where the source measured them
    predicted_memory: float | None = None

    @property
    def error(self) -> float | None:
        if self.predicted is None:
            return None
        return (self.predicted - self.measured) / self.measured

    @property
    def memory_error(self) -> float | None:
        """Signed relative error of the predicted peak memory; None without a measurement
        or a feasible prediction."""
        if self.predicted_memory is None or not self.measured_memory:
            return None
        return (self.predicted_memory - self.measured_memory) / self.measured_memory


@dataclass(frozen=True)
class DatasetResult:
    """All rows of one data set, with the error bound the tests hold it to."""

    name: str
    description: str
    rows: tuple[RowResult, ...]
    mape_bound: float | None = None
    worst_bound: float | None = None
    source: str = ""
    notes: tuple[str, ...] = field(default=())
    memory_bound: float | None = None  # bound on the mean abs peak-memory error

    @property
    def memory_errors(self) -> np.ndarray:
        return np.array([abs(r.memory_error) for r in self.rows if r.memory_error is not None])

    @property
    def memory_mape(self) -> float | None:
        """Mean absolute peak-memory error as a fraction; None where no row measured it."""
        errs = self.memory_errors
        return float(errs.mean()) if errs.size else None

    @property
    def errors(self) -> np.ndarray:
        return np.array([abs(r.error) for r in self.rows if r.error is not None])

    @property
    def mape(self) -> float:
        """Mean absolute percentage error as a fraction (0.05 = 5 %)."""
        errs = self.errors
        return float(errs.mean()) if errs.size else float("nan")

    @property
    def worst(self) -> float:
        errs = self.errors
        return float(errs.max()) if errs.size else float("nan")

    @property
    def infeasible(self) -> int:
        return sum(r.predicted is None for r in self.rows)

    @property
    def within_bounds(self) -> bool:
        ok = self.infeasible == 0
        if self.mape_bound is not None:
            ok = ok and self.mape <= self.mape_bound
        if self.worst_bound is not None:
            ok = ok and self.worst <= self.worst_bound
        if self.memory_bound is not None:
            memory = self.memory_mape
            ok = ok and memory is not None and memory <= self.memory_bound
        return ok
