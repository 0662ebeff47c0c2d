"""Single-GPU Hugging Face training steps as deepflow scenarios, and their comparison.

``bench/framework_step.py`` measures training steps of small Hugging Face ``transformers``
models (random weights, AMP bf16 with fp32 parameters, SDPA attention, Trainer's default
AdamW, gradient clipping) on one accelerator and writes one row per (model, batch,
sequence) point. This module turns such a row into the scenario that describes the run
(:func:`scenario_dict`), finds the accelerator preset that a ``torch.cuda.get_device_name``
string belongs to (:func:`accelerator_for_device`) and puts deepflow's prediction next to
the measurement (:func:`compare`). A validation data set built from committed measurement
files reuses the same three functions, so the script and the data set cannot disagree on
what a row means.

The scenario: the model keys of the scenario contract (``docs/spec/scenario.md``) from the
row, a one-accelerator system of the matched accelerator, and the strategy dp 1, tp 1,
pp 1, ZeRO 0, ``micro_batch_size`` = the row's batch, no recomputation, bf16. The framework
is ``hf-trainer`` where :class:`~deepflow.specs.StrategySpec` has a ``framework`` field;
before the framework profiles exist, the two switches closest to an eager Hugging Face
step stand in: ``fused_epilogues: false`` (bias, norm and activation are separate eager
kernels, as in ``transformers/models/llama/modeling_llama.py``) and
``flash_attention: true`` (SDPA dispatches to the FlashAttention-2 kernel for bf16 causal
attention without a mask, ``torch/nn/functional.py::scaled_dot_product_attention``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepflow.estimate import predict
from deepflow.specs import Scenario, StrategySpec, scenario_from_dict
from deepflow.specs.kernels import device_matches
from deepflow.specs.presets import preset_data, preset_names
from deepflow.validation.datasets import Case, read_data_csv

__all__ = [
    "DATA_FOLDERS",
    "FRAMEWORK",
    "accelerator_for_device",
    "compare",
    "hf_step_cases",
    "mean_abs_errors",
    "measured_rows",
    "scenario_dict",
]

#: The implementation profile these measurements describe (issue 13).
FRAMEWORK = "hf-trainer"

#: Measurement folders under ``deepflow/validation/data/`` written by
#: ``bench/framework_step.py`` (each with its README: command, environment, caveats), and the
#: accelerator preset each ran on.
DATA_FOLDERS = {"hf_step_h200": "h200-sxm-141gb"}

_MODEL_KEYS = ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "vocab_size")


def accelerator_for_device(device_name: str) -> str | None:
    """The accelerator preset whose ``device_names`` match ``device_name`` (as
    ``torch.cuda.get_device_name`` reports it, e.g. ``"NVIDIA H200"`` ->
    ``"h200-sxm-141gb"``), by :func:`deepflow.specs.kernels.device_matches`; ``None`` when
    no preset lists it. Presets without ``device_names`` never match here (a custom
    accelerator accepts any calibration file, but it names no device)."""
    for name in preset_names("accelerators"):
        names = tuple(preset_data("accelerators", name).get("device_names") or ())
        if names and device_matches(device_name, names):
            return name
    return None


def _system(accelerator: str) -> dict[str, Any]:
    """One accelerator: the node-type preset built around ``accelerator`` when there is one
    (its links do not matter for a single device), else the bare accelerator with the
    scale-up bandwidth of its own preset as a nominal link."""
    for name in preset_names("systems"):
        if preset_data("systems", name).get("accelerator") == accelerator:
            return {"preset": name, "num_accelerators": 1, "accelerators_per_node": 1}
    bandwidth = preset_data("accelerators", accelerator).get("scale_up_bandwidth", "1 GB/s")
    return {
        "accelerator": accelerator,
        "num_accelerators": 1,
        "accelerators_per_node": 1,
        "intra_node": {"bandwidth": bandwidth},
        "inter_node": {"bandwidth": bandwidth},
    }


def _flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y")
    return bool(value)


def scenario_dict(row: Mapping[str, Any], accelerator: str) -> dict[str, Any]:
    """The scenario (as a mapping in the public scenario format) of one measurement row on
    one ``accelerator`` preset. ``row`` holds the model keys (``num_layers``,
    ``hidden_size``, ``num_attention_heads``, ``num_kv_heads``, ``ffn_hidden_size``,
    ``ffn_type``, ``vocab_size``, ``seq_len``, ``tie_embeddings``,
    ``learned_position_embeddings``) and ``batch``; values may be strings, as read from a
    CSV file."""
    missing = [k for k in (*_MODEL_KEYS, "seq_len", "batch") if k not in row]
    if missing:
        raise KeyError(f"measurement row {row.get('name', '?')!r} lacks {', '.join(missing)}")
    model: dict[str, Any] = {
        "name": str(row.get("name", "hf-model")),
        **{k: int(row[k]) for k in _MODEL_KEYS},
        "num_kv_heads": int(row.get("num_kv_heads") or row["num_attention_heads"]),
        "ffn_type": str(row.get("ffn_type") or "gelu"),
        "seq_len": int(row["seq_len"]),
        "tie_embeddings": _flag(row.get("tie_embeddings", False)),
        "learned_position_embeddings": _flag(row.get("learned_position_embeddings", False)),
    }
    batch = int(row["batch"])
    strategy: dict[str, Any] = {
        "dp": 1,
        "tp": 1,
        "pp": 1,
        "zero": 0,
        "micro_batch_size": batch,
        "recompute": "none",
        "precision": "bf16",
    }
    if "framework" in StrategySpec.model_fields:
        strategy["framework"] = FRAMEWORK
    else:
        strategy.update(fused_epilogues=False, flash_attention=True)
    return {
        "model": model,
        "system": _system(accelerator),
        "strategy": strategy,
        "training": {"global_batch_size": batch},
    }


def scenario(row: Mapping[str, Any], accelerator: str) -> Scenario:
    """:func:`scenario_dict`, validated."""
    return scenario_from_dict(scenario_dict(row, accelerator))


def _error(predicted: float | None, measured: object) -> float | None:
    """Relative error predicted / measured - 1 (negative: deepflow is low), or None."""
    if predicted is None or measured in (None, ""):
        return None
    m = float(measured)  # type: ignore[arg-type]
    return predicted / m - 1.0 if m > 0 else None


def compare(row: Mapping[str, Any], accelerator: str) -> dict[str, Any]:
    """deepflow's prediction for one measurement row next to the measurement.

    Time is compared with the row's median step time; memory with the peak allocated by
    PyTorch's caching allocator (``torch.cuda.max_memory_allocated``: the tensors), and,
    as ``peak_reserved_error``, with the peak it reserved from the driver (tensors plus
    allocator rounding and fragmentation), which the prediction covers only where a
    framework profile models the allocator. An infeasible prediction keeps its reason and
    has no errors."""
    s = scenario(row, accelerator)
    p = predict(s)
    feasible = bool(p.feasible)
    t = float(p.step_time_s) if feasible else None
    mem = float(p.peak_memory_bytes) if feasible else None
    out: dict[str, Any] = {
        "name": row.get("name", ""),
        "accelerator": accelerator,
        "framework": s.strategy.framework if hasattr(s.strategy, "framework") else "",
        "feasible": feasible,
        "reason": p.reason or "",
        "measured_step_time_s": float(row["step_time_median_s"]),
        "predicted_step_time_s": t,
        "step_time_error": _error(t, row.get("step_time_median_s")),
        "measured_peak_allocated_bytes": row.get("peak_allocated_bytes"),
        "measured_peak_reserved_bytes": row.get("peak_reserved_bytes"),
        "predicted_peak_memory_bytes": mem,
        "peak_memory_error": _error(mem, row.get("peak_allocated_bytes")),
        "peak_reserved_error": _error(mem, row.get("peak_reserved_bytes")),
    }
    if feasible:
        out.update({f"predicted_{k}_s": float(v) for k, v in p.breakdown_s.items()})
        out.update({f"predicted_{k}_bytes": float(v) for k, v in p.memory_bytes.items()})
    return out


def measured_rows(folder: str = "hf_step_h200") -> list[dict[str, str]]:
    """The measured rows (``status`` ok) of a shipped measurement folder, as read from its
    ``measurements.csv`` (values are strings; :func:`compare` accepts them)."""
    if folder not in DATA_FOLDERS:
        raise KeyError(f"unknown measurement folder {folder!r}; known: {', '.join(DATA_FOLDERS)}")
    return [r for r in read_data_csv(folder, "measurements.csv") if r["status"] == "ok"]


def mean_abs_errors(comparisons: list[Mapping[str, Any]]) -> dict[str, float | None]:
    """Mean absolute step-time and peak-memory errors over the feasible comparisons (the
    figures issue 13 holds ``hf-trainer`` to); None where no row has the value."""
    out: dict[str, float | None] = {}
    for key in ("step_time_error", "peak_memory_error", "peak_reserved_error"):
        values = [abs(c[key]) for c in comparisons if c.get(key) is not None]
        out[key] = sum(values) / len(values) if values else None
    return out


def hf_step_cases(folder: str = "hf_step_h200") -> list[Case]:
    """The rows of a shipped measurement folder as validation cases (``deepflow validate``,
    data set ``hf-step-h200``): each row's scenario (:func:`scenario_dict`, framework
    ``hf-trainer``) with its median step time and its peak allocated memory."""
    accelerator = DATA_FOLDERS[folder]
    cases = []
    for row in measured_rows(folder):
        tokens = int(row["batch"]) * int(row["seq_len"])
        cases.append(
            Case(
                dataset="hf-step-h200",
                row_id=str(row["name"]),
                description=(
                    f"{row['family']} {int(row['num_params']) / 1e9:.2f}B, batch {row['batch']} "
                    f"x seq {row['seq_len']} ({tokens} tokens), 1 GPU"
                ),
                scenario=scenario_dict(row, accelerator),
                measured_step_time_s=float(row["step_time_median_s"]),
                notes=(
                    "transformers Trainer defaults for bf16=True (AMP over fp32 parameters, "
                    "SDPA, fused AdamW, clipping at 1.0), random weights; median of 10 steps; "
                    "peak = torch.cuda.max_memory_allocated (README of hf_step_h200)"
                ),
                measured_peak_memory_bytes=float(row["peak_allocated_bytes"]),
            )
        )
    return cases
