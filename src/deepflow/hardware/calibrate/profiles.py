"""Measured operator profiles: operator + shape + dtype -> forward and backward time.

The ``kind: operator`` records of a calibration file hold, per operator shape, the median
forward time (``backward: false``) and forward + backward time (``backward: true``) of one
call. FlexFlow's simulator prices an operator partition by exactly such a measurement
(Jia et al., arXiv 1807.05358, sec. 5.1); :class:`OperatorProfiles` answers the lookup,
and :class:`deepflow.sim.opsim.MeasuredCost` uses it for the partitions it finds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deepflow.hardware.calibrate.io import read_calibration

__all__ = ["OperatorProfiles", "ProfileTime", "profile_key"]


def profile_key(op: str, shape: Mapping[str, object], dtype: str) -> str:
    """Canonical key of ``(operator, shape, dtype)``: tuples and lists, and the order of
    the shape's keys, do not matter."""
    return json.dumps([op, dict(shape), dtype], sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ProfileTime:
    """Measured seconds of one call: ``forward_s``, and ``backward_s`` = (forward +
    backward) - forward, the two medians of the same run (never below zero)."""

    forward_s: float
    backward_s: float


class OperatorProfiles:
    """The operator profiles of one calibration, keyed by :func:`profile_key`."""

    def __init__(self, records: Iterable[Mapping[str, Any]]) -> None:
        fwd: dict[str, float] = {}
        both: dict[str, float] = {}
        for rec in records:
            if rec.get("kind") != "operator":
                continue
            key = profile_key(str(rec["op"]), rec["shape"], str(rec.get("dtype", "fp32")))
            (both if rec["backward"] else fwd)[key] = float(rec["time_s"])
        self._times = {
            k: ProfileTime(f, max(both[k] - f, 0.0)) for k, f in fwd.items() if k in both
        }

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> OperatorProfiles:
        return cls(read_calibration(path)["measurements"])

    def __len__(self) -> int:
        return len(self._times)

    def lookup(self, op: str, shape: Mapping[str, object], dtype: str) -> ProfileTime | None:
        """The measured times of ``op`` with ``shape`` at ``dtype``, or ``None``."""
        return self._times.get(profile_key(op, shape, dtype))
