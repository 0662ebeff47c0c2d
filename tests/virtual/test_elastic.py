"""Elastic job completion time on a hand-worked timeline (VirtualFlow, Or et al., MLSys
2022, arXiv 2009.09523, sec. 5.3 of the reference)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from deepflow.virtual.elastic import (
    ElasticJob,
    StepModel,
    elastic_jct,
    load_timeline,
    progress_series,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "elastic-timeline.yaml"


def toy_model(resize_s: float = 10.0) -> StepModel:
    # one sample costs 1 s of one replica; a step adds 1 s of all-reduce
    def step(replicas: int, gbs: int, vns: int) -> float:
        return gbs / replicas + 1.0

    def resize(old: int, new: int, mode: str) -> float:
        return resize_s

    return StepModel(step, resize)


def test_hand_worked_timeline() -> None:
    # B = 8, V = 8, 10 steps (80 samples), designed for 4 replicas (2 samples each)
    job = ElasticJob(steps=10, global_batch_size=8, virtual_nodes=8, demand=4)
    timeline = [(0.0, 4), (15.0, 2), (40.0, 3)]
    r = elastic_jct(job, timeline, toy_model())
    # fixed V: 4 replicas -> 3 s/step: 5 steps (40 samples) by t = 15.
    # 2 replicas -> 5 s/step after a 10 s resize: 15 s -> 3 steps (24 samples) by t = 40.
    # 3 available -> 2 used (3 does not divide V = 8): no resize, 2 steps left -> 50 s.
    vn = r.phases["virtual_nodes"]
    assert [p.replicas for p in vn] == [4, 2, 2]
    assert [p.steps for p in vn] == pytest.approx([5.0, 3.0, 2.0])
    assert [p.resize_s for p in vn] == [0.0, 10.0, 0.0]
    assert r.jct_s["virtual_nodes"] == pytest.approx(50.0)
    assert r.steps["virtual_nodes"] == pytest.approx(10.0)
    # new batch: 4 replicas, B = 8, 3 s/step: 40 samples by t = 15.
    # 2 replicas, B = 4, 3 s/step after 10 s: 15 s -> 5 steps, 20 samples (60 done).
    # 3 replicas, B = 6, 3 s/step after 10 s: 20 samples = 3.33 steps = 10 s -> t = 60.
    nb = r.phases["new_batch"]
    assert [p.global_batch_size for p in nb] == [8, 4, 6]
    assert [p.samples for p in nb] == pytest.approx([40.0, 20.0, 20.0])
    assert r.jct_s["new_batch"] == pytest.approx(60.0)
    assert r.steps["new_batch"] == pytest.approx(5 + 5 + 20 / 6)
    t, f = progress_series(r)["virtual_nodes"]
    assert f[-1] == pytest.approx(1.0) and t[-1] == pytest.approx(50.0)


def test_no_accelerators_means_no_progress() -> None:
    job = ElasticJob(steps=2, global_batch_size=4, virtual_nodes=4, demand=2)
    r = elastic_jct(job, [(0.0, 0), (100.0, 2)], toy_model())
    # waits 100 s; the first start costs no resize: 2 steps of 3 s
    assert r.jct_s["virtual_nodes"] == pytest.approx(106.0)
    r = elastic_jct(job, [(0.0, 0)], toy_model())
    assert math.isinf(r.jct_s["virtual_nodes"])


def test_example_timeline_with_the_estimator() -> None:
    job, timeline, model = load_timeline(EXAMPLE)
    r = elastic_jct(job, timeline, model)
    assert r.steps["virtual_nodes"] == pytest.approx(job.steps)
    assert math.isfinite(r.jct_s["virtual_nodes"]) and math.isfinite(r.jct_s["new_batch"])
    first, second = r.phases["virtual_nodes"][:2]
    # half the replicas, twice the VNs each: about twice the step time
    assert 1.8 < second.step_time_s / first.step_time_s < 2.1


def test_progress_plot_is_written(tmp_path) -> None:
    pytest.importorskip("matplotlib", reason="plots need the optional 'plot' extra")
    from deepflow.virtual.elastic import plot_progress, progress_series

    job, timeline, model = load_timeline(EXAMPLE)
    r = elastic_jct(job, timeline, model)
    series = progress_series(r)
    assert set(series) == {"virtual_nodes", "new_batch"}
    for t, done in series.values():
        assert done[-1] == pytest.approx(1.0) and (np.diff(t) >= 0).all()
    path = plot_progress(r, tmp_path / "elastic.png")
    assert path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
