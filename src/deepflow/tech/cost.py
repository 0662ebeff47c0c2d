"""Manufacturing cost of a generated accelerator: dies, memory stacks, package.

* Dies per 300 mm wafer: ``pi (d/2)^2 / A - pi d / sqrt(2 A)`` (Hennessy & Patterson,
  Computer Architecture, 6th ed., sec. 1.6: whole dies on a round wafer).
* Die yield, negative binomial: ``Y = (1 + D0 A / alpha)^-alpha`` with clustering
  ``alpha = 3`` (Stapper 1983, IBM J. Res. Dev. 27(6); the form Hennessy & Patterson use).
* Die cost = wafer price / (dies per wafer x yield); memory and packaging add per-stack and
  per-package prices (estimates, arguments with defaults).
"""

from __future__ import annotations

import math

WAFER_DIAMETER_MM = 300.0
CLUSTERING = 3.0


def dies_per_wafer(die_area_mm2: float, diameter_mm: float = WAFER_DIAMETER_MM) -> float:
    """Whole dies of ``die_area_mm2`` on one wafer (Hennessy & Patterson, sec. 1.6)."""
    if die_area_mm2 <= 0:
        return 0.0
    d = diameter_mm
    return max(
        0.0,
        math.pi * (d / 2.0) ** 2 / die_area_mm2 - math.pi * d / math.sqrt(2.0 * die_area_mm2),
    )


def die_yield(die_area_mm2: float, defects_per_cm2: float, alpha: float = CLUSTERING) -> float:
    """Negative-binomial die yield (Stapper 1983)."""
    return (1.0 + defects_per_cm2 * die_area_mm2 / 100.0 / alpha) ** (-alpha)


def die_cost(die_area_mm2: float, wafer_price: float, defects_per_cm2: float) -> float:
    """Cost of one good die (USD); infinite when no die fits the wafer."""
    good = dies_per_wafer(die_area_mm2) * die_yield(die_area_mm2, defects_per_cm2)
    return wafer_price / good if good > 0 else math.inf


def accelerator_cost(
    die_area_mm2: float,
    dies: int,
    wafer_price: float,
    defects_per_cm2: float,
    stacks: int,
    stack_price: float = 300.0,
    package_price: float = 1000.0,
) -> float:
    """Bill of materials of one accelerator (USD): good dies, memory stacks, package.
    ``stack_price`` and ``package_price`` are estimates (no public price list)."""
    return (
        dies * die_cost(die_area_mm2, wafer_price, defects_per_cm2)
        + stacks * stack_price
        + package_price
    )
