"""Quantity parsing: SI numbers pass through, unit strings convert, bad ones name the key."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepflow.errors import UnitError
from deepflow.units import Dimension, format_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "dim", "value"),
    [
        ("300 GB/s", Dimension.BANDWIDTH, 300e9),
        ("400 Gb/s", Dimension.BANDWIDTH, 50e9),
        ("80 GiB", Dimension.BYTES, 80 * 2**30),
        ("2 us", Dimension.TIME, 2e-6),
        ("989 TFLOP/s", Dimension.FLOPS, 989e12),
        ("700 W", Dimension.POWER, 700.0),
        (25e9, Dimension.BANDWIDTH, 25e9),
        ("1.5e3 MB", Dimension.BYTES, 1.5e9),
    ],
)
def test_parse_quantity(text, dim, value):
    assert parse_quantity(text, dim) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "dim", "message"),
    [
        ("3 GQ/s", Dimension.BANDWIDTH, "unknown unit"),
        ("80 GiB", Dimension.BANDWIDTH, "expected bytes/s"),
        ("fast", Dimension.TIME, "cannot parse"),
        (-1, Dimension.TIME, "non-negative"),
        (True, Dimension.BYTES, "expected a bytes quantity"),
    ],
)
def test_bad_quantities_name_the_key(text, dim, message):
    with pytest.raises(UnitError, match=message) as info:
        parse_quantity(text, dim, "system.intra_node.bandwidth")
    assert str(info.value).startswith("system.intra_node.bandwidth: ")


@given(st.floats(min_value=0, max_value=1e18, allow_nan=False))
def test_numbers_are_already_si(x):
    assert parse_quantity(x, Dimension.BYTES) == x


def test_format_bytes():
    assert format_bytes(2**31) == "2 GiB"
