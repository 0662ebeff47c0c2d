"""Side-by-side comparison of predictions and CSV output, as data first.

:func:`comparison` lays out several predictions as rows of one metric each (a table with
one column per scenario); :func:`flatten` turns a nested JSON object (``predict --json``,
a search entry) into one flat CSV row with dotted keys (``breakdown_s.compute``);
:func:`csv_text` writes rows of such mappings as CSV (RFC 4180) with the union of their
keys as the header, in first-seen order. Values stay in SI units (seconds, bytes); an
empty cell is a value that does not exist (no time to train without ``training.tokens``,
no step time for an infeasible scenario).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deepflow.estimate.prediction import Prediction


@dataclass(frozen=True)
class Row:
    """One metric across the compared scenarios: ``key`` (dotted, as in the JSON), a
    human ``label``, its ``kind`` (``time``, ``bytes``, ``fraction``, ``rate``, ``count``,
    ``text``) and one value per scenario (None where it does not exist)."""

    key: str
    label: str
    kind: str
    values: tuple[Any, ...]


_HEADLINE = (
    ("feasible", "feasible", "text"),
    ("step_time_s", "step time", "time"),
    ("time_to_train_s", "time to train", "time"),
    ("tokens_per_s", "throughput (tokens/s)", "rate"),
    ("mfu", "MFU", "fraction"),
    ("hfu", "HFU", "fraction"),
    ("peak_memory_bytes", "peak memory", "bytes"),
    ("num_accelerators", "accelerators", "count"),
    ("micro_batches", "micro-batches", "count"),
)


def comparison(predictions: list[Prediction]) -> list[Row]:
    """The rows of a side-by-side table of ``predictions``: headline metrics, then where
    the step time goes (``breakdown_s.*``, parts that are zero everywhere left out), then
    the memory of the fullest device (``memory_bytes.*``), then ``reason`` when any
    scenario is infeasible. Values are those of ``Prediction.to_json`` (spec/scenario.md)."""
    objects = [p.to_json() for p in predictions]
    rows = [
        Row(key, label, kind, tuple(o.get(key) for o in objects)) for key, label, kind in _HEADLINE
    ]
    for section, kind in (("breakdown_s", "time"), ("memory_bytes", "bytes")):
        keys = list(dict.fromkeys(k for o in objects for k in o[section]))
        for k in keys:
            values = tuple(o[section].get(k) for o in objects)
            if all(not v for v in values):
                continue
            rows.append(Row(f"{section}.{k}", k, kind, values))
    if any(o["reason"] for o in objects):
        rows.append(Row("reason", "reason", "text", tuple(o["reason"] for o in objects)))
    return rows


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``obj`` with nested mappings spread into dotted keys; lists become one cell with
    their items separated by spaces."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = " ".join(str(v) for v in value)
        else:
            out[name] = value
    return out


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form: no digits lost
    return str(value)


def csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV of ``rows`` (mappings); the header is the union of their keys in first-seen
    order, a missing key an empty cell."""
    rows = list(rows)
    header = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([_cell(r.get(k)) for k in header])
    return buffer.getvalue()
