"""Reading and writing calibration files (schema ``deepflow.calibration/1``).

A calibration file is YAML::

    schema: deepflow.calibration/1
    device: {name: "NVIDIA H200", backend: cuda, count: 1}
    environment: {torch: ..., cuda: ..., driver: ..., date: ..., command: ..., ...}
    measurements:            # one record per measured kernel; time_s = median s per call
      - {kind: gemm, dtype: bf16, m: 4096, n: 4096, k: 4096, groups: 1, time_s: ..., repeats: 20}
      - ...
    notes: [...]             # what was skipped and why (a single GPU has no collectives)
    fitted: {...}            # written by the fit; absent in a measurements-only file

The same records as a flat CSV (one column per key, ``shape`` as a JSON string, empty
cells where a key does not apply) is what the fit reads; :func:`write_calibration` writes
either by the file's suffix, :func:`read_calibration` reads either.

Files are written atomically: to a temporary file in the destination folder, flushed to
disk, then renamed over the destination (``os.replace``, atomic on POSIX and Windows), so
an interrupted or failed write leaves the previous file, or none, never half of one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from deepflow.errors import ConfigError
from deepflow.specs import files
from deepflow.specs.kernels import KINDS, SCHEMA, yaml_problem

__all__ = [
    "KINDS",
    "SCHEMA",
    "calibration_text",
    "check_output_path",
    "read_calibration",
    "records_to_csv",
    "validate_calibration",
    "write_calibration",
]

_TOP_KEYS = ("schema", "device", "environment", "measurements", "notes", "fitted")


def check_output_path(path: str | os.PathLike[str], key: str = "--out") -> Path:
    """The destination as a :class:`Path`, checked before any measuring starts by the
    shared rule (:func:`deepflow.specs.files.check_output_path`) with the calibration
    suffixes."""
    return files.check_output_path(path, key, (".yaml", ".yml", ".json", ".csv"))


def _plain(value: Any) -> Any:
    """Python scalars, lists and dicts only (no tuples or NumPy types) for safe YAML."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _csv_columns(records: Iterable[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for rec in records:
        for k in rec:
            if k not in cols:
                cols.append(k)
    # time_s and repeats last, as in the YAML records
    tail = [c for c in ("time_s", "repeats") if c in cols]
    return [c for c in cols if c not in tail] + tail


def records_to_csv(records: list[dict[str, Any]]) -> str:
    """The records as CSV text: one column per key, ``shape`` (and any mapping or list) as
    JSON, booleans as ``true``/``false``, empty cells where a key does not apply."""
    buf = io.StringIO()
    cols = _csv_columns(records)
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        row = {}
        for k, v in rec.items():
            if isinstance(v, (dict, list, tuple)):
                row[k] = json.dumps(_plain(v), sort_keys=True, separators=(",", ":"))
            elif isinstance(v, bool):
                row[k] = "true" if v else "false"
            elif v is None:
                row[k] = ""
            else:
                row[k] = repr(v) if isinstance(v, float) else str(v)
        writer.writerow(row)
    return buf.getvalue()


def _parse_cell(key: str, text: str) -> Any:
    if text == "":
        return None
    if key == "shape" or text[:1] in "[{":
        return json.loads(text)
    if text in ("true", "false"):
        return text == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _csv_records(text: str) -> list[dict[str, Any]]:
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        rec = {k: _parse_cell(k, v) for k, v in row.items() if k and v not in ("", None)}
        out.append(rec)
    return out


def write_calibration(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a calibration (``schema``, ``device``, ``environment``, ``measurements``,
    ``notes``) atomically; ``.csv`` writes the measurements only, ``.json`` JSON, anything
    else YAML."""
    p = check_output_path(path)
    validate_calibration(data, str(p))
    text = calibration_text(data, p.suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p


def calibration_text(data: dict[str, Any], suffix: str = ".yaml") -> str:
    """The text :func:`write_calibration` writes for a file with ``suffix``."""
    plain = _plain({k: data[k] for k in _TOP_KEYS if k in data})
    suffix = suffix.lower()
    if suffix == ".csv":
        text = records_to_csv(plain["measurements"])
    elif suffix == ".json":
        text = json.dumps(plain, indent=1) + "\n"
    else:
        # one record per line (flow style); notes and a fit's parameters in block style
        records = {k: v for k, v in plain.items() if k not in ("notes", "fitted")}
        text = yaml.safe_dump(records, sort_keys=False, default_flow_style=None, width=100)
        rest = {k: plain[k] for k in ("notes", "fitted") if k in plain}
        if rest:
            text += yaml.safe_dump(rest, sort_keys=False, default_flow_style=False, width=100)
    return text


def read_calibration(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a calibration file (YAML, JSON, or the CSV of its measurements) and check it;
    a CSV gives ``{"schema": ..., "measurements": [...]}``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read calibration file: {exc.strerror}", "", str(p)) from None
    if p.suffix.lower() == ".csv":
        data: Any = {"schema": SCHEMA, "measurements": _csv_records(text)}
    elif p.suffix.lower() == ".json":
        # not through YAML: YAML 1.1 reads JSON's ``1e-05`` as a string
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON: {exc}", "", str(p)) from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {yaml_problem(exc)}", "", str(p)) from None
    validate_calibration(data, str(p))
    return data


_REQUIRED: dict[str, tuple[str, ...]] = {
    "gemm": ("dtype", "m", "n", "k"),
    "grouped_gemm": ("dtype", "m", "n", "k", "groups"),
    "attention": ("dtype", "batch", "heads", "kv_heads", "seq", "head_dim", "causal", "backward"),
    "memory": ("op", "bytes"),
    "elementwise": ("op", "dtype", "rows", "cols", "backward"),
    "collective": ("op", "ranks", "bytes"),
    "operator": ("op", "shape", "backward"),
}


def validate_calibration(data: Any, source: str | None = None) -> None:
    """Check the structure of a calibration: a :class:`ConfigError` names the key path
    (``measurements[3].time_s``), the rule and the value."""
    if not isinstance(data, dict):
        raise ConfigError(f"must be a mapping, got {type(data).__name__}", "", source)
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(f"unknown key; expected one of {', '.join(_TOP_KEYS)}", key, source)
    if data.get("schema") != SCHEMA:
        raise ConfigError(f"must be {SCHEMA!r}, got {data.get('schema')!r}", "schema", source)
    recs = data.get("measurements")
    if not isinstance(recs, list):
        raise ConfigError("must be a list of records", "measurements", source)
    for i, rec in enumerate(recs):
        path = f"measurements[{i}]"
        if not isinstance(rec, dict):
            raise ConfigError("must be a mapping", path, source)
        kind = rec.get("kind")
        if kind not in KINDS:
            raise ConfigError(
                f"must be one of {', '.join(KINDS)}, got {kind!r}", f"{path}.kind", source
            )
        for key in _REQUIRED[kind]:
            if key not in rec:
                raise ConfigError(f"missing (required for kind {kind})", f"{path}.{key}", source)
        t = rec.get("time_s")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise ConfigError(f"must be a positive number, got {t!r}", f"{path}.time_s", source)
        if kind == "operator" and not isinstance(rec["shape"], dict):
            raise ConfigError(f"must be a mapping, got {rec['shape']!r}", f"{path}.shape", source)
