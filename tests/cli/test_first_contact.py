"""First contact: every malformed input a new user can reach exits 2 with one line naming
the key (or option, or file), the rule and the value; no traceback, no hang, no
half-written file. One test per case of the crash list of issue 16, plus the silently-wrong
answers it lists."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from deepflow.cli import main

ROOT = Path(__file__).resolve().parents[2]
MSCCL = ROOT / "tests" / "fixtures" / "msccl" / "ring_1_8.xml"
HETERO = ROOT / "examples" / "hetero-a100-v100.yaml"
BUDGET = ROOT / "examples" / "arch" / "budget-3nm.yaml"

BASE = {
    "model": "gpt3-175b",
    "system": {"preset": "dgx-a100-80gb", "num_accelerators": 1024},
    "strategy": {"tp": 8, "pp": 8, "vpp": 2, "sequence_parallel": True, "micro_batch_size": 1},
    "training": {"global_batch_size": 1536, "tokens": 300e9},
}


def scenario(tmp_path: Path, filename: str = "s.yaml", **sections: object) -> Path:
    data = json.loads(json.dumps(BASE))
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path = tmp_path / filename
    path.write_text(yaml.safe_dump(data))
    return path


def run(args: list[str]):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *parts: str) -> None:
    """Exit 2; stderr is one line starting with ``error:``; no traceback; each of
    ``parts`` (key, rule, value) appears in it."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    err = result.stderr.strip()
    assert "Traceback" not in result.output
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    assert len(err) < 400, err
    for part in parts:
        assert part in err, (part, err)


# --- 1-3: huge counts, documented bounds ---------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key"),
    [("strategy", "tp"), ("system", "num_accelerators"), ("training", "global_batch_size")],
)
@pytest.mark.parametrize("command", ["predict", "simulate", "search"])
def test_huge_counts_are_named_errors(tmp_path, section, key, command):
    path = scenario(tmp_path, **{section: {key: 10**30}})
    assert_one_line_error(run([command, path]), f"{section}.{key}", "16777216", "1000000000000")


@pytest.mark.parametrize(("key", "value"), [("num_layers", 10**9), ("vocab_size", 10**15)])
@pytest.mark.parametrize("command", ["predict", "simulate"])
def test_huge_model_dimensions_are_named_errors(tmp_path, key, value, command):
    path = scenario(tmp_path, model={"preset": "gpt3-175b", key: value})
    assert_one_line_error(run([command, path]), f"model.{key}", str(value))


def test_simulator_refuses_a_graph_past_its_size_bound(tmp_path):
    path = scenario(tmp_path, training={"global_batch_size": 1 << 24})
    assert_one_line_error(
        run(["simulate", path]), "training.global_batch_size", "layer passes", "100,000"
    )


# --- 4-7: readers bounded in expansion, depth, encoding and size ---------------------------


