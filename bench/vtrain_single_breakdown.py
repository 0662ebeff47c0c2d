"""Where the vTrain single-node error comes from: the rows by tensor parallelism and by
whether the host issue time bounds them, and the measured time per layer and micro-batch.

The 1,440 single-node rows of vTrain (small GPTs on 2-8 A100s) are predicted with the
closed-form evaluator; a row counts as host-bound where the predicted host excess
(``breakdown_s["host_overhead"]``: host issue time above the device time) is more than 1 %
of its step. For the rows of hidden size 1,024, micro-batch 1 and no pipeline, the measured
step time is regressed on layers x micro-batches per GPU: the slope is the measured time of
one layer's forward, backward and recomputation, printed next to the model's.

Last, the pipeline-free rows of each tensor-parallel degree, hidden size and micro-batch
are decomposed exactly as ``T = a (L m) + c m + b L + d`` (``L`` layers, ``m`` micro-batches
per step; four (L, m) pairs per group): ``a`` the time of one layer and micro-batch, ``c``
the per-micro-batch work outside the layers (embedding, LM head, loss), ``b`` the
per-layer work once per step (optimizer, gradient all-reduce), ``d`` the rest; measured
next to predicted. The model's ``a`` without recomputation is printed too (``recompute:
none``), for comparison with the measured one.

    python bench/vtrain_single_breakdown.py
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from deepflow.estimate import predict
from deepflow.specs.scenario import scenario_from_dict
from deepflow.validation.datasets import vtrain_single_cases


def decomposition() -> None:
    """Exact four-term decomposition of the pp = 1 rows per (tp, hidden, micro-batch, dp)."""
    groups: dict[tuple[int, int, int, int], list[tuple[float, ...]]] = defaultdict(list)
    for case in vtrain_single_cases():
        st, model = case.scenario["strategy"], case.scenario["model"]
        if st["pp"] != 1:
            continue
        plain = {**case.scenario, "strategy": {**st, "recompute": "none"}}
        p = predict(scenario_from_dict(case.scenario, name=case.row_id))
        q = predict(scenario_from_dict(plain, name=case.row_id))
        layers = model["num_layers"]
        micro = case.scenario["training"]["global_batch_size"] // (
            st["dp"] * st["micro_batch_size"]
        )
        key = (st["tp"], model["hidden_size"], st["micro_batch_size"], st["dp"])
        row = (layers * micro, micro, layers, 1.0)
        groups[key].append((*row, case.measured_step_time_s, p.step_time_s, q.step_time_s))
    print(
        "pp 1: T = a L m + c m + b L + d (ms); measured / predicted / predicted without recompute"
    )
    print()
    print("| tp | hidden | mb | dp | a | c | b | d | a, no recompute |")
    print("| ---: | ---: | ---: | ---: | --- | --- | --- | --- | ---: |")
    for key, rows in sorted(groups.items()):
        x = np.array([r[:4] for r in rows])
        if np.linalg.matrix_rank(x) < 4:
            continue
        fit = [np.linalg.lstsq(x, np.array([r[j] for r in rows]), rcond=None)[0] * 1e3
               for j in (4, 5, 6)]  # fmt: skip
        cells = " | ".join(f"{fit[0][i]:.2f} / {fit[1][i]:.2f}" for i in range(4))
        print(f"| {' | '.join(str(k) for k in key)} | {cells} | {fit[2][0]:.2f} |")


def main() -> None:
    groups: dict[tuple[int, bool], list[float]] = defaultdict(list)
    slopes: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
    errors = []
    for case in vtrain_single_cases():
        p = predict(scenario_from_dict(case.scenario, name=case.row_id))
        err = p.step_time_s / case.measured_step_time_s - 1.0
        errors.append(err)
        st, model = case.scenario["strategy"], case.scenario["model"]
        host = p.breakdown_s["host_overhead"] > 0.01 * p.step_time_s
        groups[(st["tp"], host)].append(err)
        if model["hidden_size"] == 1024 and st["micro_batch_size"] == 1 and st["pp"] == 1:
            micro = case.scenario["training"]["global_batch_size"] // st["dp"]
            work = model["num_layers"] * micro
            slopes[st["tp"]].append((work, case.measured_step_time_s, p.step_time_s))
    print(f"vtrain-single: {len(errors)} rows, mean abs error {np.mean(np.abs(errors)):.1%}")
    print()
    print("| tp | host-bound | rows | mean error | mean abs error |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for (tp, host), errs in sorted(groups.items()):
        e = np.array(errs)
        print(
            f"| {tp} | {'yes' if host else 'no'} | {e.size} | {e.mean():+.1%} | "
            f"{np.abs(e).mean():.1%} |"
        )
    print()
    print("hidden 1024, micro-batch 1, pp 1: time per layer and micro-batch (least squares)")
    print()
    print("| tp | rows | measured ms | predicted ms |")
    print("| ---: | ---: | ---: | ---: |")
    for tp, rows in sorted(slopes.items()):
        x = np.array([r[0] for r in rows], dtype=float)
        a = np.vstack([x, np.ones_like(x)]).T
        meas = np.linalg.lstsq(a, np.array([r[1] for r in rows]), rcond=None)[0][0]
        pred = np.linalg.lstsq(a, np.array([r[2] for r in rows]), rcond=None)[0][0]
        print(f"| {tp} | {len(rows)} | {meas * 1e3:.2f} | {pred * 1e3:.2f} |")
    print()
    decomposition()


if __name__ == "__main__":
    main()
