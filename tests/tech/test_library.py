"""The technology library loads, is sourced, and reports bad input by key."""

from __future__ import annotations

import re

import pytest
from tests.tech.helpers import class_design

from deepflow.errors import ConfigError
from deepflow.tech import design_from, names
from deepflow.tech.library import CATALOGUES, resolve


@pytest.mark.parametrize("kind", list(CATALOGUES))
def test_every_entry_loads_with_sources(kind):
    for name in names(kind):
        entry = resolve(kind, name, kind)
        assert entry.sources, f"{kind}.{name} has no sources"


def test_required_entries_exist():
    assert {"n16", "n10", "n7", "n5", "n4", "n3", "n2", "n1"} <= set(names("nodes"))
    assert {"hbm1", "hbm2", "hbm2e", "hbm3", "hbm3e", "hbm4", "gddr6x", "gddr7", "lpddr5x"} <= set(
        names("memories")
    )
    assert {
        "nvlink3",
        "nvlink4",
        "nvlink5",
        "pcie4",
        "pcie5",
        "pcie6",
        "ib-hdr",
        "ib-ndr",
        "ib-xdr",
        "ethernet-400g",
        "ethernet-800g",
        "ucie-advanced",
    } <= set(names("links"))
    assert {"monolithic", "mcm", "cowos-s", "cowos-l", "wafer-scale"} <= set(names("packaging"))


def test_node_series_scales_and_the_1nm_node_is_labelled_a_projection():
    """14/12 (n16) to 1 nm: density rises and energy per FLOP falls node after node; the
    node without a product or foundry data says so in its class and its sources."""
    order = ["n16", "n10", "n7", "n5", "n4", "n3", "n2", "n1"]
    nodes = [resolve("nodes", n, "nodes") for n in order]
    dens = [n.logic_density for n in nodes]
    assert dens == sorted(dens)
    e = [float(n.energy_per_flop.bf16) for n in nodes]
    assert e == sorted(e, reverse=True)
    n1 = nodes[-1]
    assert "projection" in n1.node_class
    assert all("projection" in src.lower() for src in n1.sources)
    hbm = [resolve("memories", m, "memories") for m in ("hbm1", "hbm2", "hbm3", "hbm4")]
    bw = [m.pins * m.pin_rate for m in hbm]
    assert bw == sorted(bw) and len(set(bw)) == 4


def test_unknown_entry_names_the_key():
    with pytest.raises(ConfigError) as err:
        resolve("nodes", "n8", "technology.node")
    assert err.value.path == "technology.node"
    assert "n7" in str(err.value)


def test_bad_override_names_the_nested_key():
    with pytest.raises(ConfigError) as err:
        resolve("nodes", {"preset": "n7", "threshold_voltage": 0.9}, "technology.node")
    assert "threshold" in str(err.value)


def test_bad_energy_unit_names_the_key():
    data = class_design("a100").model_dump()
    data["technology"]["node"]["energy_per_flop"]["bf16"] = "0.6 GB"
    with pytest.raises(ConfigError) as err:
        design_from(data)
    assert "energy_per_flop" in str(err.value) and "bf16" in str(err.value)


def test_allocation_over_budget_is_a_config_error():
    data = class_design("a100").model_dump()
    data["allocation"]["area"]["compute"] = 0.95
    with pytest.raises(ConfigError) as err:
        design_from(data)
    assert "allocation.area" in str(err.value)


def test_die_over_reticle_is_a_config_error():
    data = class_design("a100").model_dump()
    data["budget"]["die_area"] = 900.0
    with pytest.raises(ConfigError, match="reticle"):
        design_from(data)


# Chip names of each validated class (tests/tech/test_generator.py): a node constant may not
# come from a chip it is validated against (docs/codesign.md, "Calibration provenance").
VALIDATED_CHIPS = {
    "a100": ("A100", "GA100"),
    "h100": ("H100", "H200", "GH100"),
    "b200": ("B100", "B200", "GB100", "GB200", "Blackwell"),
}


@pytest.mark.parametrize("cls", list(VALIDATED_CHIPS))
def test_node_sources_do_not_name_the_validated_chips(cls):
    """No node cites a validated chip: not the class's own node, nor any other node, since
    nodes are derived from one another (n5 from n7, n3 from n5, ...)."""
    used = class_design(cls).technology.node.name
    assert used in names("nodes")
    pattern = re.compile(
        r"(?<![A-Za-z0-9])(" + "|".join(VALIDATED_CHIPS[cls]) + r")(?![0-9])", re.IGNORECASE
    )
    for name in names("nodes"):
        for line in resolve("nodes", name, "technology.node").sources:
            assert not pattern.search(line), f"nodes.{name} cites a {cls}-class chip: {line}"
