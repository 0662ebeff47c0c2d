"""What a search minimizes: step time, cost per step or energy per step.

All three are pure functions of the predicted step time ``t`` (seconds), the accelerator
count ``N`` and one number from the system spec:

* **time**: ``t``;
* **cost per step**: ``N t p / 3600`` in the currency of ``p``, the price of one
  accelerator-hour (``system.price_per_accelerator_hour``; 0, the default, means *no price*,
  and ranking by cost is refused rather than done on zeros);
* **energy per step**: ``P_TDP N t`` joules, a first estimate that charges every accelerator
  its thermal design power (``system.accelerator.tdp``) for the whole step. It ignores that
  accelerators draw less while they wait (pipeline bubbles, exposed communication), and it
  leaves out hosts, network switches and cooling (a data centre's PUE multiplies it by
  about 1.1-1.5). It ranks strategies of one system by ``t``; across accelerator counts
  (``--gpus``) it weighs more accelerators against a shorter step.

For one scenario ``N`` is fixed, so the three objectives order strategies alike; they part
ways in a sweep over accelerator counts.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from deepflow.errors import ConfigError
from deepflow.specs.system import SystemSpec

SECONDS_PER_HOUR = 3600.0


class Objective(str, Enum):
    """The quantity a search minimizes."""

    TIME = "time"
    COST = "cost"
    ENERGY = "energy"


def has_price(system: SystemSpec) -> bool:
    """Whether the system has a price per accelerator-hour (0 means none was given)."""
    return system.price_per_accelerator_hour > 0


def has_power(system: SystemSpec) -> bool:
    """Whether the accelerator has a thermal design power (0 means none was given)."""
    return system.accelerator.tdp > 0


def cost_per_step(step_time: np.ndarray, system: SystemSpec) -> np.ndarray:
    """``N t p / 3600``: accelerator-hours of one step times the hourly price."""
    n = system.num_accelerators
    return n * np.asarray(step_time) * system.price_per_accelerator_hour / SECONDS_PER_HOUR


def energy_per_step(step_time: np.ndarray, system: SystemSpec) -> np.ndarray:
    """``P_TDP N t`` in joules (see the module docstring for what it leaves out)."""
    return system.accelerator.tdp * system.num_accelerators * np.asarray(step_time)


def check_objective(objective: Objective, system: SystemSpec) -> None:
    """Raise a :class:`~deepflow.errors.ConfigError` when ``system`` lacks the number that
    ``objective`` needs (a price for cost, a TDP for energy)."""
    if objective is Objective.COST and not has_price(system):
        raise ConfigError(
            "no price: set a price per accelerator-hour to rank by cost (got 0)",
            "system.price_per_accelerator_hour",
        )
    if objective is Objective.ENERGY and not has_power(system):
        raise ConfigError(
            f"no power: {system.accelerator.name} has no TDP to rank by energy (got 0)",
            "system.accelerator.tdp",
        )


def objective_values(objective: Objective, step_time: np.ndarray, system: SystemSpec) -> np.ndarray:
    """The objective of each step time (``inf`` stays ``inf`` for infeasible points)."""
    if objective is Objective.TIME:
        return np.asarray(step_time, dtype=np.float64)
    if objective is Objective.COST:
        return cost_per_step(step_time, system)
    return energy_per_step(step_time, system)
