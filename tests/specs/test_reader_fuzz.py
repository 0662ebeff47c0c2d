"""Fuzzing every reader: arbitrary bytes and mutations of the shipped fixtures either load or
raise a :class:`~deepflow.errors.DeepflowError` (a ``ConfigError`` or ``TraceError``, which
the CLI turns into exit 2) - never another exception. Scenarios that load predict without
an exception and print strict JSON."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepflow.cli.app import json_text
from deepflow.errors import DeepflowError, TraceError
from deepflow.estimate import predict
from deepflow.interop.chakra import decode_et, encode_et
from deepflow.interop.msccl import parse_msccl
from deepflow.specs import scenario_from_dict
from deepflow.specs.files import (
    MAX_DEPTH,
    brief,
    decode_text,
    gunzip,
    parse_json,
    parse_yaml,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "examples" / "gpt3-175b-a100.yaml").read_text()
MSCCL = (ROOT / "tests" / "fixtures" / "msccl" / "ring_1_8.xml").read_bytes()
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """Apply (position, delete-count, insert) edits to ``data``."""
    out = bytearray(data)
    for pos, delete, insert in edits:
        pos %= len(out) + 1
        out[pos : pos + delete] = insert
    return bytes(out)


EDITS = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.binary(max_size=8)), max_size=6
)


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_escape_the_readers(data):
    for parse in (parse_yaml, parse_json):
        with contextlib.suppress(DeepflowError):
            parse(decode_text(data, "fuzz"), "fuzz")


@FUZZ
@given(EDITS)
def test_mutated_scenarios_load_or_raise_config_error(edits):
    data = mutate(EXAMPLE.encode(), edits)
    try:
        loaded = parse_yaml(decode_text(data, "fuzz"), "fuzz")
        scenario = scenario_from_dict(loaded)
    except DeepflowError:
        return
    json.loads(json_text(predict(scenario).to_json()))


LEAF = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
)
KEYS = [
    ("strategy", "tp"),
    ("strategy", "pp"),
    ("strategy", "vpp"),
    ("strategy", "micro_batch_size"),
    ("strategy", "zero"),
    ("strategy", "recompute"),
    ("system", "num_accelerators"),
    ("training", "global_batch_size"),
    ("training", "tokens"),
]


@FUZZ
@given(st.sampled_from(KEYS), LEAF)
def test_any_value_in_any_key_loads_or_names_the_key(key, value):
    data = yaml.safe_load(EXAMPLE)
    data[key[0]][key[1]] = value
    try:
        scenario = scenario_from_dict(data)
    except DeepflowError as exc:
        assert "\n" not in str(exc)
        assert len(str(exc)) < 400
        return
    json.loads(json_text(predict(scenario).to_json()))


@FUZZ
@given(EDITS)
def test_mutated_msccl_parses_or_raises_trace_error(edits):
    data = mutate(MSCCL, edits)
    with contextlib.suppress(DeepflowError):
        parse_msccl(decode_text(data, "fuzz.xml", TraceError), "fuzz.xml")


@FUZZ
@given(EDITS)
def test_mutated_et_bytes_decode_or_raise_trace_error(edits):
    from deepflow.interop.chakra.model import ExecutionTrace, GlobalMetadata, Node, NodeType

    nodes = tuple(Node(id=i, name=f"n{i}", type=NodeType.COMP_NODE) for i in range(4))
    data = mutate(encode_et(ExecutionTrace(GlobalMetadata("0.0.4"), nodes)), edits)
    with contextlib.suppress(DeepflowError):
        decode_et(data, "fuzz.et")


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1])
def test_depth_bound_is_exact(depth):
    text = "[" * depth + "]" * depth
    for parse in (parse_yaml, parse_json):
        if depth <= MAX_DEPTH:
            parse(text, "d")
        else:
            with pytest.raises(DeepflowError, match="limit"):
                parse(text, "d")


def test_recursive_yaml_alias_is_refused():
    with pytest.raises(DeepflowError, match="refers to itself"):
        parse_yaml("a: &a [*a]\n", "r")


def test_yaml_merge_keys_still_work():
    data = parse_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n", "m")
    assert data["other"] == {"x": 1, "y": 3}


def test_gunzip_stops_at_its_bound():
    import gzip

    blob = gzip.compress(b"\0" * 100_000)
    assert len(gunzip(blob, "g", limit=100_000)) == 100_000
    with pytest.raises(DeepflowError, match="exceeds"):
        gunzip(blob, "g", limit=99_999)


@given(st.recursive(LEAF, lambda c: st.lists(c, max_size=20), max_leaves=200))
@settings(max_examples=40, deadline=None)
def test_brief_is_short(value):
    assert len(brief(value)) <= 60
