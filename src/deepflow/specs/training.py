"""Training settings (spec/scenario.md, ``training``)."""

from __future__ import annotations

from pydantic import Field

from deepflow.specs.base import Batch, Spec


class TrainingSpec(Spec):
    """Global batch in sequences per optimizer step; ``tokens`` to train, for time-to-train."""

    global_batch_size: Batch
    tokens: float | None = Field(default=None, gt=0)
