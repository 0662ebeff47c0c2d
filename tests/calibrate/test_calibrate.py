"""``deepflow calibrate`` on the CPU: the same code path as on a GPU, with tiny shapes."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from deepflow.cli.app import main
from deepflow.errors import ConfigError
from deepflow.hardware.calibrate import (
    SCHEMA,
    OperatorProfiles,
    profile_key,
    read_calibration,
    write_calibration,
)
from deepflow.hardware.calibrate.io import _csv_records, records_to_csv
from deepflow.hardware.calibrate.measure import elementwise_bytes
from deepflow.sim.opsim import MeasuredCost, OpConfig, OpSimulator, RooflineCost
from deepflow.specs import system_from
from deepflow.workload import cnn, rnn
from deepflow.workload.profiles import builtin_operator_shapes, partition_profile

torch = pytest.importorskip("torch")

QUICK = ["calibrate", "--device", "cpu", "--quick"]
CPU_KINDS = {"gemm", "grouped_gemm", "attention", "memory", "elementwise", "operator"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One ``--device cpu --quick`` run, shared by the tests of this module."""
    out = tmp_path_factory.mktemp("cal") / "cal.yaml"
    r = CliRunner().invoke(main, ["calibrate", "--device", "cpu", "--quick", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out, read_calibration(out)


def test_quick_cpu_run_has_every_kind_that_runs_on_a_cpu(quick_run) -> None:
    _, data = quick_run
    assert data["schema"] == SCHEMA
    assert data["device"]["backend"] == "cpu" and data["device"]["count"] == 1
    env = data["environment"]
    assert env["torch"] == torch.__version__
    assert "calibrate" in env["command"] and "--quick" in env["command"]
    recs = data["measurements"]
    assert {r["kind"] for r in recs} == CPU_KINDS
    assert {r["dtype"] for r in recs if r["kind"] == "gemm"} == {"fp32", "bf16"}
    # every GEMM says its operand layout: the quick sweep's squares "nn", skinny "nt", and a
    # linear layer's forward "nt", input gradient "nn" and weight gradient "tn"
    assert {r["layout"] for r in recs if r["kind"] == "gemm"} == {"nn", "nt", "tn"}
    assert all(r["time_s"] > 0 and math.isfinite(r["time_s"]) for r in recs)
    attn = [r for r in recs if r["kind"] == "attention"]
    assert {r["backward"] for r in attn} == {False, True}
    assert {r["kv_heads"] < r["heads"] for r in attn} == {False, True}  # MHA and GQA
    assert all(r["backend"] for r in attn)
    assert {r["op"] for r in recs if r["kind"] == "memory"} == {"copy", "read", "write"}
    ew = {r["op"] for r in recs if r["kind"] == "elementwise"}
    assert ew == {"layernorm", "rmsnorm", "softmax", "gelu", "swiglu", "add", "cross_entropy"}
    ops = {r["op"] for r in recs if r["kind"] == "operator"}
    assert {"conv2d", "pool2d", "linear", "lstm", "embedding", "softmax"} <= ops
    # one GPU or a CPU: no collectives, and the file says so
    assert any(n.startswith("collective: skipped") for n in data["notes"])


def test_forward_backward_records_come_in_pairs(quick_run) -> None:
    """Every profile has a forward and a forward + backward record, the latter longer
    (a backward pass that takes no time at all would mean the gradient was not computed)."""
    _, data = quick_run
    fwd, both = {}, {}
    for r in data["measurements"]:
        if r["kind"] == "operator":
            key = profile_key(r["op"], r["shape"], r["dtype"])
            (both if r["backward"] else fwd)[key] = r["time_s"]
    assert fwd and fwd.keys() == both.keys()


def test_yaml_csv_and_json_round_trip(quick_run, tmp_path: Path) -> None:
    _, data = quick_run
    for name in ("again.yaml", "again.json"):
        write_calibration(data, tmp_path / name)
        assert read_calibration(tmp_path / name) == data
    write_calibration(data, tmp_path / "m.csv")
    assert read_calibration(tmp_path / "m.csv")["measurements"] == data["measurements"]
    # times in exponent notation without a dot (JSON writes 1e-05) stay numbers
    tiny = {**data, "measurements": [{**data["measurements"][0], "time_s": 1e-05}]}
    for name in ("tiny.yaml", "tiny.json", "tiny.csv"):
        write_calibration(tiny, tmp_path / name)
        assert read_calibration(tmp_path / name)["measurements"][0]["time_s"] == 1e-05


def test_failed_write_leaves_no_partial_file(quick_run, tmp_path: Path, monkeypatch) -> None:
    _, data = quick_run
    dest = tmp_path / "cal.yaml"
    dest.write_text("previous\n")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_calibration(data, dest)
    assert dest.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.yaml"]


def test_operator_lookup_and_opsim_use_a_measured_time(quick_run) -> None:
    path, _ = quick_run
    profiles = OperatorProfiles.from_file(path)
    assert len(profiles) > 0
    system = system_from({"preset": "dgx-v100", "num_accelerators": 1, "accelerators_per_node": 1})
    found = 0
    for graph in (cnn.alexnet(2), cnn.resnet101(2), rnn.rnntc(2), rnn.nmt(2)):
        sim = OpSimulator(graph, system, profiles=profiles)
        roofline = RooflineCost(system.accelerator)
        assert isinstance(sim.cost, MeasuredCost)
        for op in graph.ops:
            ones = (1,) * len(op.dims)
            hit = profiles.lookup(*partition_profile(op, ones), "fp32")
            t_f, t_b = sim.cost.forward_time(op, ones), sim.cost.backward_time(op, ones)
            if hit is None:
                assert t_f == roofline.forward_time(op, ones)
                continue
            found += 1
            assert (t_f, t_b) == (hit.forward_s, hit.backward_s)
        assert sim.cost.measured + sim.cost.modelled > 0
    assert found >= 3
    # and the simulated step changes when the measured times replace the roofline's
    g = cnn.alexnet(2)
    with_cal = OpSimulator(g, system, profiles=profiles)
    without = OpSimulator(g, system)
    strategy = tuple(OpConfig((1,) * len(op.dims)) for op in g.ops)
    assert with_cal.step_time(strategy) != without.step_time(strategy)


def test_no_torch_is_a_one_line_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # ``import torch`` raises ImportError
    r = CliRunner().invoke(
        main, ["calibrate", "--device", "cpu", "--quick", "--out", str(tmp_path / "c.yaml")]
    )
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and "PyTorch is not installed" in r.output
    assert not (tmp_path / "c.yaml").exists()


def test_cuda_without_a_gpu_is_a_one_line_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = CliRunner().invoke(
        main, ["calibrate", "--device", "cuda", "--out", str(tmp_path / "c.yaml")]
    )
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and "--device: cuda requested" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "gemm,bogus"], "--only: unknown section 'bogus'"),
        (["--dtypes", "int8"], "--dtypes: unknown dtype 'int8'"),
        (["--max-seconds", "0"], "--max-seconds: must be positive"),
        (["--out", "no/such/folder/c.yaml"], "--out: folder 'no/such/folder' does not exist"),
        (["--out", "c.txt"], "--out: 'c.txt': the suffix must be"),
    ],
)
def test_bad_options_exit_2_naming_the_option(args: list[str], message: str) -> None:
    r = CliRunner().invoke(main, ["calibrate", "--device", "cpu", "--quick", *args])
    assert r.exit_code == 2
    assert message in r.output


