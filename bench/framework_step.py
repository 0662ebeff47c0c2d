"""Measure single-GPU training steps of Hugging Face models, the way Trainer runs them.

This is the measuring side of the ``hf-trainer`` framework profile (issue 13): it trains a
few steps of small Hugging Face ``transformers`` models built from a config with random
weights (nothing is downloaded), a Llama-architecture model and a GPT-2-architecture model,
each at several (batch, sequence) points, and records the step time and the peak memory
together with everything needed to rebuild the run as a deepflow scenario. When deepflow
can be imported afterwards, it prints deepflow's prediction next to each measurement.

Run from the repository root (GPU, about one to two minutes on an H100/H200)::

    python3 bench/framework_step.py --device cuda --out /tmp/fw

or, for the CI mechanics check on the CPU with a tiny model (a few seconds)::

    python3 bench/framework_step.py --device cpu --tiny --out /tmp/fw-cpu

What one step is
----------------
The step reproduces what ``transformers.Trainer`` does with its defaults for ``bf16=True``
training on one GPU (transformers ``trainer.py``, ``Trainer._inner_training_loop`` and
``Trainer.training_step``; ``training_args.py`` for the defaults, read at run time from the
installed version's ``TrainingArguments`` fields rather than copied here):

1. forward under ``torch.autocast(device, dtype=torch.bfloat16)`` with fp32 parameters
   (Trainer's ``bf16=True`` is automatic mixed precision through accelerate's autocast, not
   a bf16 model), ``attn_implementation="sdpa"`` (``torch.nn.functional.
   scaled_dot_product_attention``), loss from ``labels``: the model's own causal-LM loss
   (``transformers/loss/loss_utils.py::ForCausalLMLoss``, which upcasts the logits to fp32
   before the cross-entropy);
2. ``loss.backward()`` outside autocast;
3. ``torch.nn.utils.clip_grad_norm_(params, max_grad_norm)`` (default 1.0);
4. ``optimizer.step()`` with the optimizer the ``optim`` default names:
   ``adamw_torch_fused`` (``torch.optim.AdamW(fused=True)``) for torch >= 2.8,
   ``adamw_torch`` (``torch.optim.AdamW``, foreach) before (``trainer_optimizer.py::
   _get_adamw_torch``), in two parameter groups as ``Trainer.get_decay_parameter_names``
   splits them (biases and norms without weight decay; the default decay is 0.0 anyway);
5. ``lr_scheduler.step()`` (the default ``linear`` schedule) and
   ``model.zero_grad(set_to_none=True)``.

Dropout stays at each config's default (GPT-2: 0.1 on embeddings, residuals and attention;
Llama: none), the model is in ``train()`` mode, inputs are uniformly random token ids with
``labels = input_ids`` (the model shifts them), no attention mask and no padding.

What is measured
----------------
* Step time: CUDA events recorded on the current stream before the forward of each timed
  step and after its ``zero_grad``, one synchronize at the end (no host synchronization
  inside the loop, like Trainer between logging steps); the median and mean over the timed
  steps, after ``--warmup`` untimed steps (cuBLAS heuristics, allocator warm-up, lazy
  optimizer state). The wall-clock mean over the timed steps is recorded as a cross-check.
  On the CPU: ``time.perf_counter`` per step.
* Peak memory: ``torch.cuda.max_memory_allocated()`` and ``torch.cuda.max_memory_reserved()``
  over the timed steps only; the peak statistics are reset (``reset_peak_memory_stats``)
  after the warm-up, when the fp32 weights and the AdamW moments already exist and the
  gradients of the last warm-up step are freed (``set_to_none``). The allocated peak is
  what the tensors need; the reserved peak adds what PyTorch's caching allocator holds
  (block rounding, fragmentation). ``steady_allocated_bytes`` is the allocated memory at
  the reset (weights + optimizer state + the batch).

Safety on a shared GPU: the process is capped at ``--max-memory-gib`` (and never more than
95 % of the memory free at start) with ``torch.cuda.set_per_process_memory_fraction``, an
out-of-memory error in one row is recorded as a skipped row with its reason, and rows that
would start after ``--time-budget-s`` are skipped too. The largest default row needs about
45 GB.

Output (in ``--out DIR``)
-------------------------
``measurements.csv`` (one line per row), ``measurements.json`` (the environment block:
device, driver, CUDA, torch and transformers versions, date, exact command; the rows with
their per-step times; the predictions) and, when deepflow could predict,
``predictions.csv``. The comparison is
:func:`deepflow.validation.hf_step.compare`, reusable for a validation data set built from
these files.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as _dt
import gc
import itertools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# --- the rows --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelPoint:
    """One measured configuration: an architecture, its sizes, and a (batch, seq) point."""

    family: str  # "llama" | "gpt2"
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    ffn_hidden_size: int
    vocab_size: int
    batch: int
    seq_len: int

    @property
    def name(self) -> str:
        return f"{self.family}-l{self.num_layers}-h{self.hidden_size}-b{self.batch}-s{self.seq_len}"


def _llama(batch: int, seq: int) -> ModelPoint:
    # A ~0.84 B-parameter Llama (hidden 2048, 16 layers, 16 heads, GQA with 4 KV heads,
    # SwiGLU 5504, vocabulary 32,000: the TinyLlama-1.1B shape with 16 instead of 22 layers).
    return ModelPoint("llama", 16, 2048, 16, 4, 5504, 32000, batch, seq)


def _gpt2(batch: int, seq: int) -> ModelPoint:
    # A ~0.76 B-parameter GPT-2 (n_embd 1536, 24 layers, 12 heads of 128, GELU 4h, the GPT-2
    # vocabulary of 50,257, tied embeddings): the GPT-2 large width with medium depth.
    return ModelPoint("gpt2", 24, 1536, 12, 12, 4 * 1536, 50257, batch, seq)


# GEMM-heavy short sequences, attention-heavier long ones, 2k to 8k tokens per step (memory
# levels); the largest needs about 45 GB on the GPU.
GPU_POINTS: tuple[ModelPoint, ...] = (
    _llama(2, 1024),
    _llama(8, 1024),
    _llama(2, 4096),
    _llama(1, 8192),
    _gpt2(4, 1024),
    _gpt2(8, 1024),
    _gpt2(2, 4096),
)

TINY_POINTS: tuple[ModelPoint, ...] = (
    ModelPoint("llama", 2, 64, 4, 2, 128, 256, 2, 32),
    ModelPoint("gpt2", 2, 64, 4, 4, 256, 256, 2, 32),
)


# --- Trainer's defaults, read from the installed transformers ---------------------------------


def trainer_defaults() -> dict[str, Any]:
    """The ``TrainingArguments`` field defaults that shape the step (optimizer name, Adam
    hyper-parameters, weight decay, learning rate and schedule, gradient clipping), read from
    the installed ``transformers/training_args.py`` without constructing the arguments
    (which would need accelerate)."""
    from transformers import TrainingArguments

    fields = {f.name: f for f in dataclasses.fields(TrainingArguments)}

    def default(name: str) -> Any:
        value = fields[name].default
        return getattr(value, "value", value)  # enums (OptimizerNames, SchedulerType) -> str

    return {
        "optim": str(default("optim")),
        "learning_rate": float(default("learning_rate")),
        "weight_decay": float(default("weight_decay")),
        "adam_beta1": float(default("adam_beta1")),
        "adam_beta2": float(default("adam_beta2")),
        "adam_epsilon": float(default("adam_epsilon")),
        "max_grad_norm": float(default("max_grad_norm")),
        "lr_scheduler_type": str(default("lr_scheduler_type")),
    }


# --- building the model and the optimizer ------------------------------------------------------


def build_model(point: ModelPoint, device: str) -> Any:
    """A randomly initialised fp32 causal LM of ``point`` on ``device`` with SDPA attention."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    if point.family == "llama":
        config = LlamaConfig(
            hidden_size=point.hidden_size,
            intermediate_size=point.ffn_hidden_size,
            num_hidden_layers=point.num_layers,
            num_attention_heads=point.num_attention_heads,
            num_key_value_heads=point.num_kv_heads,
            vocab_size=point.vocab_size,
            max_position_embeddings=max(point.seq_len, 2048),
            tie_word_embeddings=False,
        )
    elif point.family == "gpt2":
        config = GPT2Config(
            n_embd=point.hidden_size,
            n_layer=point.num_layers,
            n_head=point.num_attention_heads,
            n_inner=point.ffn_hidden_size,
            vocab_size=point.vocab_size,
            n_positions=point.seq_len,
            tie_word_embeddings=True,
            bos_token_id=point.vocab_size - 1,  # GPT-2's <|endoftext|> is the last id
            eos_token_id=point.vocab_size - 1,
        )
    else:
        raise ValueError(f"family: unknown {point.family!r}; known: llama, gpt2")
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model = model.to(device=device, dtype=torch.float32)
    model.train()
    return model


