"""The single-GPU Hugging Face step benchmark (``bench/framework_step.py``) and the
comparison it shares with a validation data set (``deepflow.validation.hf_step``).

The script's CPU path trains a tiny Llama and a tiny GPT-2 with the same code as the GPU
run (mechanics only: timings on a shared CPU mean nothing); the comparison is checked on
rows read back from the files the script wrote, as a data set would read them."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepflow.specs import StrategySpec
from deepflow.validation.hf_step import (
    FRAMEWORK,
    accelerator_for_device,
    compare,
    scenario,
    scenario_dict,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "framework_step.py"

LLAMA_ROW = {
    "name": "llama-l16-h2048-b2-s1024",
    "num_layers": 16,
    "hidden_size": 2048,
    "num_attention_heads": 16,
    "num_kv_heads": 4,
    "ffn_hidden_size": 5504,
    "ffn_type": "swiglu",
    "vocab_size": 32000,
    "seq_len": 1024,
    "batch": 2,
    "tie_embeddings": False,
    "learned_position_embeddings": False,
    "step_time_median_s": 0.1,
    "peak_allocated_bytes": 20e9,
    "peak_reserved_bytes": 22e9,
}


@pytest.mark.parametrize(
    ("device", "preset"),
    [
        ("NVIDIA H200", "h200-sxm-141gb"),
        ("NVIDIA H200 141GB", "h200-sxm-141gb"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm5-80gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
        ("NVIDIA H2000", None),
        ("cpu", None),
    ],
)
def test_accelerator_for_device(device: str, preset: str | None) -> None:
    assert accelerator_for_device(device) == preset


def test_scenario_is_one_gpu_hf_step() -> None:
    s = scenario(LLAMA_ROW, "h200-sxm-141gb")
    assert s.system.num_accelerators == 1
    assert s.system.accelerator.name == "h200-sxm-141gb"
    assert (s.dp, s.strategy.tp, s.strategy.pp, s.strategy.zero) == (1, 1, 1, 0)
    assert s.strategy.micro_batch_size == s.training.global_batch_size == 2
    assert s.model.num_kv_heads == 4 and s.model.ffn_type.value == "swiglu"
    assert s.model.seq_len == 1024 and not s.model.tie_embeddings
    if "framework" in StrategySpec.model_fields:
        assert s.strategy.framework == FRAMEWORK
    else:
        assert s.strategy.fused_epilogues is False and s.strategy.flash_attention is True


def test_scenario_rejects_an_incomplete_row() -> None:
    row = {k: v for k, v in LLAMA_ROW.items() if k != "vocab_size"}
    with pytest.raises(KeyError, match="vocab_size"):
        scenario_dict(row, "h200-sxm-141gb")


@given(
    batch=st.integers(1, 16),
    seq=st.sampled_from([256, 1024, 4096]),
    measured=st.floats(1e-3, 10.0),
    gpt2=st.booleans(),
)
def test_compare_errors_are_prediction_over_measurement(
    batch: int, seq: int, measured: float, gpt2: bool
) -> None:
    """Whatever the row, the scenario carries its batch and sequence, and each error is
    predicted / measured - 1 of the values compare() reports."""
    row = dict(LLAMA_ROW, batch=batch, seq_len=seq, step_time_median_s=measured)
    if gpt2:
        row.update(
            num_layers=24, hidden_size=1536, num_attention_heads=12, num_kv_heads=12,
            ffn_hidden_size=6144, ffn_type="gelu", vocab_size=50257, tie_embeddings=True,
            learned_position_embeddings=True,
        )  # fmt: skip
    s = scenario(row, "h200-sxm-141gb")
    assert (s.strategy.micro_batch_size, s.training.global_batch_size, s.model.seq_len) == (
        batch,
        batch,
        seq,
    )
    out = compare(row, "h200-sxm-141gb")
    if not out["feasible"]:
        assert out["reason"] and out["step_time_error"] is None
        return
    assert out["step_time_error"] == pytest.approx(out["predicted_step_time_s"] / measured - 1)
    assert out["peak_memory_error"] == pytest.approx(
        out["predicted_peak_memory_bytes"] / row["peak_allocated_bytes"] - 1
    )
    parts = [
        v
        for k, v in out.items()
        if k.startswith("predicted_") and k.endswith("_s") and k != "predicted_step_time_s"
    ]
    assert sum(parts) == pytest.approx(out["predicted_step_time_s"])


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("fw")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    trainer = "yes" if importlib.util.find_spec("accelerate") else "no"
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(out)]
    cmd += ["--accelerator", "h200-sxm-141gb", "--trainer-check", trainer]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_cpu_run_writes_measurements_and_environment(cpu_run: Path) -> None:
    doc = json.loads((cpu_run / "measurements.json").read_text())
    env = doc["environment"]
    for key in ("date_utc", "command", "torch", "transformers", "device", "trainer_defaults"):
        assert env[key]
    assert "--tiny" in env["command"]
    assert env["trainer_defaults"]["max_grad_norm"] == 1.0
    rows = doc["rows"]
    assert [r["family"] for r in rows] == ["llama", "gpt2"]
    for r in rows:
        assert r["status"] == "ok", r["reason"]
        assert r["optimizer"] == env["trainer_defaults"]["optim"]
        assert r["attn_implementation"] == "sdpa"
        assert len(r["step_times_s"]) == r["timed_steps"] == 2
        assert 0 < r["step_time_min_s"] <= r["step_time_median_s"]
        assert math.isfinite(r["final_loss"])
    assert rows[1]["tie_embeddings"] and not rows[0]["tie_embeddings"]
    with (cpu_run / "measurements.csv").open() as fh:
        assert [r["name"] for r in csv.DictReader(fh)] == [r["name"] for r in rows]
    if doc["trainer_check"]:
        assert doc["trainer_check"][0]["status"] == "ok", doc["trainer_check"][0]["reason"]


def test_cpu_run_prediction_matches_a_row_read_back_from_csv(cpu_run: Path) -> None:
    """The script's comparison equals compare() on the CSV row: a data set that reads the
    committed file gets the same numbers as the script printed."""
    doc = json.loads((cpu_run / "measurements.json").read_text())
    assert doc["predictions_skipped"] == ""
    with (cpu_run / "measurements.csv").open() as fh:
        csv_rows = list(csv.DictReader(fh))
    for pred, row in zip(doc["predictions"], csv_rows, strict=True):
        assert pred["feasible"] and pred["predicted_step_time_s"] > 0
        again = compare(row, "h200-sxm-141gb")
        assert again["predicted_step_time_s"] == pytest.approx(pred["predicted_step_time_s"])
        assert again["predicted_peak_memory_bytes"] == pred["predicted_peak_memory_bytes"]


def test_h200_measurements_ship_complete_and_consistent() -> None:
    """The shipped H200 rows: every point measured, CSV and JSON agree, the environment names
    the device the accelerator preset matches, and each row becomes a feasible scenario."""
    from importlib import resources

    from deepflow.validation.hf_step import DATA_FOLDERS, measured_rows

    rows = measured_rows("hf_step_h200")
    assert len(rows) == 7
    assert {r["family"] for r in rows} == {"llama", "gpt2"}
    doc = json.loads(
        (
            resources.files("deepflow.validation") / "data" / "hf_step_h200" / "measurements.json"
        ).read_text("utf-8")
    )
    assert accelerator_for_device(doc["environment"]["device_name"]) == DATA_FOLDERS["hf_step_h200"]
    for row, full in zip(rows, doc["rows"], strict=True):
        assert row["name"] == full["name"]
        assert float(row["step_time_median_s"]) == full["step_time_median_s"]
        assert len(full["step_times_s"]) == full["timed_steps"] == 10
        assert int(row["peak_allocated_bytes"]) <= int(row["peak_reserved_bytes"])
        out = compare(row, DATA_FOLDERS["hf_step_h200"])
        assert out["feasible"], out["reason"]
        assert out["step_time_error"] is not None and out["peak_memory_error"] is not None


def test_mean_abs_errors() -> None:
    from deepflow.validation.hf_step import mean_abs_errors

    rows = [
        {"step_time_error": -0.2, "peak_memory_error": 0.1, "peak_reserved_error": None},
        {"step_time_error": 0.4, "peak_memory_error": None, "peak_reserved_error": None},
    ]
    assert mean_abs_errors(rows) == pytest.approx(
        {"step_time_error": 0.3, "peak_memory_error": 0.1, "peak_reserved_error": None}
    )
    with pytest.raises(KeyError, match="known"):
        from deepflow.validation.hf_step import measured_rows

        measured_rows("nope")
