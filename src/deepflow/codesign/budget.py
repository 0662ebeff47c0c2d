"""The budget file of ``deepflow codesign``: a starting design (technology, budgets and
allocation), what to vary, the candidate strategies and prices.

::

    design: {...}                    # a design mapping, as for ``deepflow arch``
    search: {vary: [area.compute, area.l2, ...], lower: 0.005, starts: 4, iterations: 30,
             trials: 60, population: 20}
    strategies: {tp: [1, 2, 4, 8], pp: [1, 2, 4, 8], micro_batch_size: [1, 2],
                 recompute: [selective, full], zero: [0, 1]}
    cost: {price_per_accelerator_hour: null, electricity_per_kwh: 0.10}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from deepflow.codesign.energy import CostSpec
from deepflow.codesign.point import StrategyGrid
from deepflow.errors import ConfigError
from deepflow.specs.base import MAX_ACCELERATORS, MAX_BATCH
from deepflow.specs.files import brief, load_config_file
from deepflow.tech.design import DesignSpec, design_from


@dataclass(frozen=True)
class SearchSettings:
    vary: tuple[str, ...] | None = None
    lower: float = 0.005
    starts: int = 4
    iterations: int = 30
    trials: int = 60
    population: int = 20


@dataclass(frozen=True)
class BudgetFile:
    design: DesignSpec
    search: SearchSettings
    strategies: StrategyGrid
    cost: CostSpec


def _dataclass(cls: type, data: object, path: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {data!r}", path)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key; known: {', '.join(sorted(known))}", f"{path}.{key}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


MAX_GRID = 100_000
"""Most strategies in a budget file's grid (each is evaluated at every design point)."""


def _strategy_grid(data: object) -> StrategyGrid:
    """The ``strategies`` section: every knob a non-empty list of valid values, the grid
    at most :data:`MAX_GRID` strategies."""
    grid = _dataclass(StrategyGrid, data, "strategies")
    size = 1
    for key, valid in (
        ("tp", lambda v: 1 <= v <= MAX_ACCELERATORS),
        ("pp", lambda v: 1 <= v <= MAX_ACCELERATORS),
        ("micro_batch_size", lambda v: 1 <= v <= MAX_BATCH),
        ("zero", lambda v: 0 <= v <= 3),
    ):
        values = getattr(grid, key)
        if not isinstance(values, tuple) or not values:
            raise ConfigError(
                f"must be a non-empty list (got {brief(values)})", f"strategies.{key}"
            )
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or not valid(v):
                raise ConfigError(f"not a valid value (got {brief(v)})", f"strategies.{key}")
        size *= len(values)
    recompute = grid.recompute
    if not isinstance(recompute, tuple) or not recompute:
        raise ConfigError(
            f"must be a non-empty list (got {brief(recompute)})", "strategies.recompute"
        )
    for v in recompute:
        if v not in ("none", "selective", "full"):
            raise ConfigError(
                f"must be none, selective or full (got {brief(v)})", "strategies.recompute"
            )
    size *= len(recompute)
    if size > MAX_GRID:
        raise ConfigError(f"{size:,} strategies, above the limit of {MAX_GRID:,}", "strategies")
    return grid


def _cost(data: object) -> CostSpec:
    """The ``cost`` section: prices and years are finite and not negative (a negative
    electricity price would make energy earn money), the PUE at least 1."""
    cost = _dataclass(CostSpec, data, "cost")
    for f in fields(CostSpec):
        value = getattr(cost, f.name)
        if value is None and f.name == "price_per_accelerator_hour":
            continue
        low = 1.0 if f.name == "pue" else 0.0
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < low
            or (f.name in ("markup", "service_years") and value <= 0)
        ):
            rule = "a number >= 1" if f.name == "pue" else "a finite number >= 0"
            if f.name in ("markup", "service_years"):
                rule = "a finite number > 0"
            raise ConfigError(f"must be {rule} (got {brief(value)})", f"cost.{f.name}")
    return cost


def budget_from(data: object, name: str = "budget") -> BudgetFile:
    """Validate a budget mapping (module docstring); errors name the key path."""
    if not isinstance(data, dict):
        raise ConfigError("a budget file must be a mapping with a 'design' section")
    for key in data:
        if key not in ("design", "search", "strategies", "cost"):
            raise ConfigError("unknown key; known: design, search, strategies, cost", str(key))
    if "design" not in data:
        raise ConfigError("missing required key", "design")
    try:
        design = design_from(data["design"], name=name)
    except ConfigError as exc:
        raise exc.under("design") from None
    return BudgetFile(
        design=design,
        search=_dataclass(SearchSettings, data.get("search"), "search"),
        strategies=_strategy_grid(data.get("strategies")),
        cost=_cost(data.get("cost")),
    )


def load_budget(path: str | Path) -> BudgetFile:
    """Load a budget file (YAML or JSON); errors name the file and the key path."""
    return load_config_file(path, lambda data, name: budget_from(data, name=name))
