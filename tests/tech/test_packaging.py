"""The scale-up link a packaging gives its dies (deepflow.codesign.packaging), worked by
hand from DeepFlow's derate rule (bandwidth / (mesh ports x most ring flows on one edge);
crossflow-deepflow.md sec. 4), applied in system_for for both the estimator and the
simulator, and the packaging study (MCM, CoWoS-S, wafer-scale mesh)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepflow.codesign import examples
from deepflow.codesign.budget import load_budget
from deepflow.codesign.opgraph import load_opgraph_problem
from deepflow.codesign.packaging import (
    mesh_layout,
    mesh_shape,
    packaged_link,
    scale_up_link,
    strategy_layout,
    strategy_rings,
)
from deepflow.codesign.point import system_for
from deepflow.specs.system import LinkSpec
from deepflow.tech.generator import generate
from deepflow.tech.library import packaging

CROSSFLOW = Path(__file__).resolve().parents[2] / "examples" / "crossflow"
BUDGET = CROSSFLOW / "budget-4nm.yaml"


def test_mesh_layout_by_hand() -> None:
    assert mesh_shape(64) == (8, 8)
    assert mesh_shape(32) == (8, 4)
    assert mesh_shape(7) == (7, 1)
    wafer = mesh_layout(64)
    # one rank-order ring: each directed edge carries one flow; the longest neighbour pair
    # is 63 -> 0, seven X hops then seven Y hops; an interior die has four mesh ports
    assert (wafer.ports, wafer.derate, wafer.hops) == (4, 1, 14)
    # four concurrent rings of stride 4: each X edge between columns carries four flows
    strided = mesh_layout(64, [range(j, 64, 4) for j in range(4)])
    assert strided.derate == 4
    line = mesh_layout(2)
    assert (line.shape, line.ports, line.derate, line.hops) == ((2, 1), 2, 1, 1)


def test_packaged_link_by_hand() -> None:
    base = LinkSpec(bandwidth=1.0, latency=3e-6, efficiency=0.8)
    # 400 GB/s of links over 4 ports, 4 flows per edge: 25 GB/s; 14 hops of 1 us
    got = packaged_link(base, 400e9, 4, 4, 14, 1e-6)
    assert got.bandwidth == pytest.approx(25e9)
    assert got.latency == pytest.approx(14e-6)
    assert got.efficiency == 0.8
    # a switch keeps the link and takes the generated bandwidth
    sw = scale_up_link(packaging("cowos-s"), base, 400e9, 8, 1e-6)
    assert (sw.bandwidth, sw.latency) == (400e9, 3e-6)
    wafer = scale_up_link(packaging("wafer-scale"), base, 400e9, 64, 1e-6)
    assert wafer.bandwidth == pytest.approx(100e9) and wafer.latency == pytest.approx(14e-6)
    with pytest.raises(ValueError):
        packaged_link(base, 1e9, -1, 1, 1, 0.0)


def _design(pkg: str):
    design = load_budget(BUDGET).design
    data = design.model_dump()
    data["technology"]["packaging"] = pkg
    return type(design).model_validate(data)


def test_system_for_applies_the_packaging_link() -> None:
    """One definition for the estimator and the simulator: system_for, which both the
    transformer and the operator-graph problems call."""
    problem = load_opgraph_problem(CROSSFLOW / "rnnlm-8.yaml")
    g_sw = generate(_design("cowos-s"))
    g_mesh = generate(_design("wafer-scale"))
    assert g_sw.scale_up_bandwidth == pytest.approx(g_mesh.scale_up_bandwidth)
    s_sw = system_for(g_sw, problem.system, [])
    s_mesh = system_for(g_mesh, problem.system, [])
    assert s_sw.intra_node.bandwidth == pytest.approx(g_sw.scale_up_bandwidth)
    assert s_sw.intra_node.latency == problem.system.intra_node.latency
    # 8 dies on a 4 x 2 mesh: 4 ports, derate 1, longest ring step 7 -> 0 is 3 + 1 hops
    assert s_mesh.intra_node.bandwidth == pytest.approx(g_mesh.scale_up_bandwidth / 4)
    hop = g_mesh.design.technology.scale_up.latency
    assert s_mesh.intra_node.latency == pytest.approx(4 * hop)
    # 64 dies with four concurrent stride-4 rings: 4 ports x derate 4; the longest ring
    # step, 60 -> 0, is 4 X hops and 7 Y hops
    wide = problem.system.model_copy(update={"scale_up_size": 64, "num_accelerators": 64})
    rings = [range(j, 64, 4) for j in range(4)]
    s_rings = system_for(g_mesh, wide, [], rings=rings)
    assert s_rings.intra_node.bandwidth == pytest.approx(g_mesh.scale_up_bandwidth / 16)
    assert s_rings.intra_node.latency == pytest.approx(11 * hop)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 16), st.integers(0, 8), st.integers(0, 16))
def test_a_worse_derate_never_makes_the_step_faster(derate: int, worse: int, hops: int) -> None:
    problem = load_opgraph_problem(CROSSFLOW / "rnnlm-8.yaml")
    system = problem.system
    bw = system.intra_node.bandwidth

    def step(d: int) -> float:
        link = packaged_link(system.intra_node, bw, 4, d, hops, 1e-6)
        return problem.with_system(system.model_copy(update={"intra_node": link})).step_time()

    assert step(derate + worse) >= step(derate)
    if worse > 0 and hops == 0:
        # the step does depend on the link: a strictly worse derate is strictly slower
        assert step(derate + worse) > step(derate)


def test_packaging_study_runs() -> None:
    p = load_opgraph_problem(CROSSFLOW / "rnnlm-8.yaml")
    rows = examples.packaging_options(load_budget(BUDGET).design, p)
    # 814 mm2 dies: 4 fit the MCM's 4,400 mm2 (its 8-die limit is for smaller dies), 2 the
    # CoWoS-S interposer, all 8 one wafer
    assert [r.label for r in rows] == [
        "MCM (4 dies / package)",
        "CoWoS-S (2 dies / package)",
        "wafer-scale mesh (8 dies / wafer)",
        "wafer-scale mesh (8 dies / wafer), 4 stride-4 rings",
    ]
    assert all(r.feasible and math.isfinite(r.step_time_s) for r in rows)
    # each packaging has its own die-to-die link
    assert [r.scale_up_link for r in rows] == [
        "ucie-standard",
        "ucie-advanced",
        "info-sow-d1",
        "info-sow-d1",
    ]
    # on the 4 x 2 mesh, rings {0,4} .. {3,7} each cross one Y edge: 4 ports, derate 1,
    # one hop; the data-parallel rank-order ring's longest step, 7 -> 0, is four hops
    hop = packaging_link_latency("wafer-scale")
    assert rows[3].scale_up_bandwidth == pytest.approx(rows[2].scale_up_bandwidth)
    assert (rows[2].scale_up_latency, rows[3].scale_up_latency) == pytest.approx((4 * hop, hop))
    bad = examples.PackagingOption("odd", "mcm", 3)
    with pytest.raises(ValueError, match="do not divide"):
        examples.packaging_options(load_budget(BUDGET).design, replace(p), [bad])


def packaging_link_latency(name: str) -> float:
    from deepflow.tech.library import link_technology

    link = packaging(name).link
    assert link is not None
    return link_technology(link).latency


def test_a_group_whose_silicon_exceeds_the_package_is_infeasible_with_the_areas() -> None:
    """64 dies of 814 mm2 (52,096 mm2) do not fit one 300 mm wafer (46,225 mm2); 32 do."""
    p = load_opgraph_problem(CROSSFLOW / "lstm-lm-64.yaml")
    design = load_budget(BUDGET).design
    assert examples.dies_that_fit(64, 814.0, "wafer-scale") == 32
    assert examples.dies_that_fit(64, 814.0, "mcm") == 4
    assert examples.dies_that_fit(64, 100.0, "mcm") == 8  # the MCM's max_dies
    options = [
        examples.PackagingOption("64 on a wafer", "wafer-scale", 64),
        examples.PackagingOption("8 on an MCM", "mcm", 8),
    ]
    rows = examples.packaging_options(design, p, options)
    assert not rows[0].feasible and rows[0].step_time_s == math.inf
    assert rows[0].reason is not None and "52,096 mm2" in rows[0].reason
    assert "46,225 mm2" in rows[0].reason
    assert not rows[1].feasible and "6,512 mm2" in (rows[1].reason or "")


def test_every_packaging_of_several_dies_names_a_link_of_the_library() -> None:
    from deepflow.tech.library import link_technology

    for name in ("mcm", "cowos-s", "cowos-l", "wafer-scale"):
        link = packaging(name).link
        assert link is not None
        tech = link_technology(link)
        assert tech.lane_rate > 0 and tech.latency > 0 and tech.sources


def test_strategy_rings_by_hand() -> None:
    """A tp (or kernel) group of 8 lies along a row of the 8 x 8 mesh: its rings and their
    column replicas each load a directed edge once, 7 hops for the wrap-around; groups of
    4 put four stride-4 replica rings on each X edge."""
    assert strategy_rings(8, 4) == (
        ((0, 1, 2, 3), (4, 5, 6, 7)),
        ((0, 4), (1, 5), (2, 6), (3, 7)),
    )
    assert strategy_rings(8, 1) == ((tuple(range(8)),),)
    assert strategy_rings(8, 3) == ((tuple(range(8)),),)  # 3 does not divide 8
    row = strategy_layout(64, 8)
    assert (row.ports, row.derate, row.hops) == (4, 1, 7)
    assert strategy_layout(64, 4).derate == 4
    assert strategy_layout(64, 1) == mesh_layout(64)


@settings(max_examples=12, deadline=None)
@given(st.sampled_from([1, 2, 4, 8, 16, 32, 64]), st.floats(1.0, 8.0))
def test_strategy_rings_property(inner: int, more: float) -> None:
    """For the rings of any strategy on a wafer mesh: the link is the die's bandwidth over
    ports x derate (derate >= 1), more link bandwidth never makes the step slower, and the
    strategy's rings are never faster than an ideal derate of 1."""
    problem = load_opgraph_problem(CROSSFLOW / "rnnlm-8.yaml")
    wide = problem.system.model_copy(
        update={"scale_up_size": 64, "num_accelerators": 64, "accelerators_per_node": 64}
    )
    problem = problem.with_system(wide)
    g = generate(_design("wafer-scale"))
    layout = strategy_layout(64, inner)
    assert layout.derate >= 1
    base = system_for(g, wide, [], inner=inner)
    assert base.intra_node.bandwidth == pytest.approx(
        g.scale_up_bandwidth / (layout.ports * layout.derate)
    )
    faster = system_for(
        replace(g, scale_up_bandwidth=g.scale_up_bandwidth * more), wide, [], inner=inner
    )
    assert faster.intra_node.bandwidth >= base.intra_node.bandwidth
    t_base = problem.with_system(base).step_time()
    assert problem.with_system(faster).step_time() <= t_base * (1 + 1e-12)
    ideal = base.model_copy(
        update={
            "intra_node": base.intra_node.model_copy(
                update={"bandwidth": g.scale_up_bandwidth / layout.ports}
            )
        }
    )
    assert problem.with_system(ideal).step_time() <= t_base * (1 + 1e-12)


