"""Peak memory with V virtual nodes falls as V grows for a fixed global batch: only one VN's
activations are live at a time (VirtualFlow, Or et al., MLSys 2022, arXiv 2009.09523)."""

from __future__ import annotations

from itertools import pairwise

import pytest

from deepflow.estimate import predict
from deepflow.specs import scenario_from_dict


def scenario(v: int):
    return scenario_from_dict(
        {
            "model": "megatron-gpt-1.7b",
            "system": {"preset": "dgx-a100-80gb", "num_accelerators": 8},
            "strategy": {"virtual_nodes": v, "recompute": "selective"},
            "training": {"global_batch_size": 256},
        }
    )


def test_peak_memory_decreases_with_v() -> None:
    preds = [predict(scenario(v)) for v in (8, 16, 32, 64, 128, 256)]
    peaks = [p.peak_memory_bytes for p in preds]
    acts = [p.memory_bytes["activations"] for p in preds]
    assert all(a > b for a, b in pairwise(peaks))
    # activations scale with the VN batch s = B / V (halving V doubles them)
    for a, b in pairwise(acts):
        assert a / b == pytest.approx(2.0, rel=1e-9)
    # the rest of the footprint (weights, gradients, optimizer state) does not change
    rest = [p.peak_memory_bytes - p.memory_bytes["activations"] for p in preds]
    assert max(rest) - min(rest) < 1e-6 * rest[0]
    # V fits a batch that does not fit without time-slicing: V = dp = 8 runs out of memory
    assert not preds[0].feasible and preds[-1].feasible
