"""Training settings (spec/scenario.md, ``training``)."""

from __future__ import annotations

from pydantic import Field

from deepflow.specs.base import PositiveInt, Spec


class TrainingSpec(Spec):
    """Global batch in sequences per optimizer step; ``tokens`` to train, for time-to-train."""

    global_batch_size: PositiveInt
    tokens: float | None = Field(default=None, gt=0)
