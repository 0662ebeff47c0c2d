"""A stage's parts and sums from its units' tables (``_stage_combination``) and each
strategy's value on its own stage (``_on_stage``), against hand-worked numbers."""

from __future__ import annotations

import numpy as np

from deepflow.estimate.evaluate import _on_stage, _stage_combination


def _tables() -> list[np.ndarray]:
    # two kinds (dense layers, head), two rows, three strategies
    dense = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    head = np.array([[0.5, 0.25, 0.125], [100.0, 200.0, 300.0]])
    return [dense, head]


def test_two_stages_sum_their_layers_and_head() -> None:
    # stage 0 holds 3 layers, stage 1 holds 2 layers and the head
    counts = [np.array([[3.0], [2.0]]), np.array([[0.0], [1.0]])]
    out = _stage_combination(counts, _tables(), slice(None))
    assert out.shape == (2, 2, 3)  # (row, stage, strategy)
    # row 0, strategy 0: 3 x 1 = 3 on stage 0, 2 x 1 + 0.5 = 2.5 on stage 1
    assert out[0, :, 0].tolist() == [3.0, 2.5]
    # row 1, strategy 2: 3 x 30 = 90, 2 x 30 + 300 = 360
    assert out[1, :, 2].tolist() == [90.0, 360.0]


def test_one_row_and_a_subset_of_strategies_match_every_row() -> None:
    counts = [np.array([[3.0], [2.0]]), np.array([[0.0], [1.0]])]
    every = _stage_combination(counts, _tables(), slice(None))
    idx = np.array([2, 0])
    one_row = _stage_combination(counts, _tables(), idx, 1)
    assert one_row.shape == (2, 2)  # (stage, strategy)
    assert np.array_equal(one_row, every[1][:, idx])
    rows = _stage_combination(counts, _tables(), idx, slice(0, 2))
    assert np.array_equal(rows, every[:, :, idx])


def test_on_stage_picks_each_strategys_stage() -> None:
    values = np.arange(12.0).reshape(2, 3, 2)  # (row, stage, strategy)
    stage = np.array([2, 0])
    picked = _on_stage(values, stage, np.arange(2))
    assert picked.tolist() == [[4.0, 1.0], [10.0, 7.0]]
    one = values[..., :1]
    assert _on_stage(one, np.array([1]), np.arange(1)).tolist() == [[2.0], [8.0]]