def test_yaml_alias_bomb_is_refused_without_printing_it(tmp_path):
    lines = ['a0: &a0 ["xxxxxxxxxx"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nname: *a11\n")
    result = run(["predict", bomb])
    assert_one_line_error(result, "bomb.yaml", "alias")


def test_alias_in_a_string_field_prints_a_short_value(tmp_path):
    text = yaml.safe_dump(BASE) + 'x: &x ["' + "y" * 50 + '"]\n'
    path = tmp_path / "a.yaml"
    path.write_text(text.replace("x: &x", "name: &x"))
    result = run(["predict", path])
    assert_one_line_error(result, "name")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_deep_nesting_is_refused(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    path.write_text('{"model": ' + "[" * 5000 + "]" * 5000 + "}")
    assert_one_line_error(run(["predict", path]), "deep", "64")


@pytest.mark.parametrize(
    ("encode", "rule"),
    [
        (lambda t: t.replace("gpt3-175b", "gpt3-175b\u00e9").encode("latin-1"), "not UTF-8"),
        (lambda t: t.encode("utf-16"), "UTF-16"),
    ],
)
def test_non_utf8_scenarios_are_named_errors(tmp_path, encode, rule):
    path = tmp_path / "enc.yaml"
    path.write_bytes(encode(yaml.safe_dump(BASE)))
    assert_one_line_error(run(["predict", path]), "enc.yaml", rule)


def test_non_utf8_msccl_file_is_a_named_error(tmp_path):
    path = tmp_path / "algo.xml"
    path.write_bytes(MSCCL.read_bytes().replace(b'name="', b'name="\xe9', 1))
    assert_one_line_error(
        run(["et", "convert", path, "--size", "1MiB", "--out", tmp_path / "o"]), "not UTF-8"
    )


def test_endless_file_is_refused():
    assert_one_line_error(run(["predict", "/dev/zero"]), "/dev/zero", "not a regular file")


def test_oversized_file_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.truncate(9 * 1024 * 1024)
    assert_one_line_error(run(["predict", path]), "big.yaml", "exceeds the limit")


# --- 8-9: zero bandwidth, names with markup -------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"accelerator": {"preset": "a100-sxm4-80gb", "memory_bandwidth": 0}}, "memory_bandwidth"),
        ({"inter_node": {"bandwidth": 0}}, "inter_node.bandwidth"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "simulate"])
def test_zero_bandwidth_is_a_named_error(tmp_path, section, key, command):
    path = scenario(tmp_path, system=section)
    assert_one_line_error(run([command, path]), key, "> 0")


@pytest.mark.parametrize("command", ["predict", "simulate", "search"])
def test_markup_in_a_name_prints_as_itself(tmp_path, command):
    path = scenario(tmp_path, name="[/]")
    args = [command, path] + (["--fix", "tp=8", "--fix", "pp=8"] if command == "search" else [])
    result = run(args)
    assert result.exit_code == 0, result.output
    if command != "search":
        assert "[/]" in result.output


def test_a_megabyte_name_is_a_named_error(tmp_path):
    path = scenario(tmp_path, name="x" * 1_000_000)
    assert_one_line_error(run(["predict", path]), "name", "200")


# --- 10: outputs checked first, written atomically ------------------------------------------


def test_trace_into_a_missing_folder_fails_before_the_run(tmp_path):
    path = scenario(tmp_path)
    result = run(["simulate", path, "--trace", tmp_path / "nope" / "t.json"])
    assert_one_line_error(result, "--trace", "does not exist")


def test_trace_onto_a_device_is_refused_and_the_device_kept(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    path = scenario(tmp_path)
    assert_one_line_error(run(["simulate", path, "--trace", "/dev/full"]), "--trace")
    assert not Path("/dev/full").is_file()


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    from deepflow.errors import ConfigError
    from deepflow.specs.files import atomic_write

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ConfigError, match="No space left"):
        atomic_write(tmp_path / "t.json", "{}", "--trace")
    assert list(tmp_path.iterdir()) == []


# --- 11-13: MSCCL attributes, et convert sizes, gzip bombs ---------------------------------


@pytest.mark.parametrize(
    ("attribute", "value", "rule"),
    [("ngpus", "1000000000", "<gpu> elements"), ("nchunksperloop", "0", ">= 1")],
)
def test_msccl_sizes_are_named_errors(tmp_path, attribute, value, rule):
    import re

    text = re.sub(f'{attribute}="[0-9]+"', f'{attribute}="{value}"', MSCCL.read_text(), count=1)
    path = tmp_path / "algo.xml"
    path.write_text(text)
    result = run(["et", "convert", path, "--size", "1MiB", "--out", tmp_path / "o" / "p"])
    assert_one_line_error(result, attribute, value, rule)
    assert not (tmp_path / "o").exists()


def test_et_convert_huge_size_leaves_no_folder(tmp_path):
    out = tmp_path / "out"
    result = run(["et", "convert", MSCCL, "--size", "1e30", "--out", out / "p"])
    assert_one_line_error(result, "--size", "1e30")
    assert not out.exists()


@pytest.mark.parametrize(
    "payload", [b"\0" * 300_000_000, b"\0" + b"\x02\x08\x01" * 3_000_000], ids=["big", "nodes"]
)
def test_gzip_bomb_trace_is_refused(tmp_path, payload):
    path = tmp_path / "bomb.0.et"
    path.write_bytes(gzip.compress(payload, 9))
    assert path.stat().st_size < 1_000_000
    assert_one_line_error(run(["et", "inspect", path]), "bomb.0.et")


# --- 14-16: plan-hetero, codesign, search-ops -----------------------------------------------


@pytest.mark.parametrize("count", [10**9, 10**30, 1 << 20])
def test_plan_hetero_huge_pool_is_a_named_error(tmp_path, count):
    path = tmp_path / "c.yaml"
    path.write_text(HETERO.read_text().replace("count: 8", f"count: {count}", 1))
    assert_one_line_error(run(["plan-hetero", path]), "pools[0].count")


@pytest.mark.parametrize("key", ["tp", "recompute"])
def test_codesign_empty_strategy_list_is_a_named_error(tmp_path, key):
    data = yaml.safe_load(BUDGET.read_text())
    data["strategies"][key] = []
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run(["codesign", ROOT / "examples" / "arch" / "gpt3-1024.yaml", "--budget", path])
    assert_one_line_error(result, f"strategies.{key}", "non-empty")


def test_codesign_negative_electricity_price_is_a_named_error(tmp_path):
    data = yaml.safe_load(BUDGET.read_text())
    data["cost"]["electricity_per_kwh"] = -0.1
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run(["codesign", ROOT / "examples" / "arch" / "gpt3-1024.yaml", "--budget", path])
    assert_one_line_error(result, "cost.electricity_per_kwh", "-0.1")


def test_search_ops_huge_cluster_is_a_named_error():
    result = run(["search-ops", "inception-v3", "--gpus", "65536", "--nodes", "8192"])
    assert_one_line_error(result, "--gpus", "65,536")


# --- silently wrong ------------------------------------------------------------------------


def test_json_output_is_strict_json(tmp_path):
    path = scenario(tmp_path, model={"preset": "gpt3-175b", "num_layers": 4000})
    result = run(["predict", path, "--json"])
    assert result.exit_code == 0
    assert "Infinity" not in result.output and "NaN" not in result.output
    json.loads(result.output, parse_constant=lambda c: pytest.fail(c))


def test_boolean_is_not_an_integer(tmp_path):
    path = scenario(tmp_path, strategy={"tp": True})
    assert_one_line_error(run(["predict", path]), "strategy.tp", "boolean")


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(BASE) + "model: llama3-70b\n")
    assert_one_line_error(run(["predict", path]), "duplicate key 'model'", "line")


