"""Sensitivity of step time to hardware and technology parameters.

The elasticity of step time ``T`` to a parameter ``x`` is ``d ln T / d ln x`` (the relative
change of ``T`` per relative change of ``x``), taken by central differences in ``ln x``:

    e = [ln T(x (1 + h)) - ln T(x (1 - h))] / [ln(1 + h) - ln(1 - h)]

An elasticity of -1 means time is inversely proportional to the parameter (the step is
bound by it); 0 means it does not matter. A key is a dotted path into the scenario's system
(``accelerator.memory_bandwidth``, ``intra_node.bandwidth``) or, with a design, into the
design (``technology.node.energy_per_flop``, ``budget.tdp``, ``allocation.area.compute``);
a key naming a mapping scales all of its numbers. The strategy stays the scenario's.
:func:`tornado_data` returns what a tornado plot shows (a pure function); :func:`plot_tornado`
draws it with matplotlib, imported only then (optional extra ``plot``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deepflow.codesign.opgraph import OpGraphProblem
from deepflow.codesign.point import Problem, WorkloadProblem, evaluate_design
from deepflow.errors import ConfigError, DeepflowError
from deepflow.estimate import predict
from deepflow.specs.scenario import Scenario
from deepflow.specs.system import SystemSpec
from deepflow.tech.design import DesignSpec


@dataclass(frozen=True)
class Elasticity:
    """One parameter's elasticity with the step times at ``x (1 - h)`` and ``x (1 + h)``."""

    key: str
    elasticity: float
    time_low: float
    time_high: float
    time_base: float


def _scaled(data: Any, path: list[str], factor: float, full: str) -> Any:
    if not path:
        if isinstance(data, bool) or data is None:
            raise ConfigError("not a number", full)
        if isinstance(data, (int, float)):
            return type(data)(data * factor) if isinstance(data, float) else data * factor
        if isinstance(data, dict):
            nums = {
                k: v
                for k, v in data.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            if not nums:
                raise ConfigError("names no numbers to scale", full)
            return {**data, **{k: v * factor for k, v in nums.items()}}
        raise ConfigError("not a number or a mapping of numbers", full)
    if not isinstance(data, dict) or path[0] not in data:
        known = ", ".join(sorted(data)) if isinstance(data, dict) else ""
        raise ConfigError(f"unknown key {path[0]!r}; known: {known}", full)
    return {**data, path[0]: _scaled(data[path[0]], path[1:], factor, full)}


def _problem(scenario: Scenario | OpGraphProblem) -> WorkloadProblem:
    return scenario if isinstance(scenario, OpGraphProblem) else Problem.from_scenario(scenario)


def _system_time(scenario: Scenario | OpGraphProblem, system: SystemSpec) -> float:
    """Step time on ``system`` with the scenario's own strategy (an operator-graph
    workload: its fastest feasible candidate strategy)."""
    if isinstance(scenario, OpGraphProblem):
        return scenario.with_system(system).step_time()
    return predict(scenario.model_copy(update={"system": system})).step_time_s


def _time(
    scenario: Scenario | OpGraphProblem, design: DesignSpec | None, key: str, factor: float
) -> float:
    path = key.split(".")
    try:
        if design is None:
            data = _scaled(scenario.system.model_dump(), path, factor, key)
            system = SystemSpec.model_validate(data)
            return _system_time(scenario, system)
        data = _scaled(design.model_dump(), path, factor, key)
        varied = DesignSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"scaled by {factor:g} the value is invalid: {exc.errors()[0]['msg']}", key
        ) from None
    return evaluate_design(varied, _problem(scenario)).step_time_s


def elasticities(
    scenario: Scenario | OpGraphProblem,
    keys: Sequence[str],
    design: DesignSpec | None = None,
    step: float = 0.05,
) -> list[Elasticity]:
    """Elasticity of the scenario's step time to each key (module docstring)."""
    if not 0 < step < 1:
        raise DeepflowError(f"step must be in (0, 1), got {step}")
    base = (
        _system_time(scenario, scenario.system)
        if design is None
        else evaluate_design(design, _problem(scenario)).step_time_s
    )
    out = []
    for key in keys:
        lo = _time(scenario, design, key, 1.0 - step)
        hi = _time(scenario, design, key, 1.0 + step)
        if lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi):
            e = (math.log(hi) - math.log(lo)) / (math.log1p(step) - math.log1p(-step))
        else:
            e = math.nan
        out.append(Elasticity(key, e, lo, hi, base))
    return out


def tornado_data(rows: Sequence[Elasticity]) -> list[dict[str, float | str]]:
    """Bars of a tornado plot, largest effect first: for each key, the relative change of
    step time at the low and at the high value of the parameter."""
    bars = [
        {
            "key": r.key,
            "elasticity": r.elasticity,
            "low": r.time_low / r.time_base - 1.0,
            "high": r.time_high / r.time_base - 1.0,
        }
        for r in rows
    ]
    return sorted(
        bars,
        key=lambda b: -abs(float(b["elasticity"])) if b["elasticity"] == b["elasticity"] else 0.0,
    )


def plot_tornado(
    bars: Sequence[dict[str, float | str]], path: str | Path, step: float = 0.05
) -> None:
    """Draw :func:`tornado_data` to ``path`` (needs matplotlib: ``pip install deepflow[plot]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise DeepflowError("plots need matplotlib: pip install 'deepflow[plot]'") from exc
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.4 * len(bars)))
    names = [str(b["key"]) for b in bars][::-1]
    low = [100 * float(b["low"]) for b in bars][::-1]
    high = [100 * float(b["high"]) for b in bars][::-1]
    ax.barh(names, low, label=f"-{step:.0%}")
    ax.barh(names, high, label=f"+{step:.0%}")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("change of step time (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
