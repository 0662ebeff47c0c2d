"""Design inputs of the micro-architecture generator: technology choices, budgets and the
allocation of die area, power and die edge (perimeter) to the components.

A design file (``deepflow arch DESIGN.yaml``) looks like::

    name: h100-class
    technology: {node: n4, memory: hbm3, scale_up: nvlink4, scale_out: ib-ndr,
                 packaging: cowos-s}
    compute_unit: hopper-sm
    budget: {die_area: "814 mm2", tdp: "700 W", package_area: "1500 mm2"}
    allocation:
      area: {compute: 0.40, registers: 0.04, l1: 0.05, l2: 0.08,
             memory_controller: 0.08, scale_up: 0.03, scale_out: 0.003}
      power: {compute: 0.65, sram: 0.08, memory: 0.14, scale_up: 0.03, scale_out: 0.01}
      perimeter: {memory: 0.55, scale_up: 0.25, scale_out: 0.03}
    limits: {compute_units: 132, memory_stacks: 5, scale_up_lanes: 36, scale_out_lanes: 4}

Each allocation group is a set of fractions of its budget (die area, TDP, die perimeter)
that sum to at most 1; the rest is left to components that are not modelled (schedulers,
I/O, margins). Fractions are unit-free by construction, which is what the co-design search
varies (the public DeepFlow code mixed absolute budgets and fractions; reference sec. 8.2).
``limits`` are port counts a product chose below what its budgets allow (units disabled
for yield, stack sites left empty); a co-design search usually leaves them out.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from deepflow.errors import ConfigError
from deepflow.specs.accelerator import Efficiency, Precision
from deepflow.specs.base import PositiveInt, Sources, Spec, Watts
from deepflow.specs.files import load_config_file
from deepflow.tech.library import (
    Area,
    LinkTechnology,
    MemoryTechnology,
    MicroArchitecture,
    Packaging,
    Positive,
    ProcessNode,
    resolve,
)

AREA_COMPONENTS = ("compute", "memory_controller", "scale_up", "scale_out")
POWER_COMPONENTS = ("compute", "sram", "memory", "scale_up", "scale_out")
PERIMETER_COMPONENTS = ("memory", "scale_up", "scale_out")
GROUPS = ("area", "power", "perimeter")


def _entry(kind: str) -> BeforeValidator:
    return BeforeValidator(lambda value: resolve(kind, value, kind))


class Technology(Spec):
    """Technology choices: names from the library, or mappings that override an entry."""

    node: Annotated[ProcessNode, _entry("nodes")]
    memory: Annotated[MemoryTechnology, _entry("memories")]
    scale_up: Annotated[LinkTechnology, _entry("links")]
    scale_out: Annotated[
        LinkTechnology | None,
        BeforeValidator(lambda v: None if v is None else resolve("links", v, "scale_out")),
    ] = None
    packaging: Annotated[Packaging, _entry("packaging")] = "monolithic"  # type: ignore[assignment]


class Budget(Spec):
    """Budgets: area of one compute die, number of dies, package area, power, die edge.

    ``package_area`` defaults to the packaging's largest interposer; ``die_perimeter_mm``
    defaults to that of a square die, 4 sqrt(A) (DeepFlow ``hw_component.py``; reference
    sec. 2)."""

    die_area: Area
    dies: PositiveInt = 1
    package_area: Area | None = None
    tdp: Watts
    die_perimeter_mm: Positive | None = None

    @property
    def total_die_area(self) -> float:
        return self.die_area * self.dies

    @property
    def perimeter_mm(self) -> float:
        """Total die edge of all compute dies, mm."""
        per_die = self.die_perimeter_mm or 4.0 * math.sqrt(self.die_area)
        return per_die * self.dies


Share = Annotated[float, Field(ge=0, le=1)]


class Allocation(Spec):
    """Fractions of die area (``area``), TDP (``power``) and die edge (``perimeter``)."""

    area: dict[str, Share]
    power: dict[str, Share]
    perimeter: dict[str, Share]

    def group(self, name: str) -> dict[str, float]:
        return dict(getattr(self, name))

    def with_values(self, values: dict[tuple[str, str], float]) -> Allocation:
        """A copy with ``values[(group, key)]`` replacing those fractions."""
        data = {g: self.group(g) for g in GROUPS}
        for (g, key), value in values.items():
            data[g][key] = float(value)
        return Allocation.model_construct(**data)


class Limits(Spec):
    """Optional port counts below what the budgets allow (``None``: no limit)."""

    compute_units: PositiveInt | None = None
    memory_stacks: PositiveInt | None = None
    scale_up_lanes: PositiveInt | None = None
    scale_out_lanes: PositiveInt | None = None


class DesignSpec(Spec):
    """A complete input of :func:`deepflow.tech.generator.generate`.

    ``efficiency`` is the calibration block of the derived accelerator (achievable
    fractions of peak, as for a preset); ``power_precision`` is the precision whose full-rate
    power the voltage and frequency are solved against."""

    name: str = "design"
    technology: Technology
    compute_unit: Annotated[MicroArchitecture, _entry("microarch")]
    budget: Budget
    allocation: Allocation
    limits: Limits = Limits()
    efficiency: Efficiency = Efficiency()
    power_precision: Precision = Precision.BF16
    sources: Sources

    @model_validator(mode="after")
    def _check(self) -> DesignSpec:
        levels = [level.name for level in self.compute_unit.sram]
        allowed = {
            "area": (*AREA_COMPONENTS, *levels),
            "power": POWER_COMPONENTS,
            "perimeter": PERIMETER_COMPONENTS,
        }
        for group, keys in allowed.items():
            fractions = self.allocation.group(group)
            for key in fractions:
                if key not in keys:
                    close = difflib.get_close_matches(key, keys, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {keys}"
                    raise ValueError(f"allocation.{group}.{key}: unknown component{hint}")
            total = sum(fractions.values())
            if total > 1.0 + 1e-9:
                raise ValueError(f"allocation.{group}: fractions sum to {total:.4g} > 1")
        pkg = self.technology.packaging
        if self.budget.die_area > pkg.max_die_area:
            raise ValueError(
                f"budget.die_area: {self.budget.die_area:g} mm2 exceeds the "
                f"{pkg.name} limit of {pkg.max_die_area:g} mm2 (reticle)"
            )
        if self.budget.dies > pkg.max_dies:
            raise ValueError(f"budget.dies: {self.budget.dies} exceeds {pkg.name}'s {pkg.max_dies}")
        return self

    @property
    def package_area(self) -> float:
        return self.budget.package_area or self.technology.packaging.max_package_area


def design_from(data: object, name: str = "design") -> DesignSpec:
    """Validate a design mapping; a :class:`ConfigError` names the key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"a design must be a mapping, got {data!r}")
    data = dict(data)
    data.setdefault("name", name)
    try:
        return DesignSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        if err["type"] == "extra_forbidden":
            raise ConfigError("unknown key", loc) from None
        if err["type"] == "missing":
            raise ConfigError("missing required key", loc) from None
        message = str(err["msg"]).removeprefix("Value error, ")
        value = err.get("input")
        if not isinstance(value, dict):
            message = f"{message} (got {value!r})"
        return _raise(message, loc)


def _raise(message: str, loc: str) -> Any:
    # validator messages already carry the key path as their first word when they have one
    head = message.split(":", 1)[0]
    if " " not in head and "." in head:
        raise ConfigError(message.split(": ", 1)[1], head) from None
    raise ConfigError(message, loc) from None


def load_design(path: str | Path) -> DesignSpec:
    """Load a design file (YAML or JSON, optionally under a ``design`` key); errors name
    the file and the key path."""

    def build(data: object, name: str) -> DesignSpec:
        if isinstance(data, dict) and "design" in data:
            data = data["design"]
        return design_from(data, name=name)

    return load_config_file(path, build)
