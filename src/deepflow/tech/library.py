"""The technology library: process nodes, memory and link technologies, packaging and
compute-unit micro-architectures, loaded from ``tech/data/*.yaml``.

Every entry is a frozen, validated value object (docs/STYLE.md, practice 3) with a
``sources`` list; quantities take unit strings (``"0.6 pJ"``, ``"14 mm2"``, ``"3.2 Gb/s"``)
and are stored in deepflow's internal units: joules, hertz, bytes/s, seconds, bytes, and
mm^2 / mm for areas and lengths on a die (:mod:`deepflow.units`, ``Dimension.AREA``).
Loading errors raise :class:`~deepflow.errors.ConfigError` naming the key path, for example
``nodes.n7.energy_per_flop.bf16``.
"""

from __future__ import annotations

import difflib
from enum import Enum
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BeforeValidator, Field, ValidationError

from deepflow.errors import ConfigError
from deepflow.specs.accelerator import Precision
from deepflow.specs.base import Bandwidth, Bytes, PositiveInt, Seconds, Sources, Spec, Watts
from deepflow.units import Dimension, parse_quantity


def _q(dimension: Dimension) -> BeforeValidator:
    return BeforeValidator(lambda value: parse_quantity(value, dimension))


Energy = Annotated[float, _q(Dimension.ENERGY), Field(ge=0)]
Area = Annotated[float, _q(Dimension.AREA), Field(ge=0)]
Frequency = Annotated[float, _q(Dimension.FREQUENCY), Field(gt=0)]
Volts = Annotated[float, Field(gt=0, le=5)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class EnergyPerFlop(Spec):
    """Dynamic energy of one FLOP at nominal voltage, per precision (joules)."""

    fp32: Energy
    tf32: Energy
    fp16: Energy
    bf16: Energy
    fp8: Energy = 0.0

    def at(self, precision: Precision) -> float:
        return float(getattr(self, precision.value))


class ProcessNode(Spec):
    """A logic process node (see ``tech/data/nodes.yaml`` for the meaning of each field)."""

    name: str
    node_class: str
    logic_density: Positive  # transistors per mm^2
    sram_density: Positive  # bits per mm^2
    energy_per_flop: EnergyPerFlop
    sram_energy_per_bit: Energy
    wire_energy_per_bit_mm: Energy
    nominal_voltage: Volts
    threshold_voltage: Volts
    min_voltage: Volts
    max_voltage: Volts
    nominal_frequency: Frequency
    alpha: Annotated[float, Field(ge=1.0, le=2.0)] = 1.3
    leakage_fraction: NonNegative = 0.15
    wafer_price: NonNegative = 0.0  # USD per 300 mm wafer
    defect_density: NonNegative = 0.1  # per cm^2
    sources: Sources

    def model_post_init(self, _context: Any) -> None:
        order = (self.threshold_voltage, self.min_voltage, self.nominal_voltage, self.max_voltage)
        if not (order[0] < order[1] <= order[2] <= order[3]):
            raise ValueError(
                "voltages must satisfy threshold < min <= nominal <= max, got "
                f"{order[0]} / {order[1]} / {order[2]} / {order[3]}"
            )


class MemoryKind(str, Enum):
    HBM = "hbm"
    GDDR = "gddr"
    LPDDR = "lpddr"


class MemoryTechnology(Spec):
    """An off-chip memory technology, per stack (HBM) or device (GDDR, LPDDR)."""

    name: str
    kind: MemoryKind
    pins: PositiveInt
    pin_rate: Bandwidth  # bytes/s per pin
    capacity: Bytes
    energy_per_bit: Energy
    phy_area: Area
    shoreline_mm: Positive
    footprint: Area
    static_power: Watts = 0.0  # per stack
    sources: Sources

    @property
    def bandwidth(self) -> float:
        """Peak bandwidth of one stack/device, bytes/s (pins x rate per pin)."""
        return self.pins * self.pin_rate


class LinkTechnology(Spec):
    """A chip I/O link technology; a lane is one differential pair per direction."""

    name: str
    lane_rate: Bandwidth  # bytes/s per lane per direction
    energy_per_bit: Energy
    lanes_per_mm: Positive
    area_per_lane: Area
    latency: Seconds = 0.0
    sources: Sources


class Packaging(Spec):
    """A packaging technology: largest die, largest package (interposer), dies per package,
    and how the dies of one scale-up group are wired: ``switch`` (each die's links reach
    every other through a switch or an I/O die) or ``mesh`` (dies on a 2-D mesh of
    neighbour links, as on a wafer; :mod:`deepflow.codesign.packaging`)."""

    name: str
    max_die_area: Area
    max_package_area: Area
    max_dies: PositiveInt = 1
    network: Literal["switch", "mesh"] = "switch"
    # the die-to-die link technology (a links.yaml name) joining the dies of one package
    # or wafer; None for a single die
    link: str | None = None
    sources: Sources


class SramScope(str, Enum):
    UNIT = "unit"  # one array per compute unit (registers, L1)
    CHIP = "chip"  # one array shared by every unit (L2)


class SramLevelTemplate(Spec):
    """One SRAM level of a compute-unit template."""

    name: str
    scope: SramScope
    bank_capacity: Bytes
    bank_width: Positive  # bytes per cycle per bank
    density_factor: Annotated[float, Field(gt=0, le=1)] = 1.0


class FlopsPerCycle(Spec):
    """Dense FLOP per clock of one compute unit, per precision."""

    fp32: NonNegative
    tf32: NonNegative
    fp16: NonNegative
    bf16: NonNegative
    fp8: NonNegative = 0.0

    def at(self, precision: Precision) -> float:
        return float(getattr(self, precision.value))


class MicroArchitecture(Spec):
    """A compute unit (SM-like): matrix engine throughput, logic size, SRAM levels
    innermost first."""

    name: str
    flops_per_cycle: FlopsPerCycle
    transistors: Positive
    sram: tuple[SramLevelTemplate, ...]
    sources: Sources

    def model_post_init(self, _context: Any) -> None:
        names = [level.name for level in self.sram]
        if len(set(names)) != len(names):
            raise ValueError(f"sram level names must be unique, got {names}")


T = TypeVar("T", bound=Spec)

CATALOGUES: dict[str, type[Spec]] = {
    "nodes": ProcessNode,
    "memories": MemoryTechnology,
    "links": LinkTechnology,
    "packaging": Packaging,
    "microarch": MicroArchitecture,
}


@cache
def _raw(kind: str) -> dict[str, dict[str, Any]]:
    text = resources.files("deepflow.tech").joinpath("data", f"{kind}.yaml").read_text("utf-8")
    data = yaml.safe_load(text) or {}
    assert isinstance(data, dict), f"technology catalogue {kind} is not a mapping"
    return data


def names(kind: str) -> list[str]:
    """Entry names of catalogue ``kind`` (``nodes``, ``memories``, ``links``, ``packaging``,
    ``microarch``)."""
    if kind not in CATALOGUES:
        raise ConfigError(f"unknown technology catalogue {kind!r}; known: {', '.join(CATALOGUES)}")
    return sorted(_raw(kind))


def build(kind: str, data: object, path: str) -> Spec:
    """Validate ``data`` as an entry of catalogue ``kind``; errors name ``path``."""
    cls = CATALOGUES[kind]
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {data!r}", path)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        full = f"{path}.{loc}" if loc else path
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), list(cls.model_fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown key{hint}", full) from None
        if err["type"] == "missing":
            raise ConfigError("missing required key", full) from None
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{message} (got {err.get('input')!r})", full) from None


@cache
def _entry(kind: str, name: str) -> Spec:
    catalogue = _raw(kind)
    if name not in catalogue:
        close = difflib.get_close_matches(name, list(catalogue), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(catalogue)}"
        raise ConfigError(f"unknown {kind} entry {name!r}{hint}", f"{kind}.{name}")
    return build(kind, {"name": name, **catalogue[name]}, f"{kind}.{name}")


def resolve(kind: str, value: object, path: str) -> Any:
    """An entry of catalogue ``kind`` from a name, or from a mapping ``{preset: NAME, ...}``
    whose other keys override the named entry (or define a new one without ``preset``)."""
    if isinstance(value, CATALOGUES[kind]):
        return value
    if isinstance(value, str):
        if value not in _raw(kind):
            close = difflib.get_close_matches(value, list(_raw(kind)), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(_raw(kind))}"
            raise ConfigError(f"unknown {kind} entry {value!r}{hint}", path)
        return _entry(kind, value)
    if isinstance(value, dict):
        data = dict(value)
        base = data.pop("preset", None)
        if base is not None:
            merged = _entry(kind, str(base)).model_dump()
            merged.update(data)
            data = merged
        data.setdefault("name", "custom")
        return build(kind, data, path)
    raise ConfigError(f"expected a {kind} entry name or a mapping, got {value!r}", path)


def process_node(name: str) -> ProcessNode:
    """The process node ``name`` (``n16``, ``n7``, ``n5``, ``n4``, ``n3``, ``n2``)."""
    return resolve("nodes", name, "technology.node")


def memory_technology(name: str) -> MemoryTechnology:
    """The memory technology ``name`` (``hbm2`` ... ``hbm4``, ``gddr6x``, ``gddr7``,
    ``lpddr5x``)."""
    return resolve("memories", name, "technology.memory")


def link_technology(name: str) -> LinkTechnology:
    """The link technology ``name`` (``nvlink3`` ... ``ucie-advanced``)."""
    return resolve("links", name, "technology.link")


def packaging(name: str) -> Packaging:
    """The packaging technology ``name`` (``monolithic``, ``cowos-s``, ``cowos-l``,
    ``wafer-scale``)."""
    return resolve("packaging", name, "technology.packaging")


def microarchitecture(name: str) -> MicroArchitecture:
    """The compute-unit template ``name`` (``ampere-sm``, ``hopper-sm``, ``blackwell-sm``)."""
    return resolve("microarch", name, "compute_unit")