def test_sections_and_dtypes_restrict_the_run(tmp_path: Path) -> None:
    out = tmp_path / "g.csv"
    r = CliRunner().invoke(
        main,
        [*QUICK, "--only", "gemm", "--dtypes", "fp32,fp8", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    recs = read_calibration(out)["measurements"]
    assert {r["kind"] for r in recs} == {"gemm", "grouped_gemm"}
    assert {r["dtype"] for r in recs} == {"fp32"}  # fp8 runs on GPUs only


def test_time_budget_stops_cleanly_with_what_was_measured(tmp_path: Path) -> None:
    out = tmp_path / "b.yaml"
    r = CliRunner().invoke(
        main,
        [*QUICK, "--only", "gemm,memory", "--max-seconds", "0.001", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    data = read_calibration(out)
    assert any("time budget spent" in n for n in data["notes"])


def test_bad_calibration_file_names_the_record(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "schema": SCHEMA,
                "measurements": [{"kind": "gemm", "dtype": "bf16", "m": 1, "n": 1, "k": 1}],
            }
        )
    )
    with pytest.raises(ConfigError, match=r"measurements\[0\]\.time_s: must be a positive"):
        read_calibration(bad)
    bad.write_text(yaml.safe_dump({"schema": "other/1", "measurements": []}))
    with pytest.raises(ConfigError, match=r"schema: must be 'deepflow\.calibration/1'"):
        read_calibration(bad)


def test_collectives_over_two_cpu_processes() -> None:
    """The multi-process path (one process per device) with Gloo on the CPU: every
    collective at every quick size, the message size in nccl-tests' convention."""
    from deepflow.hardware.calibrate.collective import COLLECTIVES, measure_collectives

    recs, left = measure_collectives(2, "gloo", quick=True, budget_s=60.0)
    assert left == 0
    assert {(r["op"], r["bytes"]) for r in recs} == {
        (op, size) for op in COLLECTIVES for size in (1024, 65536)
    }
    assert all(r["ranks"] == 2 and r["time_s"] > 0 for r in recs)


# -- properties ---------------------------------------------------------------------------

_scalar = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.booleans(),
    st.text(alphabet="abcxyz_0123456789", min_size=1, max_size=8).filter(
        lambda s: s not in ("true", "false") and not _looks_numeric(s)
    ),
)


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["kind", "op", "m", "bytes", "backward", "time_s"]),
            _scalar,
            min_size=1,
        ).map(lambda d: {**d, "shape": {"batch": 2, "channels": [3, 4]}}),
        min_size=1,
        max_size=5,
    )
)
def test_csv_round_trip(records: list[dict]) -> None:
    assert _csv_records(records_to_csv(records)) == records


