"""Timelines load as Chrome trace JSON with one track per rank and stream."""

import json

from click.testing import CliRunner

from deepflow.cli import main
from deepflow.estimate import predict
from deepflow.sim import chrome_trace, simulate
from deepflow.specs import scenario_from_dict

DOC = {
    "model": "llama2-7b",
    "system": {"preset": "dgx-a100-80gb", "num_accelerators": 32},
    "strategy": {"tp": 2, "pp": 4, "vpp": 2},
    "training": {"global_batch_size": 16},
}


def test_trace_tracks_and_slices(tmp_path):
    sim = simulate(scenario_from_dict(DOC))
    trace = json.loads(json.dumps(chrome_trace(sim.execution, sim.rank_labels())))
    events = trace["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    threads = {(e["pid"], e["tid"]) for e in events if e["name"] == "thread_name"}
    processes = {e["pid"] for e in events if e["name"] == "process_name"}
    assert processes == set(sim.lowered.stage_ranks)
    streams = sim.lowered.graph.streams()
    assert len(threads) == len(streams)
    assert {(e["pid"], e["tid"]) for e in slices} <= threads
    assert len(slices) == sum(1 for t in sim.lowered.graph.tasks if t.duration_s > 0)
    # every (micro-batch, chunk) has a forward and a backward slice per layer of its chunk
    layers_per_chunk = 32 // (4 * 2)
    fwd = [
        e
        for e in slices
        if e["args"]["phase"] == "F" and e["args"].get("layer") == 0 and e["cat"] == "compute"
    ]
    assert len(fwd) == sim.lowered.micro_batches  # layer 0 lives in chunk 0 of stage 0
    per_rank_f = [
        e for e in slices if e["pid"] == 0 and e["cat"] == "compute" and e["args"]["phase"] == "F"
    ]
    assert len(per_rank_f) >= 2 * sim.lowered.micro_batches * layers_per_chunk
    assert all(e["dur"] > 0 and e["ts"] >= 0 for e in slices)


def test_cli_simulate_json_and_trace(tmp_path):
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(DOC))
    out = tmp_path / "timeline.json"
    result = CliRunner().invoke(main, ["simulate", str(path), "--json", "--trace", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    closed = predict(scenario_from_dict(DOC, name="scenario")).to_json()
    assert data.keys() == closed.keys()
    assert abs(data["step_time_s"] / closed["step_time_s"] - 1) < 0.03
    assert "traceEvents" in json.loads(out.read_text())


def test_cli_simulate_bad_input_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: gpt3-175b\nstrategy: {tp: 0}\n")
    result = CliRunner().invoke(main, ["simulate", str(path)])
    assert result.exit_code == 2
    assert "error" in result.output
