"""The network model against vTrain's measured NCCL all-reduce tables (A100, V100)."""

from __future__ import annotations

import pytest

from deepflow.validation.nccl import nccl_allreduce_datasets


@pytest.fixture(scope="module")
def datasets():
    return {d.name: d for d in nccl_allreduce_datasets()}


@pytest.mark.parametrize("name", ["nccl-allreduce-a100", "nccl-allreduce-v100"])
def test_mape_within_bound(datasets, name):
    d = datasets[name]
    # 2 to 7 GPUs are validated; the 8-GPU table calibrates the bus efficiency
    assert len(d.rows) == 6 * 1024
    assert not any("gpu8-" in r.row_id for r in d.rows)
    assert d.infeasible == 0
    assert d.mape_bound == 0.15
    assert d.mape <= 0.15, f"{name}: MAPE {d.mape:.1%}"
    assert d.within_bounds


def test_validate_names_run_their_own_tables():
    """``deepflow validate --dataset nccl-v100`` runs the V100 tables, whatever the order of
    ``nccl_allreduce_datasets()``."""
    from deepflow.validation.runner import all_dataset_names, run_by_name

    assert {"nccl-a100", "nccl-v100"} <= set(all_dataset_names())
    result = run_by_name("nccl-v100")
    assert result.name == "nccl-allreduce-v100"
    assert result.mape <= 0.15
