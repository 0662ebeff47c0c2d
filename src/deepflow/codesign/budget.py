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

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from deepflow.codesign.energy import CostSpec
from deepflow.codesign.point import StrategyGrid
from deepflow.errors import ConfigError
from deepflow.specs.files import load_config_file
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
        strategies=_dataclass(StrategyGrid, data.get("strategies"), "strategies"),
        cost=_dataclass(CostSpec, data.get("cost"), "cost"),
    )


def load_budget(path: str | Path) -> BudgetFile:
    """Load a budget file (YAML or JSON); errors name the file and the key path."""
    return load_config_file(path, lambda data, name: budget_from(data, name=name))
