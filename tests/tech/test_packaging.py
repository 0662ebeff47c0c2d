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
from deepflow.codesign.packaging import mesh_layout, mesh_shape, packaged_link, scale_up_link
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
    assert [r.label for r in rows] == [
        "MCM (8 dies / package)",
        "CoWoS-S (2 dies / package)",
        "wafer-scale mesh (8 dies)",
        "wafer-scale mesh (8 dies), 4 stride-4 rings",
    ]
    assert all(r.feasible and math.isfinite(r.step_time_s) for r in rows)
    # on the 4 x 2 mesh, rings {0,4} .. {3,7} each cross one Y edge: 4 ports, derate 1,
    # one hop; the rank-order ring's longest step, 7 -> 0, is four hops
    assert rows[3].scale_up_bandwidth == pytest.approx(rows[2].scale_up_bandwidth)
    assert (rows[2].scale_up_latency, rows[3].scale_up_latency) == pytest.approx((4e-6, 1e-6))
    # MCM and the wafer keep all 8 dies in one scale-up group; CoWoS-S sends the rest
    # over the scale-out link, which is slower than the generated scale-up links
    assert rows[1].step_time_s >= rows[0].step_time_s
    bad = examples.PackagingOption("odd", "mcm", 3)
    with pytest.raises(ValueError, match="do not divide"):
        examples.packaging_options(load_budget(BUDGET).design, replace(p), [bad])


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
    assert len(rows) == 4
    for r in rows:
        assert f"| {r['label']} | {r['step_time_s']:.3f} |" in table
    # the mesh with four stride-4 rings has a quarter of the one-ring mesh's bandwidth
    assert rows[3]["scale_up_bandwidth"] == pytest.approx(rows[2]["scale_up_bandwidth"] / 4)
    assert rows[3]["step_time_s"] > rows[2]["step_time_s"]
    # docs/codesign.md quotes this output
    docs = (CROSSFLOW.parents[1] / "docs" / "codesign.md").read_text()
    section = docs[docs.index("* Packaging, DeepFlow's LSTM LM") :]
    for r in rows:
        quoted = (
            f"| {r['step_time_s']:.3f} | {r['scale_up_size']} | "
            f"{r['scale_up_bandwidth'] / 1e9:.1f} | {r['scale_up_latency'] * 1e6:.0f} |"
        )
        assert quoted in section, quoted
    bad = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--studies", "packagin"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "packagin" in bad.stderr
