"""Calibration files in scenarios and `deepflow kernels`: effects, and errors that name the
file and the field."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from deepflow.cli import main
from deepflow.estimate import predict
from deepflow.hardware.calibration import fitted_calibration, read_measurements_csv
from deepflow.hardware.kernels import shipped_table
from deepflow.specs import accelerator_from, load_scenario

SCENARIO = {
    "model": {"preset": "llama3-70b", "num_layers": 4, "seq_len": 4096},
    "system": {"preset": "dgx-b200", "num_accelerators": 8, "accelerator": {"preset": "b200"}},
    "strategy": {"tp": 8, "pp": 1, "dp": 1, "sequence_parallel": True, "precision": "bf16"},
    "training": {"global_batch_size": 8},
}


def _calibration(slowdown: float = 1.0, **changes) -> dict:
    fitted = shipped_table("b200").model_dump(mode="json")
    for curve in fitted["gemm"].values():
        curve["peak_fraction"] = round(curve["peak_fraction"] / slowdown, 4)
    data = {
        "schema": "deepflow.calibration/1",
        "device": {"name": "NVIDIA B200", "backend": "cuda", "count": 1},
        "environment": {"torch": "2.x"},
        "measurements": [
            {
                "kind": "gemm",
                "dtype": "bf16",
                "m": 4096,
                "n": 4096,
                "k": 4096,
                "groups": 1,
                "time_s": 1.2e-4,
                "repeats": 20,
            },
        ],
        "fitted": fitted,
    }
    data.update(changes)
    return data


def _write(tmp_path, calibration: dict) -> str:
    (tmp_path / "cal.yaml").write_text(yaml.safe_dump(calibration))
    scenario = json.loads(json.dumps(SCENARIO))
    scenario["system"]["accelerator"]["calibration"] = "cal.yaml"
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return str(path)


def test_a_slower_calibration_slows_the_prediction(tmp_path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(SCENARIO))
    t0 = predict(load_scenario(base)).step_time_s
    same = predict(load_scenario(_write(tmp_path, _calibration(1.0)))).step_time_s
    slow = predict(load_scenario(_write(tmp_path, _calibration(2.0)))).step_time_s
    assert same == pytest.approx(t0, rel=1e-9)
    assert slow > 1.2 * t0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schema": "deepflow.calibration/0"}, "schema"),
        ({"device": {"name": "NVIDIA H100 80GB HBM3"}}, "device.name"),
        (
            {
                "measurements": [
                    {"kind": "gemm", "dtype": "bf16", "m": 8, "n": 8, "k": 8, "time_s": -1.0}
                ]
            },
            "measurements[0].time_s",
        ),
        (
            {"measurements": [{"kind": "gemm", "dtype": "bf16", "m": 8, "n": 8, "time_s": 1.0}]},
            "measurements[0].k",
        ),
        (
            {
                "measurements": [
                    {
                        "kind": "attention",
                        "dtype": "bf16",
                        "batch": 1,
                        "heads": 1,
                        "seq": 8,
                        "head_dim": 8,
                        "causal": True,
                        "backward": False,
                        "time_s": float("nan"),
                    }
                ]
            },
            "measurements[0].time_s",
        ),
        ({"fitted": None}, "fitted"),
    ],
)
def test_bad_calibration_files_exit_2_naming_file_and_field(tmp_path, change, field) -> None:
    path = _write(tmp_path, _calibration(**change))
    result = CliRunner().invoke(main, ["predict", path, "--json"])
    assert result.exit_code == 2
    message = result.output.strip()
    assert len(message.splitlines()) == 1
    assert "cal.yaml" in message
    assert field in message


def test_device_names_match_by_prefix() -> None:
    from deepflow.specs.kernels import device_matches

    assert device_matches("NVIDIA H200 141GB", ("NVIDIA H200",))
    assert device_matches("nvidia  h200", ("NVIDIA H200",))
    assert not device_matches("NVIDIA H2000", ("NVIDIA H200",))
    assert device_matches("anything", ())


def test_fit_from_a_measurement_table_round_trips(tmp_path) -> None:
    """A flat measurement CSV -> fitted calibration -> a scenario uses it."""
    rows = ["kind,dtype,m,n,k,groups,op,bytes,time_s"]
    acc = accelerator_from("h100-sxm5-80gb")
    for n in (1024, 2048, 4096, 8192):
        t = 2.0 * n**3 / (0.5 * 989.4e12) + 5e-6
        rows.append(f"gemm,bf16,{n},{n},{n},1,,,{t}")
    rows.append("memory,,,,,,copy,4e9,0.0016")
    records = read_measurements_csv("\n".join(rows) + "\n", "m.csv")
    cal = fitted_calibration(records, acc)
    assert cal["fitted"]["gemm"]["bf16"]["peak_fraction"] < 0.6
    # one 4 GB copy: its bandwidth less the launch latency (the latency is not fitted)
    t0 = acc.efficiency.kernel_overhead
    assert cal["fitted"]["memory"]["fraction"] == pytest.approx(
        4e9 / (0.0016 - t0) / acc.memory_bandwidth, rel=1e-3
    )
    (tmp_path / "cal.yaml").write_text(yaml.safe_dump(cal))
    scenario = {
        "model": {"preset": "llama3-8b", "num_layers": 2},
        "system": {
            "preset": "dgx-h100",
            "num_accelerators": 8,
            "accelerator": {"preset": "h100-sxm5-80gb", "calibration": "cal.yaml"},
        },
        "strategy": {"tp": 8, "precision": "bf16"},
        "training": {"global_batch_size": 8},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    s = load_scenario(tmp_path / "s.yaml")
    assert s.system.accelerator.calibration is not None
    assert predict(s).feasible


def test_kernels_cli_json_keys_and_errors() -> None:
    runner = CliRunner()
    r = runner.invoke(
        main,
        [
            "kernels",
            "gemm",
            "8192",
            "8192",
            "8192",
            "--accelerator",
            "h100-sxm5-80gb",
            "--dtype",
            "fp8",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out) == {"time_s", "tflops", "efficiency", "bound"}
    assert out["bound"] == "compute"
    assert 0.55 < out["efficiency"] < 0.72  # Azure: 1,290 of 1,979 TFLOP/s
    r = runner.invoke(
        main,
        [
            "kernels",
            "attention",
            "--batch",
            "1",
            "--heads",
            "64",
            "--kv-heads",
            "8",
            "--seq",
            "4096",
            "--head-dim",
            "128",
            "--causal",
            "--backward",
            "--accelerator",
            "b200",
            "--dtype",
            "bf16",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.output)) == {"time_s", "tflops", "efficiency", "bound"}
    for args, needle in [
        (["gemm", "0", "8", "8", "--accelerator", "b200"], "m: must be a positive integer"),
        (["gemm", "8", "8.5", "8", "--accelerator", "b200"], "n: must be a positive integer"),
        (["gemm", "8", "8", "1e12", "--accelerator", "b200"], "k: must be at most"),
        (["gemm", "8", "8", "8", "--accelerator", "b2000"], "accelerator"),
        (["gemm", "8", "8", "8", "--accelerator", "b200", "--dtype", "int4"], "dtype"),
        (["gemm", "8", "8", "8", "--accelerator", "a100-sxm4-80gb", "--dtype", "fp8"], "dtype"),
    ]:
        r = runner.invoke(main, ["kernels", *args])
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output
        assert len(r.output.strip().splitlines()) == 1
