"""``deepflow collective``: output, JSON, sweep, and exit code 2 on bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deepflow.cli import main


def run(*args: str):
    return CliRunner().invoke(main, ["collective", *args])


def test_single_size_prints_time_and_bandwidths():
    result = run("all-reduce", "--size", "256MiB", "--system", "dgx-a100-80gb", "--nodes", "2")
    assert result.exit_code == 0, result.output
    assert "time" in result.output and "busbw" in result.output


def test_json_and_sweep():
    result = run("all-gather", "--json", "--sweep", "--size", "1MiB", "--min-size", "256KiB")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["size_bytes"] for r in data["results"]] == [2**18, 2**19, 2**20]
    times = [r["time_s"] for r in data["results"]]
    assert times == sorted(times)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["allgatherx"], "OP"),
        (["all-reduce", "--size", "12XB"], "--size"),
        (["all-reduce", "--system", "nope"], "--system"),
        (["all-reduce", "--algorithm", "bogus"], "--algorithm"),
        (["all-reduce", "--nodes", "0"], "--nodes"),
    ],
)
def test_bad_input_exits_2_naming_the_option(args, names):
    result = run(*args)
    assert result.exit_code == 2
    assert names in result.output
