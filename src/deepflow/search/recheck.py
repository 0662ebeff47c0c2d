"""Re-check the best strategies of a search with the event-driven simulator.

The exhaustive search ranks strategies with the closed-form evaluator; the simulator runs
the same cost models through per-rank task graphs and the pipeline schedule's real
dependencies (docs/simulator.md). Re-checking the top-k shows whether the ranking holds
when overlap and bubbles come out of a schedule instead of a formula.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepflow.search.exhaustive import Candidate
from deepflow.sim import simulate
from deepflow.specs.scenario import Scenario, scenario_from_dict


@dataclass(frozen=True)
class Recheck:
    """A candidate with its simulated step time and the relative difference."""

    candidate: Candidate
    simulated_step_time_s: float

    @property
    def difference(self) -> float:
        """(simulated - closed form) / closed form."""
        return self.simulated_step_time_s / self.candidate.step_time_s - 1.0


def candidate_scenario(base: Scenario, candidate: Candidate) -> Scenario:
    """The scenario ``base`` with the candidate's strategy and accelerator count."""
    data = base.model_dump(mode="json")
    data["system"]["num_accelerators"] = candidate.num_accelerators
    data["strategy"] = {**data["strategy"], **candidate.strategy}
    return scenario_from_dict(data, name=base.name)


def recheck(base: Scenario, candidates: list[Candidate]) -> list[Recheck]:
    """Simulate each candidate's step (in order)."""
    return [Recheck(c, simulate(candidate_scenario(base, c)).step_time_s) for c in candidates]
