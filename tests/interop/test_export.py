"""Export of a deepflow scenario as ASTRA-sim inputs: the files load back with deepflow's
own readers, and the workload runs on the exported network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepflow.cli import main
from deepflow.errors import ConfigError
from deepflow.estimate import predict
from deepflow.interop.astra import (
    CollectiveOptimization,
    Topology,
    export_scenario,
    load_comm_groups,
    load_network,
    load_system,
    simulate_workload,
)
from deepflow.interop.chakra import NodeType, check_workload, read_workload
from deepflow.interop.chakra.model import CommType
from deepflow.specs.scenario import scenario_from_dict

SCENARIO = {
    "model": "megatron-gpt-1.7b",
    "system": {"preset": "dgx-a100-80gb", "num_accelerators": 16},
    "strategy": {"tp": 4, "pp": 2, "micro_batch_size": 1, "precision": "bf16"},
    "training": {"global_batch_size": 8},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    scenario = scenario_from_dict(SCENARIO, name="gpt-1.7b-16")
    out = tmp_path_factory.mktemp("export")
    return scenario, export_scenario(scenario, out)


def test_files_load_back(exported) -> None:  # type: ignore[no-untyped-def]
    _, result = exported
    assert (result.ranks, result.tp, result.pp, result.dp) == (16, 4, 2, 2)
    network = load_network(Path(result.directory) / "network.yml")
    assert [d.topology for d in network.dims] == [Topology.SWITCH, Topology.SWITCH]
    assert [d.npus for d in network.dims] == [8, 2]
    system = load_system(Path(result.directory) / "system.json")
    assert system.collective_optimization is CollectiveOptimization.LOCAL_BW_AWARE
    groups = load_comm_groups(Path(result.directory) / "comm_groups.json")
    assert len(groups.groups) == 2 * 2 + 4 * 2  # tp groups per (dp, stage), dp per (tp, stage)
    traces = read_workload(result.workload_prefix)
    assert sorted(traces) == list(range(16))
    check_workload(traces)
    first = traces[0].nodes
    assert sum(n.type is NodeType.COMM_SEND_NODE for n in first) == 4  # 4 micro-batches
    meta = json.loads((Path(result.directory) / "export.json").read_text())
    assert meta["job_dp"] == meta["dp"] == 2


def test_exported_step_simulates_near_the_prediction(exported) -> None:  # type: ignore[no-untyped-def]
    scenario, result = exported
    d = Path(result.directory)
    sim = simulate_workload(
        read_workload(result.workload_prefix),
        load_network(d / "network.yml"),
        load_system(d / "system.json"),
        load_comm_groups(d / "comm_groups.json"),
    )
    predicted = predict(scenario).step_time_s
    # the export runs GPipe order without the optimizer step; the same costs underneath
    assert sim.makespan_s == pytest.approx(predicted, rel=0.25)


def test_big_jobs_keep_fewer_replicas(tmp_path: Path) -> None:
    big = dict(SCENARIO, system={"preset": "dgx-a100-80gb", "num_accelerators": 64})
    scenario = scenario_from_dict(big)
    result = export_scenario(scenario, tmp_path, max_ranks=16, merge_layers=True)
    assert (result.ranks, result.dp, result.job_dp) == (16, 2, 8)
    assert "2 of 8 replicas" in json.loads((tmp_path / "export.json").read_text())["note"]


def test_cli_export(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(SCENARIO))
    out = tmp_path / "astra"
    result = CliRunner().invoke(
        main, ["et", "export", str(path), "--out", str(out), "--merge-layers"]
    )
    assert result.exit_code == 0, result.output
    assert "16 ranks (tp 4 x pp 2 x dp 2 of 2)" in result.output
    sim = CliRunner().invoke(
        main,
        [
            "et", "simulate", str(out / "workload"),
            "--network", str(out / "network.yml"),
            "--system", str(out / "system.json"),
            "--comm-groups", str(out / "comm_groups.json"),
        ],
    )  # fmt: skip
    assert sim.exit_code == 0, sim.output
    assert "makespan" in sim.output


def _simulate(result):  # type: ignore[no-untyped-def]
    d = Path(result.directory)
    traces = read_workload(result.workload_prefix)
    check_workload(traces)
    return traces, simulate_workload(
        traces,
        load_network(d / "network.yml"),
        load_system(d / "system.json"),
        load_comm_groups(d / "comm_groups.json"),
    )


@pytest.mark.parametrize(
    ("name", "data", "degrees"),
    [
        ("cp", dict(SCENARIO, strategy={"tp": 2, "cp": 2, "pp": 2}), (2, 2, 1, 1)),
        ("vpp", dict(SCENARIO, strategy={"tp": 4, "pp": 2, "vpp": 2}), (4, 1, 1, 2)),
        (
            "ep",
            {
                "model": "mixtral-8x7b",
                "system": {"preset": "dgx-h100", "num_accelerators": 16},
                "strategy": {
                    "tp": 2,
                    "ep": 4,
                    "recompute": "full",
                    "zero": 1,
                    "sequence_parallel": True,
                    # the export has no overlaps: compare with an estimate without them
                    "overlap_grad_reduce": False,
                    "overlap_param_gather": False,
                },
                "training": {"global_batch_size": 16},
            },
            (2, 1, 4, 1),
        ),
    ],
)
def test_every_parallelism_exports_and_simulates(
    tmp_path: Path, name: str, data: dict[str, object], degrees: tuple[int, ...]
) -> None:
    scenario = scenario_from_dict(data, name=name)
    result = export_scenario(scenario, tmp_path)
    assert (result.tp, result.cp, result.ep, result.vpp) == degrees
    traces, sim = _simulate(result)
    first = traces[0].nodes
    opt = [n.name for n in first].index("optimizer_step")
    assert first[opt].type is NodeType.COMP_NODE
    # ZeRO 1 (the ep case) all-gathers the updated parameters after the optimizer step
    after = [n.name for n in first[opt + 1 :]]
    assert after == (["dp_param_ag", "dp_expert_param_ag"] if name == "ep" else [])
    names = [n.name for t in traces.values() for n in t.nodes]
    if name == "cp":  # ring attention: send/recv pairs beside each layer's compute
        assert any("_cp_send" in n for n in names) and any("_cp_recv" in n for n in names)
    if name == "ep":  # expert all-to-alls, dispatch and combine, forward and backward
        a2a = [n for n in first if n.attr_value("comm_type") == 6]
        assert len(a2a) == 4 * scenario.model.num_layers * sum(
            1 for n in first if n.name.startswith("fwd_embedding")
        )
    if name == "vpp":  # two chunks per stage, the last stage sends chunk 1 back to stage 0
        assert any(n.name == "send_act_mb0_c1" for n in traces[result.ranks // result.pp].nodes)
        assert any(n.name == "recv_act_mb0_c2" for n in first)
    predicted = predict(scenario)
    assert predicted.feasible
    # GPipe/interleaved order without the estimator's overlaps; the same costs underneath
    assert sim.makespan_s == pytest.approx(predicted.step_time_s, rel=0.35)


def test_merged_layers_keep_the_step(tmp_path: Path) -> None:
    data = dict(SCENARIO, strategy={"tp": 2, "cp": 2, "pp": 2, "vpp": 2})
    scenario = scenario_from_dict(data, name="merged")
    full = _simulate(export_scenario(scenario, tmp_path / "full"))[1].makespan_s
    merged = export_scenario(scenario, tmp_path / "merged", merge_layers=True)
    assert merged.nodes_per_rank < 200
    assert _simulate(merged)[1].makespan_s == pytest.approx(full, rel=0.05)


def _comm_names(nodes, comm_type: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [n.name for n in nodes if n.attr_value("comm_type") == comm_type]


AR, AG, RS = int(CommType.ALL_REDUCE), int(CommType.ALL_GATHER), int(CommType.REDUCE_SCATTER)


def test_sequence_parallel_pairs_replace_the_all_reduces(tmp_path: Path) -> None:
    data = dict(SCENARIO, strategy={"tp": 4, "pp": 2, "sequence_parallel": True})
    result = export_scenario(scenario_from_dict(data, name="sp"), tmp_path)
    first = read_workload(result.workload_prefix)[0].nodes
    layers_here = scenario_from_dict(data).model.num_layers // 2
    micro = sum(1 for n in first if n.name.startswith("fwd_embedding"))
    tp_ag = [n for n in _comm_names(first, AG) if "_tp_ag" in n]
    tp_rs = [n for n in _comm_names(first, RS) if "_tp_rs" in n]
    # two pairs per layer, forward and backward
    assert len(tp_ag) == len(tp_rs) == 2 * 2 * layers_here * micro
    assert not [n for n in _comm_names(first, AR) if "_tp_" in n]


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_zero_stages_export_their_collectives(tmp_path: Path, zero: int) -> None:
    data = dict(SCENARIO, strategy={"tp": 2, "pp": 1, "zero": zero, "micro_batch_size": 1})
    scenario = scenario_from_dict(data, name=f"zero{zero}")
    result = export_scenario(scenario, tmp_path)
    traces, sim = _simulate(result)
    first = traces[0].nodes
    names = [n.name for n in first]
    layers = scenario.model.num_layers
    micro = sum(1 for n in names if n.startswith("fwd_embedding"))
    gathers = [n for n in _comm_names(first, AG) if "_zero3_param_ag" in n]
    scatters = [n for n in _comm_names(first, RS) if "_zero3_grad_rs" in n]
    if zero == 3:
        # each layer gathered before its forward and its backward compute, gradients
        # reduce-scattered after the backward; no sync at the end of the step
        assert len(gathers) == 2 * layers * micro and len(scatters) == layers * micro
        assert not any(n.startswith("dp_grad") for n in names)
        assert names.index("fwd_mb0_c0_layer0_zero3_param_ag") < names.index("fwd_mb0_c0_layer0")
    else:
        assert not gathers and not scatters
        sync = "dp_grad_ar" if zero == 0 else "dp_grad_rs"
        assert names[-2:] == [sync, "optimizer_step"] or names[-3:] == [
            sync,
            "optimizer_step",
            "dp_param_ag",
        ]
        assert ("dp_param_ag" in names) == (zero > 0)
    assert sim.makespan_s > 0


@pytest.mark.parametrize("zero", [1, 3])
def test_exported_data_parallel_volumes_do_not_grow_with_dp(tmp_path: Path, zero: int) -> None:
    """A rank's data-parallel buffers are fixed by its parameters, whatever the replica count
    (the ZeRO-3 volume was once written dp times too large)."""

    def sizes(gpus: int) -> dict[str, float]:
        data = dict(
            SCENARIO,
            system={"preset": "dgx-h100", "num_accelerators": gpus},
            strategy={"tp": 2, "pp": 1, "zero": zero, "micro_batch_size": 1},
            training={"global_batch_size": gpus},
        )
        result = export_scenario(scenario_from_dict(data), tmp_path / str(gpus))
        nodes = read_workload(result.workload_prefix)[0].nodes
        return {
            n.name: float(n.attr_value("comm_size"))
            for n in nodes
            if n.name.startswith("dp_") or "_zero3_" in n.name
        }

    small, big = sizes(4), sizes(16)
    assert small and small.keys() == big.keys()
    for name, size in small.items():
        assert big[name] == pytest.approx(size), name


# -- the congestion-aware backend on exported steps -----------------------------------------

_CA_CASES = {
    "tp-pp": SCENARIO,
    "cp": dict(SCENARIO, strategy={"tp": 2, "cp": 2, "pp": 2}),
    "zero3": dict(SCENARIO, strategy={"tp": 2, "pp": 1, "zero": 3}),
    "ep": {
        "model": "mixtral-8x7b",
        "system": {"preset": "dgx-h100", "num_accelerators": 16},
        "strategy": {"tp": 2, "ep": 4, "recompute": "full", "zero": 1},
        "training": {"global_batch_size": 16},
    },
}


@pytest.mark.parametrize("name", sorted(_CA_CASES))
def test_exported_steps_replay_on_the_congestion_aware_backend(tmp_path: Path, name: str) -> None:
    """Every rank finishes (no deadlock: the replay raises on a stuck rank) and none
    earlier than on the congestion-unaware backend; the collectives that share links (the
    Switch dimensions of the export carry every group of a domain) make the step longer."""
    from deepflow.interop.astra import Backend

    result = export_scenario(scenario_from_dict(_CA_CASES[name], name=name), tmp_path)
    d = Path(result.directory)
    traces = read_workload(result.workload_prefix)
    args = (
        traces,
        load_network(d / "network.yml"),
        load_system(d / "system.json"),
        load_comm_groups(d / "comm_groups.json"),
    )
    cu = simulate_workload(*args)
    ca = simulate_workload(*args, backend=Backend.CONGESTION_AWARE)
    assert len(ca.ranks) == result.ranks
    for a, u in zip(ca.ranks, cu.ranks, strict=True):
        assert a.finish_ns >= u.finish_ns
    assert ca.makespan_ns > cu.makespan_ns


def test_export_refuses_an_expert_group_that_does_not_divide_dp(tmp_path: Path) -> None:
    data = {
        "model": "mixtral-8x7b",
        "system": {"preset": "dgx-h100", "num_accelerators": 24},
        "strategy": {"tp": 2, "ep": 8},
        "training": {"global_batch_size": 24},
    }
    with pytest.raises(ConfigError, match=r"strategy\.ep: ep 8 must divide dp x cp = 12"):
        export_scenario(scenario_from_dict(data), tmp_path)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    cli = CliRunner().invoke(main, ["et", "export", str(path), "--out", str(tmp_path / "o")])
    assert cli.exit_code == 2
    assert "strategy.ep" in cli.output and "ep 8 must divide" in cli.output
