"""Shared machinery of the spec layer: the frozen base model and quantity field types.

Every spec is a frozen pydantic model that forbids unknown keys (docs/STYLE.md, practice 3).
Quantity fields accept SI numbers or unit strings and store SI floats
(:mod:`deepflow.units`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from deepflow.units import Dimension, parse_quantity


class Spec(BaseModel):
    """Base of every spec: immutable, strict about keys, derived with ``replace``."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def replace(self, **changes: object) -> Spec:
        """Return a validated copy with ``changes`` applied (never mutates ``self``)."""
        data = self.model_dump()
        data.update(changes)
        return type(self).model_validate(data)


def _quantity(dimension: Dimension):
    def parse(value: object) -> float:
        return parse_quantity(value, dimension)

    return BeforeValidator(parse)


Bytes = Annotated[float, _quantity(Dimension.BYTES), Field(ge=0)]
Bandwidth = Annotated[float, _quantity(Dimension.BANDWIDTH), Field(ge=0)]
Seconds = Annotated[float, _quantity(Dimension.TIME), Field(ge=0)]
FlopRate = Annotated[float, _quantity(Dimension.FLOPS), Field(ge=0)]
Watts = Annotated[float, _quantity(Dimension.POWER), Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


def _integer(value: object) -> object:
    """Refuse booleans where a count is expected (``tp: true`` is not ``tp: 1``; pydantic's
    lax mode would read it as 1)."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


def count(maximum: int, minimum: int = 1) -> Any:
    """An integer field in ``[minimum, maximum]``; the upper bound is checked at load time,
    before anything sized by the value is allocated (a ``num_layers`` of 1e9 would otherwise
    build a billion operators)."""
    return Annotated[int, BeforeValidator(_integer), Field(ge=minimum, le=maximum)]


# Upper bounds of sizes and counts (docs/model.md, "Input bounds"). Each is far above any
# system or model built so far and low enough that the evaluators stay fast and bounded.
MAX_ACCELERATORS = 1 << 24
"""Accelerators in a system, and any parallel degree (16,777,216)."""
MAX_LAYERS = 4096
"""Transformer layers (the deepest published LLM has 126; Megatron-LM's largest, 128)."""
MAX_BATCH = 1 << 24
"""Sequences in a global or micro-batch (16,777,216)."""
MAX_WIDTH = 1 << 20
"""Hidden size, FFN size, head dimension, latent ranks (1,048,576)."""
MAX_HEADS = 1 << 16
"""Attention heads, key/value heads, experts (65,536)."""
MAX_VOCAB = 1 << 22
"""Vocabulary entries (4,194,304; the largest published vocabulary is 256k)."""
MAX_SEQ_LEN = 1 << 24
"""Tokens in one sequence (16,777,216)."""
MAX_NAME = 200
"""Characters in a name (scenario, model, system, accelerator)."""

PositiveInt = count(2**31 - 1)
Degree = count(MAX_ACCELERATORS)
Layers = count(MAX_LAYERS)
Batch = count(MAX_BATCH)
Width = count(MAX_WIDTH)
Heads = count(MAX_HEADS)
Name = Annotated[str, Field(max_length=MAX_NAME)]
Sources = Annotated[tuple[str, ...], Field(default=())]
