"""Preset catalogues: named accelerators, systems and models, shipped as YAML data.

Each catalogue lives in ``specs/data/<kind>.yaml`` as a mapping from preset name to the
fields of the spec, with a ``sources`` list naming the data sheet or paper behind the
numbers. A scenario section may be a preset name, or a mapping with ``preset: NAME`` whose
other keys override the preset's (nested mappings are merged key by key).
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources
from typing import Any

import yaml

from deepflow.errors import ConfigError

KINDS = ("accelerators", "systems", "models")


@cache
def _catalogue(kind: str) -> dict[str, dict[str, Any]]:
    text = resources.files("deepflow.specs").joinpath("data", f"{kind}.yaml").read_text("utf-8")
    data = yaml.safe_load(text) or {}
    assert isinstance(data, dict), f"preset catalogue {kind} is not a mapping"
    return data


def preset_names(kind: str) -> list[str]:
    """Names of the presets of ``kind`` (``accelerators``, ``systems`` or ``models``)."""
    return sorted(_catalogue(kind))


def preset_data(kind: str, name: str, path: str = "") -> dict[str, Any]:
    """The raw fields of preset ``name``; a :class:`ConfigError` naming ``path`` if unknown."""
    catalogue = _catalogue(kind)
    if name not in catalogue:
        close = difflib.get_close_matches(name, list(catalogue), n=1)
        hint = (
            f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(catalogue))}"
        )
        raise ConfigError(f"unknown {kind[:-1]} preset {name!r}{hint}", path)
    return {"name": name, **_deep_copy(catalogue[name])}


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overlay ``overrides`` on ``base``; nested mappings merge key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_section(kind: str, section: object, path: str) -> dict[str, Any]:
    """Turn a scenario section (preset name or mapping with optional ``preset``) into fields."""
    if isinstance(section, str):
        return preset_data(kind, section, path)
    if not isinstance(section, dict):
        raise ConfigError(f"expected a preset name or a mapping, got {section!r}", path)
    section = dict(section)
    name = section.pop("preset", None)
    if name is None:
        return section
    if not isinstance(name, str):
        raise ConfigError(f"expected a preset name, got {name!r}", f"{path}.preset")
    base = preset_data(kind, name, f"{path}.preset")
    if "name" not in section:
        section["name"] = name if not section else f"{name}*"
    return merge(base, section)
