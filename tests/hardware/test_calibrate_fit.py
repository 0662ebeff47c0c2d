"""``deepflow calibrate --fit``: a table measured elsewhere -> a fitted calibration file, the
fit of scripts/fit_kernels.py (one function), and its effect on a prediction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from deepflow.cli import main
from deepflow.hardware.calibration import fit_kernel_params, measured_calibration
from deepflow.specs import accelerator_from

H100 = accelerator_from("h100-sxm5-80gb")


def _table(path: Path, eta: float) -> Path:
    """A measurement CSV of bf16 GEMMs at ``eta`` of the H100's dense peak, and a copy."""
    rows = ["kind,dtype,m,n,k,groups,op,bytes,time_s"]
    for m, n, k in [(1024, 1024, 1024), (2048, 4096, 4096), (4096, 4096, 4096),
                    (8192, 8192, 8192), (4096, 14336, 4096), (16384, 4096, 8192)]:  # fmt: skip
        t = 2.0 * m * n * k / (eta * 989.4e12) + 5e-6
        rows.append(f"gemm,bf16,{m},{n},{k},1,,,{t}")
    rows.append("memory,,,,,,copy,4e9,0.0016")
    path.write_text("\n".join(rows) + "\n")
    return path


def _predict(tmp_path: Path, calibration: str | None) -> float:
    acc: dict = {"preset": "h100-sxm5-80gb"}
    if calibration:
        acc["calibration"] = calibration
    scenario = {
        "model": {"preset": "llama3-8b", "num_layers": 2},
        "system": {"preset": "dgx-h100", "num_accelerators": 8, "accelerator": acc},
        "strategy": {"tp": 8, "precision": "bf16"},
        "training": {"global_batch_size": 8},
    }
    path = tmp_path / f"s-{calibration}.yaml"
    path.write_text(yaml.safe_dump(scenario))
    r = CliRunner().invoke(main, ["predict", str(path), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)["step_time_s"]


def test_fit_a_csv_table_and_slower_gemms_lengthen_the_step(tmp_path: Path) -> None:
    for eta, name in ((0.7, "fast"), (0.35, "slow")):
        table = _table(tmp_path / f"{name}.csv", eta)
        r = CliRunner().invoke(
            main,
            ["calibrate", "--fit", str(table), "--accelerator", "h100-sxm5-80gb",
             "--out", str(tmp_path / f"{name}.yaml")],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
    fast = yaml.safe_load((tmp_path / "fast.yaml").read_text())
    slow = yaml.safe_load((tmp_path / "slow.yaml").read_text())
    assert fast["device"]["name"] == "NVIDIA H100 80GB HBM3"
    assert fast["fitted"]["gemm"]["bf16"]["peak_fraction"] == pytest.approx(
        2 * slow["fitted"]["gemm"]["bf16"]["peak_fraction"], rel=0.1
    )
    t_fast = _predict(tmp_path, "fast.yaml")
    t_slow = _predict(tmp_path, "slow.yaml")
    assert t_slow > 1.2 * t_fast


def test_fit_is_the_function_of_the_shipped_tables(tmp_path: Path) -> None:
    """``--fit`` on the measured H200 file writes the curves fit_kernel_params gives (the
    function scripts/fit_kernels.py fits the shipped tables with) and keeps the
    measurements; the device name selects the preset."""
    data = measured_calibration("h200-sxm-141gb")
    src = tmp_path / "h200.json"
    src.write_text(json.dumps({k: v for k, v in data.items() if k != "fitted"}))
    out = tmp_path / "fitted.yaml"
    r = CliRunner().invoke(main, ["calibrate", "--fit", str(src), "--out", str(out)])
    assert r.exit_code == 0, r.output
    written = yaml.safe_load(out.read_text())
    assert written["environment"]["fit"]["accelerator"] == "h200-sxm-141gb"
    assert written["measurements"] == data["measurements"]
    expected = fit_kernel_params(data["measurements"], accelerator_from("h200-sxm-141gb"))
    assert written["fitted"]["gemm"] == expected.model_dump(mode="json")["gemm"]
    # the shipped file's own fitted block is the same fit
    assert data["fitted"]["gemm"] == written["fitted"]["gemm"]


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("schema: deepflow.calibration/1\nmeasurements: [{kind: gemm, dtype: bf16, m: 8, n: 8, k: 8, time_s: -1}]\n", "measurements[0].time_s"),
        ("schema: other/1\nmeasurements: []\n", "schema"),
        ("schema: deepflow.calibration/1\nmeasurements: [{kind: gemm, dtype: bf16, m: 8, n: 8, time_s: 1}]\n", "measurements[0].k"),
        ("schema: [unclosed\n", "not valid YAML"),
    ],
)  # fmt: skip
def test_bad_tables_exit_2_naming_the_file_and_field(tmp_path: Path, content, field) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    r = CliRunner().invoke(
        main, ["calibrate", "--fit", str(bad), "--accelerator", "h100-sxm5-80gb",
               "--out", str(tmp_path / "o.yaml")],
    )  # fmt: skip
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert "bad.yaml" in r.output and field in r.output


def test_fit_refuses_a_csv_output(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv", 0.7)
    r = CliRunner().invoke(
        main, ["calibrate", "--fit", str(table), "--accelerator", "h100-sxm5-80gb",
               "--out", str(tmp_path / "o.csv")],
    )  # fmt: skip
    assert r.exit_code == 2 and "--out" in r.output