def decay_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Trainer's two parameter groups (``Trainer.get_decay_parameter_names``: no decay for
    biases and norm weights), so that the fused optimizer launches what Trainer's does."""
    import re

    import torch

    forbidden = re.compile(r"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)|ln_")
    norm_types = (torch.nn.LayerNorm,)
    no_decay: set[str] = set()
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if isinstance(module, norm_types) or forbidden.search(full.lower()):
                no_decay.add(full)
    decay, other = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (other if name in no_decay else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]


def build_optimizer(model: Any, defaults: dict[str, Any], total_steps: int) -> tuple[Any, Any]:
    """The AdamW Trainer builds for ``defaults['optim']`` and its default LR schedule."""
    import torch
    from transformers import get_scheduler

    optim = defaults["optim"]
    if optim not in ("adamw_torch", "adamw_torch_fused"):
        raise ValueError(f"optim: {optim!r} is not reproduced here (adamw_torch[_fused] only)")
    kwargs: dict[str, Any] = {
        "lr": defaults["learning_rate"],
        "betas": (defaults["adam_beta1"], defaults["adam_beta2"]),
        "eps": defaults["adam_epsilon"],
    }
    if optim == "adamw_torch_fused":
        kwargs["fused"] = True
    optimizer = torch.optim.AdamW(decay_groups(model, defaults["weight_decay"]), **kwargs)
    scheduler = get_scheduler(
        defaults["lr_scheduler_type"], optimizer, num_warmup_steps=0, num_training_steps=total_steps
    )
    return optimizer, scheduler