def test_duplicate_json_keys_are_refused(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"model": "gpt3-175b", "model": "llama3-70b"}')
    assert_one_line_error(run(["predict", path]), "duplicate key 'model'")


def test_hidden_size_must_split_across_heads(tmp_path):
    path = scenario(tmp_path, model={"preset": "gpt3-175b", "hidden_size": 12289})
    assert_one_line_error(run(["predict", path]), "model", "12289", "96", "head_dim")


def test_explicit_head_dim_allows_any_hidden_size(tmp_path):
    path = scenario(tmp_path, model={"preset": "gpt3-175b", "hidden_size": 12289, "head_dim": 128})
    assert run(["predict", path]).exit_code == 0


def test_elastic_infinite_jct_has_a_reason(tmp_path):
    data = yaml.safe_load((ROOT / "examples" / "elastic-timeline.yaml").read_text())
    data["timeline"] = [[0, 16], [3600, 0]]
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run(["elastic", path])
    assert result.exit_code == 0
    assert "never finishes" in result.output and "0 accelerators" in result.output
    out = json.loads(run(["elastic", path, "--json"]).output)
    assert out["jct_s"]["new_batch"] is None and out["reasons"]["new_batch"]


def test_plan_hetero_never_prints_nan():
    from deepflow.cli.plan import _percent

    assert _percent(float("nan")).startswith("n/a")
    assert _percent(float("inf")).startswith("unbounded")
    assert _percent(0.25) == "+25.0%"


def test_garbage_search_results_file_is_refused_not_appended(tmp_path):
    path = scenario(tmp_path)
    out = tmp_path / "r.jsonl"
    out.write_text("garbage\n")
    args = ["search", path, "--fix", "tp=8", "--fix", "pp=8", "--out", out]
    assert_one_line_error(run(args), "--out", "not a deepflow search results file")
    assert out.read_text() == "garbage\n"


def test_et_simulate_refuses_mismatched_collectives(tmp_path):
    from deepflow.errors import TraceError
    from deepflow.interop.chakra import check_collectives
    from deepflow.interop.chakra.model import (
        Attribute,
        AttrKind,
        ExecutionTrace,
        GlobalMetadata,
        Node,
        NodeType,
    )

    def trace(size: int) -> ExecutionTrace:
        node = Node(
            id=1,
            name="ar",
            type=NodeType.COMM_COLL_NODE,
            attrs=(
                Attribute("comm_type", AttrKind.INT64, 0),
                Attribute("comm_size", AttrKind.INT64, size),
            ),
        )
        return ExecutionTrace(GlobalMetadata("0.0.4"), (node,), f"r{size}.et")

    check_collectives({0: trace(64), 1: trace(64)}, pg_names_are_ids=False)
    with pytest.raises(TraceError, match="collective #0"):
        check_collectives({0: trace(64), 1: trace(128)}, pg_names_are_ids=False)


# --- no hang, in a real process -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["search", "{big_tp}"],
        ["predict", "{layers}"],
        ["simulate", "{vocab}"],
        ["search-ops", "inception-v3", "--gpus", "65536", "--nodes", "8192"],
    ],
)
def test_no_hang_in_a_subprocess(tmp_path, args):
    paths = {
        "big_tp": scenario(tmp_path, "t.yaml", strategy={"tp": 10**30}),
        "layers": scenario(tmp_path, "l.yaml", model={"preset": "gpt3-175b", "num_layers": 10**9}),
        "vocab": scenario(tmp_path, "v.yaml", model={"preset": "gpt3-175b", "vocab_size": 10**15}),
    }
    argv = [a.format(**paths) for a in args]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", "from deepflow.cli import main; main()", *argv],
        capture_output=True,
        text=True,
        timeout=10,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
