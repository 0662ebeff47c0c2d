"""What a search hands back to the user: the best strategy as a complete scenario, and
the top list with identical results grouped.

:func:`best_scenario` turns a :class:`~deepflow.search.exhaustive.Candidate` into the
mapping of a scenario file (spec/scenario.md) that ``deepflow predict`` reads back to the
same prediction: the searched scenario's model, system and training sections written out
in full (SI units, presets resolved, so the file stands alone, wherever it is saved), the
candidate's accelerator count and its strategy.

:func:`equivalent_groups` groups candidates whose predicted metrics are identical
(strategies the model cannot tell apart, e.g. the same layout under two names of the same
schedule), so that a table shows each result once and names the others.
"""

from __future__ import annotations

from typing import Any

from deepflow.search.exhaustive import Candidate
from deepflow.specs.scenario import Scenario


def best_scenario(scenario: Scenario, candidate: Candidate) -> dict[str, Any]:
    """The scenario-file mapping of ``scenario`` run with ``candidate``'s strategy on
    ``candidate.num_accelerators`` accelerators (keys with no value are left out)."""
    data = scenario.model_dump(mode="json", exclude={"name"})
    data["system"]["num_accelerators"] = candidate.num_accelerators
    data["strategy"] = {k: v for k, v in candidate.strategy.items() if v is not None}
    data["training"] = {k: v for k, v in data["training"].items() if v is not None}
    return data


def _metrics(c: Candidate) -> tuple[Any, ...]:
    return (
        c.num_accelerators,
        c.step_time_s,
        c.peak_memory_bytes,
        c.mfu,
        c.cost_per_step,
        c.energy_per_step_j,
    )


def equivalent_groups(candidates: list[Candidate]) -> list[list[Candidate]]:
    """``candidates`` grouped by identical predicted metrics (accelerators, step time, peak
    memory, MFU, cost, energy; exact equality, the evaluator being deterministic), in the
    order of each group's first member; each group keeps its members' order."""
    groups: dict[tuple[Any, ...], list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(_metrics(c), []).append(c)
    return list(groups.values())