@given(
    st.dictionaries(st.text("abcdef", min_size=1, max_size=4), st.integers(1, 99), min_size=1),
    st.randoms(use_true_random=False),
)
def test_profile_key_ignores_key_order_and_sequence_type(shape: dict, rnd) -> None:
    items = list(shape.items())
    rnd.shuffle(items)
    assert profile_key("conv2d", dict(items), "fp32") == profile_key("conv2d", shape, "fp32")
    seq = {**shape, "channels": (1, 2)}
    assert profile_key("x", seq, "bf16") == profile_key("x", {**shape, "channels": [1, 2]}, "bf16")


@given(st.sampled_from([1, 2, 4, 8, 16, 32, 64]))
def test_sample_split_divides_the_batch_of_every_profile(d: int) -> None:
    for graph in (cnn.alexnet(64), rnn.nmt(64)):
        for op in graph.ops:
            i = op.dim_index("sample")
            degrees = tuple(d if j == i else 1 for j in range(len(op.dims)))
            whole = partition_profile(op, (1,) * len(op.dims))
            part = partition_profile(op, degrees)
            assert whole is not None and part is not None and part[0] == whole[0]
            key = "rows" if "rows" in whole[1] else "batch"
            assert part[1][key] * d == whole[1][key]
            assert {k: v for k, v in part[1].items() if k != key} == {
                k: v for k, v in whole[1].items() if k != key
            }


def test_spatial_splits_have_no_profile() -> None:
    conv = cnn.alexnet(8).op("conv2")
    assert partition_profile(conv, (1, 2, 1, 1)) is None
    assert partition_profile(conv, (1, 1, 1, 4))[1]["out_channels"] == 192 // 4


def test_builtin_shapes_are_distinct_and_cover_the_workloads() -> None:
    shapes = builtin_operator_shapes()
    keys = [profile_key(op, s, "") for op, s in shapes]
    assert len(keys) == len(set(keys))
    assert {op for op, _ in shapes} == {
        "conv2d",
        "pool2d",
        "linear",
        "concat",
        "softmax",
        "elementwise",
        "embedding",
        "lstm",
        "attention",
    }
    assert len(builtin_operator_shapes(divisors=(1, 2))) > len(shapes)


@given(
    st.sampled_from(["layernorm", "rmsnorm", "softmax", "gelu", "swiglu", "add", "cross_entropy"]),
    st.integers(1, 4096),
    st.integers(1, 4096),
)
def test_elementwise_bytes_grow_with_the_backward_pass(op: str, rows: int, cols: int) -> None:
    fwd = elementwise_bytes(op, rows, cols, 2, False)
    assert fwd >= 2 * rows * cols  # at least one read of 16-bit inputs
    assert elementwise_bytes(op, rows, cols, 2, True) >= fwd


# -- fitting: a measuring run, deepflow calibrate --fit, and predict with the result -------

