"""Quantities: parsing strings with units into SI floats, and formatting them back.

Inside deepflow every quantity is a float in SI base units: bytes, seconds, FLOP, FLOP/s,
bytes/s, watts (docs/STYLE.md, practice 4). Conversion happens once, when input is loaded.

Accepted spellings (spec/scenario.md, "File format"): plain numbers (already SI), and
strings such as ``"300 GB/s"``, ``"400 Gb/s"`` (bits), ``"80 GiB"``, ``"2 us"``,
``"989 TFLOP/s"``, ``"700 W"``. ``GB`` = 1e9 bytes, ``GiB`` = 2**30 bytes, ``Gb`` = 1e9 bits.
"""

from __future__ import annotations

import math
import re
from enum import Enum

from deepflow.errors import UnitError


class Dimension(str, Enum):
    """What a quantity measures; each has one SI base unit."""

    BYTES = "bytes"
    BANDWIDTH = "bytes/s"
    TIME = "s"
    FLOPS = "FLOP/s"
    FLOP = "FLOP"
    POWER = "W"
    ENERGY = "J"
    AREA = "mm^2"
    FREQUENCY = "Hz"
    COUNT = "count"


_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME = {
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
    "ps": 1e-12,
    "min": 60.0,
    "h": 3600.0,
}


def _unit_table() -> dict[str, tuple[Dimension, float]]:
    table: dict[str, tuple[Dimension, float]] = {}
    for prefix, scale in {**_DECIMAL, **_BINARY}.items():
        table[f"{prefix}B"] = (Dimension.BYTES, scale)
        table[f"{prefix}B/s"] = (Dimension.BANDWIDTH, scale)
        table[f"{prefix}Bps"] = (Dimension.BANDWIDTH, scale)
        table[f"{prefix}b"] = (Dimension.BYTES, scale / 8.0)
        table[f"{prefix}b/s"] = (Dimension.BANDWIDTH, scale / 8.0)
        table[f"{prefix}bps"] = (Dimension.BANDWIDTH, scale / 8.0)
    for prefix, scale in _DECIMAL.items():
        table[f"{prefix}FLOP/s"] = (Dimension.FLOPS, scale)
        table[f"{prefix}FLOPS"] = (Dimension.FLOPS, scale)
        table[f"{prefix}OP/s"] = (Dimension.FLOPS, scale)
        table[f"{prefix}FLOP"] = (Dimension.FLOP, scale)
        table[f"{prefix}W"] = (Dimension.POWER, scale)
        table[f"{prefix}J"] = (Dimension.ENERGY, scale)
        table[f"{prefix}Hz"] = (Dimension.FREQUENCY, scale)
    table["mW"] = (Dimension.POWER, 1e-3)
    table["mJ"] = (Dimension.ENERGY, 1e-3)
    table["pJ"] = (Dimension.ENERGY, 1e-12)
    table["fJ"] = (Dimension.ENERGY, 1e-15)
    table["nJ"] = (Dimension.ENERGY, 1e-9)
    table["mm2"] = (Dimension.AREA, 1.0)
    table["mm^2"] = (Dimension.AREA, 1.0)
    for name, scale in _TIME.items():
        table[name] = (Dimension.TIME, scale)
    return table


_UNITS = _unit_table()
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµ/^0-9]*)\s*$")


def parse_quantity(value: object, dimension: Dimension, path: str = "") -> float:
    """Return ``value`` as a float in the SI base unit of ``dimension``.

    Numbers pass through unchanged (they are already SI). Strings carry a unit that must
    match ``dimension``. Raises :class:`UnitError` naming ``path`` otherwise.

    >>> parse_quantity("300 GB/s", Dimension.BANDWIDTH)
    300000000000.0
    >>> parse_quantity("400 Gb/s", Dimension.BANDWIDTH)
    50000000000.0
    >>> parse_quantity("80 GiB", Dimension.BYTES)
    85899345920.0
    """
    if isinstance(value, bool):
        raise UnitError(f"expected a {dimension.value} quantity, got {value!r}", path)
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        if not match:
            raise UnitError(f"cannot parse quantity {value!r}", path)
        number = float(match.group(1))
        unit = match.group(2)
        if unit:
            if unit not in _UNITS:
                raise UnitError(f"unknown unit {unit!r} in {value!r}", path)
            unit_dim, scale = _UNITS[unit]
            if unit_dim is not dimension:
                raise UnitError(
                    f"{value!r} is a {unit_dim.value} quantity, expected {dimension.value}", path
                )
            number *= scale
    else:
        raise UnitError(f"expected a {dimension.value} quantity, got {value!r}", path)
    if not math.isfinite(number) or number < 0:
        raise UnitError(f"must be a finite non-negative number, got {value!r}", path)
    return number


_FORMAT_PREFIXES = [(1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def format_si(value: float, unit: str, digits: int = 3) -> str:
    """Format ``value`` with a decimal SI prefix: ``format_si(3.2e14, "FLOP/s") == '320 TFLOP/s'``."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    for scale, prefix in _FORMAT_PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def format_bytes(value: float) -> str:
    """Format a byte count with binary prefixes: ``format_bytes(2**31) == '2 GiB'``."""
    for scale, prefix in [
        (2.0**50, "Pi"),
        (2.0**40, "Ti"),
        (2.0**30, "Gi"),
        (2.0**20, "Mi"),
        (2.0**10, "Ki"),
    ]:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}B"
    return f"{value:.0f} B"


def format_time(seconds: float) -> str:
    """Format a duration: ``format_time(0.0123) == '12.3 ms'``."""
    if not math.isfinite(seconds):
        return str(seconds)
    for scale, name in [
        (86400.0, "days"),
        (3600.0, "h"),
        (60.0, "min"),
        (1.0, "s"),
        (1e-3, "ms"),
        (1e-6, "us"),
        (1e-9, "ns"),
    ]:
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {name}"
    return f"{seconds:.3g} s"
