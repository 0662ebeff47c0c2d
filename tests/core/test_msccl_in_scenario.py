"""An MSCCL-IR algorithm as the algorithm of a scenario's collectives
(``strategy.collective_algorithms``): the estimator takes it through ``predict(...,
algorithms=...)``, the command line loads it from the scenario's XML files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from deepflow.cli import main
from deepflow.errors import ConfigError
from deepflow.estimate import predict
from deepflow.interop.msccl import msccl_algorithm, read_msccl, strategy_algorithms
from deepflow.network import Algorithm
from deepflow.specs.scenario import scenario_from_dict

MSCCL = Path(__file__).resolve().parents[1] / "fixtures" / "msccl"
RING = MSCCL / "ring_8_1.xml"  # 8-rank ring all-reduce, fused steps


def _data(**strategy: object) -> dict[str, object]:
    return {
        "model": "megatron-gpt-18.4b",
        "system": {"preset": "dgx-a100-80gb", "num_accelerators": 64},
        "strategy": {"tp": 8, "pp": 2, "dp": 4, **strategy},
        "training": {"global_batch_size": 64},
    }


def _write(folder: Path, name: str, data: dict[str, object]) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def ring() -> object:
    return msccl_algorithm(read_msccl(RING))


def test_default_path_is_unchanged() -> None:
    scenario = scenario_from_dict(_data())
    base = predict(scenario)
    assert predict(scenario, None) == base
    assert predict(scenario, {}) == base


@pytest.mark.parametrize("sequence_parallel", [False, True])
def test_msccl_ring_for_tp_matches_the_builtin_ring(ring, sequence_parallel: bool) -> None:  # type: ignore[no-untyped-def]
    scenario = scenario_from_dict(_data(sequence_parallel=sequence_parallel))
    builtin = predict(scenario)
    custom = predict(scenario, {"tp": ring})
    assert custom.feasible and builtin.feasible
    assert builtin.breakdown_s["tp_comm"] > 0
    assert custom.step_time_s == pytest.approx(builtin.step_time_s, rel=0.02)
    assert custom.breakdown_s["tp_comm"] == pytest.approx(builtin.breakdown_s["tp_comm"], rel=0.02)


def test_msccl_ring_for_dp_matches_the_builtin_ring(ring) -> None:  # type: ignore[no-untyped-def]
    # dp 8 inside one node: the gradient all-reduce runs the program
    data = _data(tp=1, pp=1, dp=8, overlap_grad_reduce=False)
    data["system"] = {"preset": "dgx-a100-80gb", "num_accelerators": 8}
    data["model"] = "megatron-gpt-1.7b"
    data["training"] = {"global_batch_size": 8}
    scenario = scenario_from_dict(data)
    builtin = predict(scenario)
    custom = predict(scenario, {"dp": ring})
    assert builtin.breakdown_s["dp_comm"] > 0
    assert custom.breakdown_s["dp_comm"] == pytest.approx(builtin.breakdown_s["dp_comm"], rel=0.02)
    assert custom.step_time_s == pytest.approx(builtin.step_time_s, rel=0.02)


def test_another_program_changes_the_tp_time() -> None:
    scenario = scenario_from_dict(_data())
    eight_rings = msccl_algorithm(read_msccl(MSCCL / "ring_1_8.xml"))
    assert predict(scenario, {"tp": eight_rings}).breakdown_s["tp_comm"] != pytest.approx(
        predict(scenario).breakdown_s["tp_comm"], rel=1e-6
    )


def test_built_in_algorithm_in_the_mapping_is_accepted() -> None:
    scenario = scenario_from_dict(_data())
    assert predict(scenario, {"tp": Algorithm.RING}) == predict(scenario)


def test_axis_without_collectives_is_rejected(ring) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"collective_algorithms\.pp"):
        predict(scenario_from_dict(_data()), {"pp": ring})


def test_spec_validates_keys_and_suffix() -> None:
    with pytest.raises(ConfigError, match=r"strategy\.collective_algorithms"):
        scenario_from_dict(_data(collective_algorithms={"tp": "ring.txt"}))
    with pytest.raises(ConfigError, match=r"strategy\.collective_algorithms"):
        scenario_from_dict(_data(collective_algorithms={"xp": "ring.xml"}))
    spec = scenario_from_dict(_data(collective_algorithms={"tp": "ring.xml"})).strategy
    assert spec.collective_algorithms == {"tp": "ring.xml"}


def test_loader_resolves_relative_paths_and_checks_degree(tmp_path: Path) -> None:
    shutil.copy(RING, tmp_path / "ring.xml")
    spec = scenario_from_dict(_data(collective_algorithms={"tp": "ring.xml"})).strategy
    algos = strategy_algorithms(spec, tmp_path)
    assert set(algos) == {"tp"} and algos["tp"].program.ranks == 8
    wrong = scenario_from_dict(_data(tp=4, dp=8, collective_algorithms={"tp": "ring.xml"})).strategy
    with pytest.raises(ConfigError, match="written for 8 ranks, but tp is 4"):
        strategy_algorithms(wrong, tmp_path)
    a2a = scenario_from_dict(_data(collective_algorithms={"tp": str(MSCCL / "a2a2ll.xml")}))
    with pytest.raises(ConfigError, match="implements all-to-all"):
        strategy_algorithms(a2a.strategy, tmp_path)


def test_cli_predict_uses_the_xml(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    shutil.copy(RING, folder / "ring.xml")
    custom = _write(folder, "custom.yaml", _data(collective_algorithms={"tp": "ring.xml"}))
    builtin = _write(folder, "builtin.yaml", _data())
    result = CliRunner().invoke(main, ["predict", "--json", str(custom), str(builtin)])
    assert result.exit_code == 0, result.output
    a, b = (json.loads(line) for line in result.output.splitlines())
    assert a["step_time_s"] == pytest.approx(b["step_time_s"], rel=0.02)


@pytest.mark.parametrize(
    ("xml", "problem"),
    [
        (None, "cannot read"),
        ("<algo name='x'", "not well-formed XML"),
    ],
)
def test_cli_bad_xml_exits_2_naming_key_and_file(
    tmp_path: Path, xml: str | None, problem: str
) -> None:
    if xml is not None:
        (tmp_path / "ring.xml").write_text(xml)
    path = _write(tmp_path, "s.yaml", _data(collective_algorithms={"tp": "ring.xml"}))
    result = CliRunner().invoke(main, ["predict", str(path)])
    assert result.exit_code == 2
    assert "strategy.collective_algorithms.tp" in result.output
    assert str(tmp_path / "ring.xml") in result.output
    assert problem in result.output


def test_simulate_honours_the_key(tmp_path: Path) -> None:
    shutil.copy(RING, tmp_path / "ring.xml")
    path = _write(tmp_path, "s.yaml", _data(collective_algorithms={"tp": "ring.xml"}))
    out = CliRunner().invoke(main, ["simulate", str(path), "--json"])
    assert out.exit_code == 0, out.output
    simulated = json.loads(out.output)["step_time_s"]
    plain = _write(tmp_path, "p.yaml", _data())
    base = json.loads(CliRunner().invoke(main, ["simulate", str(plain), "--json"]).output)
    assert simulated == pytest.approx(base["step_time_s"], rel=0.02)


def test_search_refuses_the_key_instead_of_ignoring_it(tmp_path: Path) -> None:
    shutil.copy(RING, tmp_path / "ring.xml")
    path = _write(tmp_path, "s.yaml", _data(collective_algorithms={"tp": "ring.xml"}))
    out = CliRunner().invoke(main, ["search", str(path)])
    assert out.exit_code == 2
    assert "strategy.collective_algorithms" in out.output
