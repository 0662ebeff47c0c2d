"""Loading helpers shared by the ASTRA-sim configuration readers: read a file, parse it, and
turn every failure into a :class:`~deepflow.errors.TraceError` naming the file and key."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import yaml

from deepflow.errors import TraceError


def read_text(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(text, source)`` of a configuration file."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as fh:
            return fh.read(), source
    except OSError as exc:
        raise TraceError(f"{source}: cannot read: {exc.strerror}") from None


def parse_json_object(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TraceError(
            f"{source}: the top level must be a JSON object, found {type(data).__name__}"
        )
    return data


def parse_yaml_mapping(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TraceError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise TraceError(f"{source}: the top level must be a mapping, found {type(data).__name__}")
    return data


def number(value: object, source: str, key: str, *, minimum: float | None = None) -> float:
    """A finite real number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TraceError(f"{source}: {key}: expected a number, found {value!r}")
    if minimum is not None and value < minimum:
        raise TraceError(f"{source}: {key}: must be >= {minimum:g}, found {value!r}")
    return float(value)


def integer(value: object, source: str, key: str, *, minimum: int | None = None) -> int:
    """An integer (a float with an integral value is accepted, as JSON writers emit 4.0)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TraceError(f"{source}: {key}: expected an integer, found {value!r}")
    if minimum is not None and value < minimum:
        raise TraceError(f"{source}: {key}: must be >= {minimum}, found {value!r}")
    return value


def flag(value: object, source: str, key: str) -> bool:
    """A 0/1 (or true/false) switch."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TraceError(f"{source}: {key}: expected 0 or 1, found {value!r}")


def string(value: object, source: str, key: str) -> str:
    if not isinstance(value, str):
        raise TraceError(f"{source}: {key}: expected a string, found {value!r}")
    return value


def string_list(value: object, source: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise TraceError(f"{source}: {key}: expected a non-empty list of strings, found {value!r}")
    return tuple(string(v, source, f"{key}[{i}]") for i, v in enumerate(value))
