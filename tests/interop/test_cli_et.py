"""``deepflow et``: inspect, simulate, convert; malformed input exits 2 naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from deepflow.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ASTRA = FIXTURES / "astra-sim"
RT = ASTRA / "tests/rt_template"
CUSTOM = ASTRA / "examples/system/custom_collectives/custom_ring_allreduce_8npus_1MB"
ALL_REDUCE = ASTRA / "examples/workload/microbenchmarks/all_reduce/8npus_1MB/all_reduce"


def test_inspect_workload() -> None:
    paths = [str(CUSTOM / f"custom_allreduce.{r}.et") for r in range(8)]
    result = CliRunner().invoke(main, ["et", "inspect", *paths])
    assert result.exit_code == 0, result.output
    assert "35 nodes (COMM_RECV_NODE 14, COMM_SEND_NODE 14, COMP_NODE 7)" in result.output
    assert "ok: 8 trace(s) pass the checks" in result.output


def test_simulate_regression_case_json() -> None:
    args = ["et", "simulate", str(ALL_REDUCE), "--network", str(RT / "inputs/network_cfg.yml")]
    args += ["--system", str(RT / "inputs/system_cfg.json"), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["makespan_ns"] == 117_780


def test_convert_then_simulate(tmp_path: Path) -> None:
    out = tmp_path / "ring" / "ar"
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "et",
            "convert",
            str(CUSTOM / "custom_allreduce.xml"),
            "--size",
            "1MiB",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    for r in range(8):
        assert (
            Path(f"{out}.{r}.et").read_bytes() == (CUSTOM / f"custom_allreduce.{r}.et").read_bytes()
        )
    sim = runner.invoke(
        main,
        [
            "et", "simulate", str(out),
            "--network", str(ASTRA / "examples/network/analytical/Ring_8npus.yml"),
            "--system", str(ASTRA / "examples/system/custom_collectives/custom_collective.json"),
        ],
    )  # fmt: skip
    assert sim.exit_code == 0, sim.output
    assert "makespan 90174 ns" in sim.output


def test_malformed_inputs_exit_2_with_a_message(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_net = runner.invoke(
        main,
        [
            "et", "simulate", str(ALL_REDUCE),
            "--network", str(ASTRA / "inputs/network/dgx_v100_8gpu.yml"),
            "--system", str(RT / "inputs/system_cfg.json"),
        ],
    )  # fmt: skip
    assert bad_net.exit_code == 2
    assert "dgx_v100_8gpu.yml: bandwidth[0]: expected a number, found 'tbd'" in bad_net.output
    bad_et = tmp_path / "bad.0.et"
    bad_et.write_bytes(b"\x07\x0a\x05" + b"0.0.4" + b"\x05\x08\x01\x18\x04\x2a")
    result = runner.invoke(main, ["et", "inspect", str(bad_et)])
    assert result.exit_code == 2
    assert "bad.0.et: record 1" in result.output