# A custom accelerator standing for this machine's CPU: its device_names list the CPU as the
# calibration file records it, so the file's device check passes honestly. The figures are
# nominal (the fit's fractions are relative to them; what the CPU measured sets the times).
CPU_ACCELERATOR = {
    "name": "host-cpu",
    "vendor": "any",
    "peak_flops": {
        "fp32": "2 TFLOP/s",
        "tf32": "2 TFLOP/s",
        "fp16": "2 TFLOP/s",
        "bf16": "2 TFLOP/s",
        "fp8": 0,
    },
    "memory_capacity": "64 GiB",
    "memory_bandwidth": "100 GB/s",
    "compute_units": 2,
    "sources": ["nominal figures for a CI test; the calibration file sets the kernel times"],
}


def _scenario(tmp_path: Path, accelerator: dict) -> Path:
    scenario = {
        "model": {"preset": "llama3-8b", "num_layers": 1, "seq_len": 256, "hidden_size": 512,
                  "num_attention_heads": 8, "num_kv_heads": 8, "ffn_hidden_size": 1024},
        "system": {"num_accelerators": 1, "accelerators_per_node": 1, "accelerator": accelerator,
                   "intra_node": {"bandwidth": "10 GB/s", "latency": "5 us"},
                   "inter_node": {"bandwidth": "1 GB/s", "latency": "20 us"}},
        "strategy": {"tp": 1, "pp": 1, "dp": 1, "precision": "bf16"},
        "training": {"global_batch_size": 1},
    }  # fmt: skip
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def test_cpu_calibration_then_predict(tmp_path: Path) -> None:
    """CI: ``deepflow calibrate --device cpu --quick --accelerator FILE --out cal.yaml`` writes
    the measurements and their fitted curves, then ``deepflow predict`` runs with
    ``system.accelerator.calibration: cal.yaml`` and its prediction changes."""
    from deepflow.hardware.calibrate.environment import _cpu_name

    acc = {**CPU_ACCELERATOR, "device_names": [_cpu_name()]}
    (tmp_path / "cpu.yaml").write_text(yaml.safe_dump(acc))
    r = CliRunner().invoke(
        main,
        [*QUICK, "--only", "gemm,attention,memory", "--accelerator", str(tmp_path / "cpu.yaml"),
         "--out", str(tmp_path / "cal.yaml")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    data = read_calibration(tmp_path / "cal.yaml")
    assert data["environment"]["fit"]["accelerator"] == "host-cpu"
    assert "--accelerator" in data["environment"]["fit"]["command"]
    fitted = data["fitted"]
    assert {"fp32", "bf16"} <= set(fitted["gemm"]) and fitted["memory"]["fraction"] > 0
    assert fitted["fit_error"]  # the cross-validated errors of the run's own fit
    plain = CliRunner().invoke(main, ["predict", str(_scenario(tmp_path, acc)), "--json"])
    assert plain.exit_code == 0, plain.output
    calibrated = CliRunner().invoke(
        main, ["predict", str(_scenario(tmp_path, {**acc, "calibration": "cal.yaml"})), "--json"]
    )
    assert calibrated.exit_code == 0, calibrated.output
    import json

    t_plain = json.loads(plain.output)["step_time_s"]
    t_cal = json.loads(calibrated.output)["step_time_s"]
    assert t_cal > 0 and t_cal != t_plain


def test_a_cpu_run_without_an_accelerator_writes_no_fit_and_says_why(tmp_path: Path) -> None:
    out = tmp_path / "m.yaml"
    r = CliRunner().invoke(main, [*QUICK, "--only", "memory", "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = read_calibration(out)
    assert "fitted" not in data
    assert any(n.startswith("fitted: not written: no accelerator preset") for n in data["notes"])
    # and --fit then fits it for a named accelerator that lists the device
    from deepflow.hardware.calibrate.environment import _cpu_name

    (tmp_path / "cpu.yaml").write_text(
        yaml.safe_dump({**CPU_ACCELERATOR, "device_names": [_cpu_name()]})
    )
    fitted = tmp_path / "f.json"
    r = CliRunner().invoke(
        main, ["calibrate", "--fit", str(out), "--accelerator", str(tmp_path / "cpu.yaml"),
               "--out", str(fitted)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert read_calibration(fitted)["fitted"]["memory"]["fraction"] > 0
    # without --accelerator: no preset lists a CPU
    r = CliRunner().invoke(main, ["calibrate", "--fit", str(out), "--out", str(fitted)])
    assert r.exit_code == 2 and "--accelerator: required" in r.output
    # a preset that does not list the device
    r = CliRunner().invoke(
        main, ["calibrate", "--fit", str(out), "--accelerator", "h100-sxm5-80gb", "--out", str(fitted)]
    )
    assert r.exit_code == 2 and "--accelerator" in r.output and "does not match" in r.output
