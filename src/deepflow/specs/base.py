"""Shared machinery of the spec layer: the frozen base model and quantity field types.

Every spec is a frozen pydantic model that forbids unknown keys (docs/STYLE.md, practice 3).
Quantity fields accept SI numbers or unit strings and store SI floats
(:mod:`deepflow.units`).
"""

from __future__ import annotations

from typing import Annotated

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
PositiveInt = Annotated[int, Field(ge=1)]
Sources = Annotated[tuple[str, ...], Field(default=())]
