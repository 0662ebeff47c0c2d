"""``deepflow report --html``: the report's numbers (a pure function), the page (no script,
no external file, escaped text), the command, and a headless-Chromium screenshot."""

from __future__ import annotations

import itertools
import math
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from deepflow.cli import main
from deepflow.report.data import nearest_case, report_data
from deepflow.report.html import render_html
from deepflow.specs import default_scenario, scenario_from_dict
from deepflow.validation.runner import STEP_TIME_DATASETS, run_case
from deepflow.workload.transformer import parameter_count


def _small(system="dgx-a100-80gb", model="llama2-7b", gpus=16, name="small", **strategy):
    return scenario_from_dict(
        {
            "model": model,
            "system": {"preset": system, "num_accelerators": gpus},
            "strategy": {"tp": 2, "pp": 4, "micro_batch_size": 1, **strategy},
            "training": {"global_batch_size": 16},
        },
        name=name,
    )


@pytest.fixture(scope="module")
def default_data():
    return report_data(default_scenario())


def test_breakdowns_add_up_to_the_prediction(default_data):
    p = default_data.prediction
    assert p.feasible
    assert math.isclose(sum(b.value for b in default_data.time_parts), p.step_time_s, rel_tol=1e-9)
    assert math.isclose(sum(b.share for b in default_data.time_parts), 1.0, rel_tol=1e-9)
    assert math.isclose(
        sum(b.value for b in default_data.memory_parts), p.peak_memory_bytes, rel_tol=1e-9
    )
    cap = default_data.memory_capacity_bytes
    for b in default_data.memory_parts:
        assert math.isclose(b.share, b.value / cap)


def test_timeline_covers_every_simulated_stage_within_the_step(default_data):
    d = default_data
    assert d.simulated_step_s is not None and d.timeline_note is None
    stages = default_scenario().strategy.pp
    assert sum(t.endswith(": compute") for t in d.tracks) == stages
    assert {s.track for s in d.timeline} <= set(d.tracks)
    for s in d.timeline:
        assert 0 <= s.start_s < s.end_s <= d.simulated_step_s * (1 + 1e-12)
    assert math.isclose(max(s.end_s for s in d.timeline), d.simulated_step_s, rel_tol=1e-9)
    # merged: far fewer segments than tasks, but every stage's forward passes are there
    assert len(d.timeline) < 20_000
    assert {s.phase for s in d.timeline} >= {"F", "B"}


def test_segments_of_one_track_do_not_overlap(default_data):
    by_track: dict[str, list] = {}
    for s in default_data.timeline:
        by_track.setdefault(s.track, []).append(s)
    for segs in by_track.values():
        for a, b in itertools.pairwise(segs):
            assert a.end_s <= b.start_s * (1 + 1e-12) + 1e-15


def test_nearest_is_the_closest_model_on_the_same_accelerator(default_data):
    n = default_data.nearest
    assert n is not None
    scenario = default_scenario()
    target = math.log(parameter_count(scenario.model).total)
    best = min(
        abs(math.log(parameter_count(c.to_scenario().model).total) - target)
        for d in STEP_TIME_DATASETS
        for c in d.cases()
        if c.to_scenario().system.accelerator.name == scenario.system.accelerator.name
    )
    assert math.isclose(abs(math.log(n.parameters) - target), best, abs_tol=1e-12)
    assert n.error is not None
    assert math.isclose(n.error, (n.predicted_s - n.measured_s) / n.measured_s)


def test_a_published_case_is_its_own_nearest_measurement():
    case = next(c for c in STEP_TIME_DATASETS[0].cases())
    found = nearest_case(case.to_scenario())
    assert found is not None
    near, _, params = found
    assert params == parameter_count(case.to_scenario().model).total
    assert near.to_scenario().system.num_accelerators == case.to_scenario().system.num_accelerators
    assert run_case(near).error == run_case(case).error


def test_no_measurement_on_the_accelerator_is_said_not_invented():
    data = report_data(_small(system="tpu-v5p-pod", tp=1, pp=1, gpus=8))
    assert data.nearest is None
    assert "no published measurement" in (data.nearest_note or "")


def test_infeasible_scenario_is_a_report_with_its_reason():
    data = report_data(_small(model="gpt3-175b", tp=1, pp=1, gpus=8))
    assert not data.prediction.feasible
    assert data.timeline == () and "infeasible" in (data.timeline_note or "")
    page = render_html(data)
    assert "infeasible" in page


def test_page_is_self_contained_and_escapes_names():
    page = render_html(report_data(_small(name="<script>alert(1)</script>")))
    assert page.startswith("<!DOCTYPE html>")
    lowered = page.lower()
    assert "<script" not in lowered
    assert "src=" not in lowered and "href=" not in lowered and "@import" not in lowered
    assert "&lt;script&gt;" in page
    assert page.count("<svg") == 3  # time, memory, timeline


def test_cli_writes_the_page(tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().count("<svg") == 3


def test_cli_refuses_a_bad_destination_before_working(tmp_path):
    result = CliRunner().invoke(main, ["report", "--html", str(tmp_path / "no" / "r.html")])
    assert result.exit_code == 2
    assert "--html" in result.output and "does not exist" in result.output
    result = CliRunner().invoke(main, ["report", "--html", str(tmp_path / "r.txt")])
    assert result.exit_code == 2 and ".html" in result.output


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_page_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (Debian package `chromium`; .ci/run installs it)")
    image = pytest.importorskip("PIL.Image", reason="Pillow (with matplotlib, extra [plot])")
    page = tmp_path / "r.html"
    page.write_text(render_html(report_data(default_scenario())))
    shot = tmp_path / "r.png"
    env = {**os.environ, "HOME": str(tmp_path)}
    subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1120,1400",
            f"--screenshot={shot}", page.as_uri(),
        ],
        check=True, capture_output=True, timeout=120, env=env,
    )  # fmt: skip
    with image.open(shot) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1120, 1400)
        colors = rgb.getcolors(maxcolors=1 << 20)
    assert colors is not None
    # not blank: many colours, and much of the page is not the white background
    assert len(colors) > 50
    white = sum(n for n, c in colors if c == (255, 255, 255))
    assert white < 0.95 * rgb.size[0] * rgb.size[1]
    # the bar colours of the charts are on the page
    present = {c for _, c in colors}
    assert (0x4E, 0x79, 0xA7) in present and (0xF2, 0x8E, 0x2B) in present


def test_a_step_too_big_to_simulate_is_reported_without_a_timeline():
    scenario = scenario_from_dict(
        {
            "model": "gpt3-175b",
            "system": {"preset": "dgx-a100-80gb", "num_accelerators": 1024},
            "strategy": {"tp": 8, "pp": 8, "micro_batch_size": 1, "recompute": "full"},
            "training": {"global_batch_size": 16 * 1100},
        }
    )
    data = report_data(scenario)
    assert data.prediction.feasible and data.simulated_step_s is None
    assert data.timeline == () and "layer passes" in (data.timeline_note or "")
    assert "layer passes" in render_html(data)
