"""Reading configuration files (YAML or JSON) with errors that name the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

from deepflow.errors import ConfigError

T = TypeVar("T")


def load_config_file(path: str | Path, build: Callable[[object, str], T]) -> T:
    """Read ``path`` (JSON by suffix, else YAML) and ``build(data, name)`` from it.

    ``name`` is the file's stem. Unreadable or unparsable files, and any
    :class:`ConfigError` raised by ``build``, come out as a ``ConfigError`` attributed to
    the file (``file: key.path: message``).
    """
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", source=str(path)) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"not valid YAML/JSON: {exc}", source=str(path)) from None
    try:
        return build(data, path.stem)
    except ConfigError as exc:
        # an error inside a file the config names (a calibration file) keeps that file
        raise (exc if exc.source else exc.with_source(str(path))) from None
