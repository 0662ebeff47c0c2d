"""Costs of an FP8 recipe (``strategy.fp8_recipe``; :mod:`deepflow.specs.fp8`), per strategy.

* Quantization: every FP8 GEMM of a Transformer Engine linear layer reads 16-bit operands
  that a streaming kernel first quantizes: the input ``X`` (``rows x k``) in forward, the
  output gradient ``dY`` (``rows x n``) in backward, each into the copies the recipe keeps
  (:func:`deepflow.specs.fp8.quantize_bytes`). The weight is quantized once per step, on
  the first micro-batch, and cached for the others (TE ``Linear.forward``,
  ``is_first_microbatch``; Megatron-Core passes it from the schedule), so its cost per
  micro-batch is the step's divided by the micro-batch count; with FP8 primary weights
  (``fp8_param_gather``) the weight already is FP8 and costs nothing here.
  Each quantized tensor is one kernel, two under current scaling (amax, then cast).
  The kernels are costed as separate passes: TE fuses some of them into the producer
  (``LayerNormLinear`` emits FP8 from the norm), so this is an upper bound of the
  quantization traffic.
* Weight copies in memory: the FP8 weight cache (:func:`deepflow.specs.fp8.weight_copy_bytes`)
  on top of the 16-bit weights, or, with ``fp8_param_gather``, in place of them (the
  model is built under TE's ``fp8_model_init``, Megatron-LM ``pretrain_gpt.py``,
  ``model_provider``).
* Parameter all-gather: with ``fp8_param_gather`` the distributed optimizer gathers the
  FP8 weights, 1 byte per parameter, instead of 16-bit ones (Megatron-LM
  ``--fp8-param-gather``).

Outside ``precision: fp8`` every term is zero (the batch's recipe code is -1, which the
lookup tables below map to their last, zero entry).
"""

from __future__ import annotations

import numpy as np

from deepflow.estimate.context import Env
from deepflow.hardware.roofline import memory_time
from deepflow.specs.fp8 import (
    FP8_RECIPES,
    RECIPES,
    quantize_bytes,
    weight_copy_bytes,
    weight_quantize_bytes,
)

FP8_GATHER_BYTES = 1.0
"""Bytes per parameter of the FP8 parameter all-gather (the e4m3 data; per-tensor scales
are negligible)."""


def _table(env: Env, value) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Per strategy, ``value(recipe, microscaling)`` of its recipe; 0 outside fp8."""
    mx = env.system.accelerator.microscaling
    table = np.array([float(value(r, mx)) for r in FP8_RECIPES] + [0.0])
    return table[env.batch.fp8_recipe]


def quantization_time(
    env: Env, rows: np.ndarray, k: object, n: object, params: object
) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward time of the quantization kernels of one FP8 linear layer of
    ``rows`` (all local experts' rows together) on ``k`` inputs and ``n`` outputs with
    ``params`` local weight elements, per micro-batch and rank."""
    acc = env.system.accelerator
    fp8 = env.batch.fp8_recipe >= 0
    if not fp8.any():  # no FP8 strategy in the batch: nothing to cost (and no time spent)
        zero = np.zeros(len(env.batch))
        return zero, zero
    per_elem = _table(env, quantize_bytes)
    amax = _table(env, lambda r, mx: float(RECIPES[r].amax_pass))
    weight = np.where(env.batch.fp8_param_gather, 0.0, _table(env, weight_quantize_bytes))
    x_bytes = rows * k * per_elem + params * weight / env.micro_batches
    dy_bytes = rows * n * per_elem
    kernels = np.where(fp8, 1.0 + amax, 0.0)
    fwd = np.where(fp8, memory_time(x_bytes, acc, kernels), 0.0)
    bwd = np.where(fp8, memory_time(dy_bytes, acc, kernels), 0.0)
    return fwd, bwd


def weight_extra_bytes(env: Env) -> np.ndarray:
    """Bytes per FP8-layer parameter beyond the 16-bit weight the estimate already holds:
    the FP8 weight cache, less the 16-bit copy that FP8 primary weights replace."""
    cache = _table(env, weight_copy_bytes)
    return cache - np.where(env.batch.fp8_param_gather, env.elem, 0.0)


def gather_bytes(env: Env) -> np.ndarray:
    """Bytes per parameter of the distributed optimizer's parameter all-gather."""
    return np.where(env.batch.fp8_param_gather, FP8_GATHER_BYTES, env.elem)