# --- measuring --------------------------------------------------------------------------------


def _memory_error_types() -> tuple[type[BaseException], ...]:
    import torch

    types: list[type[BaseException]] = []
    for owner in (torch, torch.cuda):
        err = getattr(owner, "OutOfMemoryError", None)
        if isinstance(err, type):
            types.append(err)
    return tuple(types) or (RuntimeError,)


def measure(
    point: ModelPoint, device: str, defaults: dict[str, Any], warmup: int, steps: int, seed: int
) -> dict[str, Any]:
    """Train ``warmup + steps`` steps of ``point``; return the measurement row."""
    import torch

    torch.manual_seed(seed)
    cuda = device.startswith("cuda")
    model = build_model(point, device)
    params = [p for p in model.parameters() if p.requires_grad]
    num_params = sum(p.numel() for p in params)
    optimizer, scheduler = build_optimizer(model, defaults, warmup + steps)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    batches = [
        torch.randint(0, point.vocab_size, (point.batch, point.seq_len), generator=generator)
        for _ in range(2)
    ]
    batches = [b.to(device) for b in batches]
    amp_device = "cuda" if cuda else "cpu"

    def step(i: int) -> Any:
        ids = batches[i % len(batches)]
        with torch.autocast(amp_device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, defaults["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        model.zero_grad(set_to_none=True)
        return loss.detach()

    for i in range(warmup):
        step(i)
    steady_allocated = None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        steady_allocated = torch.cuda.memory_allocated()
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(steps)
        ]
        losses = []
        wall0 = time.perf_counter()
        for i, (start, end) in enumerate(events):
            start.record()
            losses.append(step(warmup + i))
            end.record()
        torch.cuda.synchronize()
        wall = time.perf_counter() - wall0
        times = [start.elapsed_time(end) / 1e3 for start, end in events]
        peak_allocated = torch.cuda.max_memory_allocated()
        peak_reserved = torch.cuda.max_memory_reserved()
    else:
        times, losses = [], []
        wall0 = time.perf_counter()
        for i in range(steps):
            t0 = time.perf_counter()
            losses.append(step(warmup + i))
            times.append(time.perf_counter() - t0)
        wall = time.perf_counter() - wall0
        peak_allocated = peak_reserved = None
    final_loss = float(losses[-1].float().cpu())
    attn = getattr(model.config, "_attn_implementation", None)
    fused = bool(optimizer.defaults.get("fused"))
    return {  # the model, optimizer and batches are freed when this frame ends
        "name": point.name,
        "status": "ok",
        "reason": "",
        **dataclasses.asdict(point),
        "ffn_type": "swiglu" if point.family == "llama" else "gelu",
        "tie_embeddings": point.family == "gpt2",
        "learned_position_embeddings": point.family == "gpt2",
        "num_params": num_params,
        "dtype": "bf16-autocast",
        "param_dtype": "fp32",
        "attn_implementation": attn,
        "optimizer": defaults["optim"],
        "optimizer_fused": fused,
        "max_grad_norm": defaults["max_grad_norm"],
        "warmup_steps": warmup,
        "timed_steps": steps,
        "step_time_median_s": statistics.median(times),
        "step_time_mean_s": statistics.fmean(times),
        "step_time_min_s": min(times),
        "wall_mean_s": wall / steps,
        "step_times_s": times,
        "steady_allocated_bytes": steady_allocated,
        "peak_allocated_bytes": peak_allocated,
        "peak_reserved_bytes": peak_reserved,
        "final_loss": final_loss,
        "tokens_per_s": point.batch * point.seq_len / statistics.median(times),
    }


def skipped(point: ModelPoint, reason: str) -> dict[str, Any]:
    return {"name": point.name, "status": "skipped", "reason": reason, **dataclasses.asdict(point)}


def _release(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def measure_with_trainer(
    point: ModelPoint, device: str, warmup: int, steps: int, seed: int
) -> dict[str, Any]:
    """The same point through ``transformers.Trainer`` itself (``bf16=True``, defaults
    otherwise), timed by a callback between successive ``on_step_begin`` calls (so it also
    counts Trainer's data loading, collation and bookkeeping), to check the manual loop."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    cuda = device.startswith("cuda")
    torch.manual_seed(seed)
    model = build_model(point, device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    data = [
        {"input_ids": ids, "labels": ids}
        for ids in (
            torch.randint(0, point.vocab_size, (point.seq_len,), generator=generator)
            for _ in range(point.batch * (warmup + steps + 1))
        )
    ]
    stamps: list[Any] = []
    peaks: dict[str, int] = {}

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == warmup and cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            if state.global_step >= warmup:
                if cuda:
                    event = torch.cuda.Event(enable_timing=True)
                    event.record()
                    stamps.append(event)
                else:
                    stamps.append(time.perf_counter())

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                event = torch.cuda.Event(enable_timing=True)
                event.record()
                stamps.append(event)
                torch.cuda.synchronize()
                peaks["allocated"] = torch.cuda.max_memory_allocated()
                peaks["reserved"] = torch.cuda.max_memory_reserved()
            else:
                stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=point.batch,
            max_steps=warmup + steps,
            bf16=True,
            use_cpu=not cuda,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            seed=seed,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[Clock()])
        trainer.train()
        optim = str(getattr(args.optim, "value", args.optim))
    if cuda:
        times = [a.elapsed_time(b) / 1e3 for a, b in itertools.pairwise(stamps)]
    else:
        times = [b - a for a, b in itertools.pairwise(stamps)]
    del trainer, model, data
    return {
        "name": point.name + "-trainer",
        "status": "ok",
        "reason": "",
        "runner": "transformers.Trainer",
        "optimizer": optim,
        "step_time_median_s": statistics.median(times),
        "step_time_mean_s": statistics.fmean(times),
        "step_times_s": times,
        "peak_allocated_bytes": peaks.get("allocated"),
        "peak_reserved_bytes": peaks.get("reserved"),
    }


# --- environment and output --------------------------------------------------------------------


def environment(device: str, argv: list[str]) -> dict[str, Any]:
    import torch
    import transformers

    env: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *argv]),
        "cwd": os.getcwd(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device,
        "cpu_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        env.update(
            device_name=torch.cuda.get_device_name(),
            device_memory_bytes=props.total_memory,
            multiprocessors=props.multi_processor_count,
            capability=f"{props.major}.{props.minor}",
            cuda_runtime=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            driver=_driver_version(),
            sdpa_flash_enabled=torch.backends.cuda.flash_sdp_enabled(),
            sdpa_mem_efficient_enabled=torch.backends.cuda.mem_efficient_sdp_enabled(),
        )
    else:
        env["device_name"] = platform.processor() or "cpu"
    return env


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None


CSV_FIELDS = (
    "name", "status", "reason", "family", "num_layers", "hidden_size", "num_attention_heads",
    "num_kv_heads", "ffn_hidden_size", "ffn_type", "vocab_size", "seq_len", "batch",
    "tie_embeddings", "learned_position_embeddings", "num_params", "dtype", "param_dtype",
    "attn_implementation", "optimizer", "optimizer_fused", "max_grad_norm", "warmup_steps",
    "timed_steps", "step_time_median_s", "step_time_mean_s", "step_time_min_s", "wall_mean_s",
    "steady_allocated_bytes", "peak_allocated_bytes", "peak_reserved_bytes", "tokens_per_s",
    "final_loss",
)  # fmt: skip


def write_csv(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})


# --- the comparison with deepflow --------------------------------------------------------------


def predictions(
    rows: list[dict[str, Any]], device_name: str, accelerator: str | None
) -> tuple[list[dict[str, Any]], str]:
    """deepflow's prediction for each measured row, or ([], why it was skipped). Imported
    only now, after the measuring, so that a missing dependency of deepflow costs nothing
    but this comparison."""
    try:
        from deepflow.validation.hf_step import accelerator_for_device, compare
    except Exception as exc:  # any import failure only skips the comparison
        return [], f"deepflow could not be imported ({type(exc).__name__}: {exc})"
    name = accelerator or accelerator_for_device(device_name)
    if name is None:
        return [], f"no deepflow accelerator preset lists the device name {device_name!r}"
    out = []
    for row in rows:
        if row.get("status") != "ok":
            continue
        try:
            out.append(compare(row, name))
        except Exception as exc:  # report, keep the other rows
            out.append({"name": row["name"], "error": f"{type(exc).__name__}: {exc}"})
    return out, ""


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def print_table(rows: list[dict[str, Any]], preds: list[dict[str, Any]]) -> None:
    by_name = {p["name"]: p for p in preds}
    head = (
        f"{'row':34} {'meas ms':>9} {'pred ms':>9} {'err':>7}  "
        f"{'alloc GiB':>9} {'resv GiB':>9} {'pred GiB':>9} {'err':>7}"
    )
    print(head)
    for row in rows:
        if row.get("status") != "ok":
            print(f"{row['name']:34} skipped: {row.get('reason')}")
            continue
        p = by_name.get(row["name"], {})
        pred_t = p.get("predicted_step_time_s")
        print(
            f"{row['name']:34} {1e3 * row['step_time_median_s']:9.1f} "
            f"{'-' if pred_t is None else f'{1e3 * pred_t:9.1f}':>9} "
            f"{_pct(p.get('step_time_error')):>7}  "
            f"{_gib(row.get('peak_allocated_bytes')):>9} {_gib(row.get('peak_reserved_bytes')):>9} "
            f"{_gib(p.get('predicted_peak_memory_bytes')):>9} {_pct(p.get('peak_memory_error')):>7}"
            + (f"  ({p['error']})" if "error" in p else "")
            + ("" if p.get("feasible", True) else f"  infeasible: {p.get('reason')}")
        )


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--tiny", action="store_true", help="tiny models (CPU mechanics check)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (3; tiny 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (10; tiny 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated families (llama,gpt2)")
    parser.add_argument("--max-memory-gib", type=float, default=80.0)
    parser.add_argument("--time-budget-s", type=float, default=180.0)
    parser.add_argument(
        "--trainer-check",
        choices=("auto", "yes", "no"),
        default="auto",
        help="also run transformers.Trainer on one row (auto: on the GPU, if accelerate exists)",
    )
    parser.add_argument(
        "--accelerator", default=None, help="deepflow accelerator preset (default: from device)"
    )
    args = parser.parse_args(argv[1:])
    t_start = time.perf_counter()
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    steps = args.steps if args.steps is not None else (2 if args.tiny else 10)
    if warmup < 0 or steps < 1:
        parser.error("--warmup must be >= 0 and --steps >= 1")

    import torch

    device = args.device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("framework_step: --device cuda but torch.cuda.is_available() is False")
            return 2
        if ":" in device:
            torch.cuda.set_device(torch.device(device))
        free, total = torch.cuda.mem_get_info()
        cap = min(0.95 * free, args.max_memory_gib * 2**30)
        torch.cuda.set_per_process_memory_fraction(cap / total)
    else:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    defaults = trainer_defaults()
    env = environment(device, argv)
    if device.startswith("cuda"):
        env["memory_cap_bytes"] = int(cap)
    env["trainer_defaults"] = defaults
    print(
        f"device {env['device_name']}, torch {env['torch']}, transformers {env['transformers']}, "
        f"optimizer {defaults['optim']}, {warmup} warm-up + {steps} timed steps"
    )

    points = TINY_POINTS if args.tiny else GPU_POINTS
    if args.only:
        keep = {f.strip() for f in args.only.split(",")}
        points = tuple(p for p in points if p.family in keep)
    rows: list[dict[str, Any]] = []
    oom = _memory_error_types()
    for point in points:
        if time.perf_counter() - t_start > args.time_budget_s:
            rows.append(skipped(point, f"time budget of {args.time_budget_s:.0f} s spent"))
            continue
        t0 = time.perf_counter()
        try:
            row = measure(point, device, defaults, warmup, steps, args.seed)
        except oom as exc:
            row = skipped(point, f"out of memory: {str(exc).splitlines()[0][:200]}")
        _release(device)
        row["row_wall_s"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        if row["status"] == "ok":
            print(
                f"  {point.name}: {1e3 * row['step_time_median_s']:.1f} ms median, "
                f"{1e3 * row['step_time_mean_s']:.1f} ms mean, "
                f"peak {_gib(row['peak_allocated_bytes'])} GiB allocated, "
                f"{_gib(row['peak_reserved_bytes'])} GiB reserved ({row['row_wall_s']} s)"
            )
        else:
            print(f"  {point.name}: skipped, {row['reason']}")

    trainer_rows: list[dict[str, Any]] = []
    want_trainer = args.trainer_check == "yes" or (
        args.trainer_check == "auto" and device.startswith("cuda")
    )
    if want_trainer and points:
        point = points[1] if len(points) > 1 else points[0]
        if time.perf_counter() - t_start > args.time_budget_s:
            trainer_rows.append(skipped(point, "time budget spent"))
        else:
            try:
                trainer_rows.append(measure_with_trainer(point, device, warmup, steps, args.seed))
            except (ImportError, oom) as exc:
                trainer_rows.append(skipped(point, f"{type(exc).__name__}: {exc}"[:300]))
            except Exception as exc:  # Trainer needs accelerate etc.; never lose the rows
                trainer_rows.append(skipped(point, f"{type(exc).__name__}: {exc}"[:300]))
            _release(device)
        tr = trainer_rows[-1]
        manual = next((r for r in rows if r["name"] == point.name and r["status"] == "ok"), None)
        if tr["status"] == "ok" and manual is not None:
            tr["ratio_to_manual_loop"] = tr["step_time_median_s"] / manual["step_time_median_s"]
            print(
                f"  Trainer on {point.name}: {1e3 * tr['step_time_median_s']:.1f} ms median "
                f"({tr['ratio_to_manual_loop']:.3f} x the manual loop), peak "
                f"{_gib(tr['peak_allocated_bytes'])} GiB allocated"
            )
        else:
            print(f"  Trainer check skipped: {tr.get('reason')}")

    args.out.mkdir(parents=True, exist_ok=True)
    env["measure_wall_s"] = round(time.perf_counter() - t_start, 1)
    preds, why = predictions(rows, env["device_name"], args.accelerator)
    write_csv(args.out / "measurements.csv", rows, CSV_FIELDS)
    document = {
        "environment": env,
        "rows": rows,
        "trainer_check": trainer_rows,
        "predictions": preds,
        "predictions_skipped": why,
    }
    (args.out / "measurements.json").write_text(json.dumps(document, indent=1) + "\n")
    if preds:
        fields = tuple(dict.fromkeys(k for p in preds for k in p))
        write_csv(args.out / "predictions.csv", preds, fields)
        print()
        print_table(rows, preds)
        from deepflow.validation.hf_step import mean_abs_errors

        errors = mean_abs_errors([p for p in preds if "error" not in p])
        print(
            "mean |error|: "
            + ", ".join(
                f"{k.removesuffix('_error')} {'-' if v is None else f'{100 * v:.1f}%'}"
                for k, v in errors.items()
            )
        )
    else:
        print(f"deepflow comparison skipped: {why}")
    print(f"wrote {args.out}/measurements.csv and measurements.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