def test_case_study_script_writes_the_packaging_table_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    script = CROSSFLOW / "case_studies.py"
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--studies", "packaging"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "packaging.md",
        "packaging.png",
        "results.json",
    ]
    rows = json.loads((tmp_path / "results.json").read_text())["packaging"]
    table = (tmp_path / "packaging.md").read_text()
    assert len(rows) == 5
    for r in rows:
        step = f"{r['step_time_s']:.3f}" if r["feasible"] else "infeasible"
        assert f"| {r['label']} | {step} |" in table
    # the 32-die wafer mesh with four stride-4 rings has a quarter of the bandwidth that
    # the strategy's own rings see; 64 dies do not fit one wafer
    assert rows[3]["scale_up_bandwidth"] == pytest.approx(rows[2]["scale_up_bandwidth"] / 4)
    assert rows[3]["step_time_s"] > rows[2]["step_time_s"]
    assert not rows[4]["feasible"] and "46,225 mm2" in rows[4]["reason"]
    # docs/codesign.md quotes this output
    docs = (CROSSFLOW.parents[1] / "docs" / "codesign.md").read_text()
    section = docs[docs.index("* Packaging, DeepFlow's LSTM LM") :]
    for r in rows:
        step = f"{r['step_time_s']:.3f}" if r["feasible"] else "infeasible"
        quoted = (
            f"| {step} | {r['scale_up_size']} | {r['scale_up_link']} | "
            f"{r['scale_up_bandwidth'] / 1e9:.1f} | {r['scale_up_latency'] * 1e6:.2f} |"
        )
        assert quoted in section, quoted
    bad = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--studies", "packagin"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "packagin" in bad.stderr
