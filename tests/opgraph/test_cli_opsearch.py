"""``deepflow search-ops``."""

import json

from click.testing import CliRunner

from deepflow.cli.app import main


def test_search_ops_json() -> None:
    r = CliRunner().invoke(main, ["search-ops", "rnntc", "--budget", "60", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["best_s"] <= out["data_parallel_s"]
    assert out["speedup"] >= 1.0
    assert len(out["ops"]) == 14 and {"op", "degrees", "devices"} <= set(out["ops"][0])


def test_search_ops_text_and_bad_input() -> None:
    r = CliRunner().invoke(main, ["search-ops", "alexnet", "--budget", "30"])
    assert r.exit_code == 0, r.output
    assert "speed-up" in r.output and "data parallel" in r.output
    bad = CliRunner().invoke(main, ["search-ops", "alexnet", "--gpus", "10", "--nodes", "4"])
    assert bad.exit_code == 2


def test_search_ops_sync_after_backward_is_slower_for_data_parallel() -> None:
    args = ["search-ops", "alexnet", "--budget", "0", "--json"]
    over = json.loads(CliRunner().invoke(main, args).output)
    after = json.loads(CliRunner().invoke(main, [*args, "--sync", "after-backward"]).output)
    assert over["sync"] == "overlapped" and after["sync"] == "after-backward"
    assert after["data_parallel_s"] > over["data_parallel_s"]


def test_search_ops_kernel_parallel_lstm_lm_fits_64_v100s() -> None:
    from click.testing import CliRunner

    from deepflow.cli import main

    args = ["search-ops", "lstm-lm", "--gpus", "64", "--nodes", "8", "--batch", "4096"]
    args += ["--precision", "fp16", "--budget", "200", "--quiet"]
    plain = CliRunner().invoke(main, args)
    assert plain.exit_code == 0, plain.output
    assert "does not fit in memory" in plain.output and "infeasible" in plain.output
    kp = CliRunner().invoke(main, [*args, "--kernel-parallel"])
    assert kp.exit_code == 0, kp.output
    assert "infeasible" not in kp.output and " CR" in kp.output


CPU_ACCELERATOR = {
    "name": "host-cpu",
    "vendor": "any",
    "peak_flops": {"fp32": "2 TFLOP/s", "tf32": "2 TFLOP/s", "fp16": "2 TFLOP/s",
                   "bf16": "2 TFLOP/s", "fp8": 0},
    "memory_capacity": "64 GiB",
    "memory_bandwidth": "100 GB/s",
    "compute_units": 2,
    "sources": ["nominal figures for a CI test; the calibration file sets the kernel times"],
}  # fmt: skip


def test_search_ops_takes_a_cpu_calibration_file(tmp_path) -> None:
    """``deepflow calibrate --device cpu --quick --accelerator cpu.yaml`` writes fitted
    GEMM and streaming curves; ``search-ops --accelerator cpu.yaml --calibration FILE``
    prices the operators on them (as a GPU's calibration file would on its preset), and a
    file whose device does not match the accelerator is refused with exit 2."""
    import yaml

    from deepflow.hardware.calibrate.environment import _cpu_name

    acc = tmp_path / "cpu.yaml"
    acc.write_text(yaml.safe_dump({**CPU_ACCELERATOR, "device_names": [_cpu_name()]}))
    cal = tmp_path / "cal.yaml"
    r = CliRunner().invoke(
        main,
        ["calibrate", "--device", "cpu", "--quick", "--only", "gemm,memory",
         "--accelerator", str(acc), "--out", str(cal)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    args = ["search-ops", "alexnet", "--gpus", "4", "--nodes", "1", "--budget", "0", "--json"]
    args += ["--accelerator", str(acc)]
    plain = json.loads(CliRunner().invoke(main, args).output)
    calibrated = CliRunner().invoke(main, [*args, "--calibration", str(cal)])
    assert calibrated.exit_code == 0, calibrated.output
    out = json.loads(calibrated.output)
    assert plain["gemm_curve"] == "efficiency block"
    assert out["gemm_curve"] == f"calibration {cal}" and out["accelerator"] == "host-cpu"
    assert out["data_parallel_s"] != plain["data_parallel_s"] and out["data_parallel_s"] > 0
    wrong = CliRunner().invoke(
        main, ["search-ops", "alexnet", "--system", "dgx-a100-80gb", "--budget", "0",
               "--calibration", str(cal)],
    )  # fmt: skip
    assert wrong.exit_code == 2
    assert "device.name" in wrong.output and "does not match" in wrong.output
