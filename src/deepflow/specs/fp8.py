"""FP8 training recipes (``strategy.fp8_recipe``): what each one quantizes, and how.

The four recipes are Megatron-LM's ``--fp8-recipe`` choices (``megatron/training/
arguments.py``, ``_add_transformer_engine_args``: ``choices=['tensorwise', 'delayed',
'mxfp8', 'blockwise']``, ``default='delayed'``), each a Transformer Engine recipe class
(``transformer_engine/common/recipe/__init__.py``):

* ``delayed``: ``DelayedScaling``, one fp32 scale per tensor taken from the amax history of
  earlier steps (``amax_history_len=1024``); the cast kernel records the new amax as it
  writes, so quantizing is one pass. Hopper's FP8 tensor cores take "TN" operands only, so
  every quantized tensor also gets a transposed FP8 copy (TE's fused cast-transpose).
* ``tensorwise``: ``Float8CurrentScaling``, one fp32 scale per tensor from the tensor's own
  amax, computed by a separate reduction pass before the cast.
* ``mxfp8``: ``MXFP8BlockScaling``, one E8M0 (1-byte) scale per 32 consecutive values; the
  rowwise and the columnwise copy are both quantized from the 16-bit input ("both versions
  are computed from the high precision input to avoid double quantization errors"). Needs
  block-scaled tensor cores (OCP Microscaling; NVIDIA Blackwell, sm_100).
* ``blockwise``: ``Float8BlockScaling``, DeepSeek-V3's scheme (arXiv 2412.19437, sec. 3.3.2):
  1 x 128 blocks for activations and gradients (``x_block_scaling_dim=1``,
  ``grad_block_scaling_dim=1``) and 128 x 128 blocks for weights (``w_block_scaling_dim=2``),
  fp32 scales; rowwise and columnwise copies both quantized from the input.

In all four, the three GEMMs of a Transformer Engine linear layer run in FP8 (forward
``fp8_gemm_fprop``, input gradient ``fp8_gemm_dgrad``, weight gradient ``fp8_gemm_wgrad``;
``backward_override=None`` by default): the table keeps the three flags so that a recipe
with a 16-bit backward is a data change.

Without ``strategy.fp8_recipe``, ``precision: fp8`` uses :data:`DEFAULT_FP8_RECIPE`,
Megatron-LM's default ``delayed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FP8Recipe(str, Enum):
    """Scaling recipe of FP8 training (Megatron-LM ``--fp8-recipe``)."""

    TENSORWISE = "tensorwise"
    DELAYED = "delayed"
    MXFP8 = "mxfp8"
    BLOCKWISE = "blockwise"


DEFAULT_FP8_RECIPE = FP8Recipe.DELAYED
"""Megatron-LM's ``--fp8-recipe`` default (``megatron/training/arguments.py``)."""


@dataclass(frozen=True)
class RecipeFormat:
    """What one recipe quantizes and keeps, per tensor element.

    * ``fprop``/``dgrad``/``wgrad``: the linear layer's GEMMs that run in FP8;
    * ``amax_pass``: a separate read of the 16-bit tensor for its amax before the cast
      (current scaling); delayed scaling takes the scale of earlier steps and block
      scaling computes each block's amax inside the cast kernel;
    * ``scale_bytes``: scale bytes per quantized activation or gradient element of one
      copy (E8M0 per 32 values: 1/32; fp32 per 128 values: 4/128; per tensor: 0);
    * ``weight_scale_bytes``: the same for weights (blockwise: fp32 per 128 x 128 block);
    * ``two_copies_needs_tc``: the second (transposed / columnwise) copy exists only on
      chips whose FP8 GEMMs take "TN" operands only (per-tensor scaling: a transpose is the
      same numbers, so Blackwell reads the rowwise copy in either layout); block scaling
      always keeps two copies, quantized along rows and along columns.
    """

    fprop: bool
    dgrad: bool
    wgrad: bool
    amax_pass: bool
    scale_bytes: float
    weight_scale_bytes: float
    two_copies_needs_tc: bool
    needs_microscaling: bool


RECIPES: dict[FP8Recipe, RecipeFormat] = {
    FP8Recipe.TENSORWISE: RecipeFormat(True, True, True, True, 0.0, 0.0, True, False),
    FP8Recipe.DELAYED: RecipeFormat(True, True, True, False, 0.0, 0.0, True, False),
    FP8Recipe.MXFP8: RecipeFormat(True, True, True, False, 1.0 / 32, 1.0 / 32, False, True),
    FP8Recipe.BLOCKWISE: RecipeFormat(
        True, True, True, False, 4.0 / 128, 4.0 / (128 * 128), False, False
    ),
}
FP8_RECIPES = tuple(FP8Recipe)


def copies(recipe: FP8Recipe, microscaling: bool) -> float:
    """FP8 copies TE keeps of one quantized tensor: 2 (rowwise and transposed/columnwise)
    for block scaling on any chip and for per-tensor scaling on chips without
    any-layout FP8 GEMMs (Hopper, Ada); 1 for per-tensor scaling on Blackwell (TE's
    ``is_non_tn_fp8_gemm_supported``: the GEMM reads the rowwise data transposed)."""
    fmt = RECIPES[recipe]
    if fmt.two_copies_needs_tc and microscaling:
        return 1.0
    return 2.0


def quantize_bytes(recipe: FP8Recipe, microscaling: bool) -> float:
    """Bytes a quantization kernel moves per element of a 16-bit tensor: read it (2), once
    more for the amax under current scaling (2), write each FP8 copy (1 each) with its
    scales. The one definition of the quantization traffic (estimate and tests)."""
    fmt = RECIPES[recipe]
    n = copies(recipe, microscaling)
    return 2.0 + (2.0 if fmt.amax_pass else 0.0) + n * (1.0 + fmt.scale_bytes)


def weight_copy_bytes(recipe: FP8Recipe, microscaling: bool) -> float:
    """Bytes per parameter of the FP8 weight copies TE caches between micro-batches (the
    ``is_first_microbatch`` weight cache: rowwise and, where kept, transposed/columnwise
    FP8 data with their scales)."""
    fmt = RECIPES[recipe]
    return copies(recipe, microscaling) * (1.0 + fmt.weight_scale_bytes)


def weight_quantize_bytes(recipe: FP8Recipe, microscaling: bool) -> float:
    """Bytes moved per parameter when the weight cache is refreshed (once per step, on the
    first micro-batch): read the 16-bit weight (2), its amax pass under current scaling
    (2), write the cached copies."""
    fmt = RECIPES[recipe]
    return 2.0 + (2.0 if fmt.amax_pass else 0.0) + weight_copy_bytes(recipe, microscaling)
