"""The routing model's numbers quoted in docs/moe.md ("Routing outcome").

    python scripts/routing_imbalance_report.py

Prints (1) the busiest-rank imbalance of ``moe.routing: aux_loss`` and ``aux_free`` for
Qwen3-235B-A22B's 128 experts at EP 1-128 (``deepflow.parallel.routing``, from Wang et al.
2024's MaxVio in ``parallel/data/routing.yaml``), and (2) the ``megatron-moe-modelzoo``
dropless rows' step-time error: routed as forced balance (imbalance 1.0, the previous
model), at imbalance ``1 + 1e-6`` (what the grouped GEMMs' tile quantization alone does once
the busiest rank's mean rows per expert leave an exact tile multiple), at the sourced
default (the 3B row, MaxVio 0.52) and with the 1B row's MaxVio 0.72 instead. Nothing here
is fitted; the validation rows are only evaluated.
"""

from __future__ import annotations

import copy

from deepflow.parallel.routing import _measured, rank_imbalance, routing_imbalance
from deepflow.specs.model import Routing
from deepflow.validation.datasets import megatron_moe_modelzoo_cases
from deepflow.validation.runner import run_case


def main() -> None:
    experts = 128
    print("busiest-rank imbalance, 128 experts (Qwen3-235B-A22B)")
    print("| ep | experts per rank | aux_loss | aux_free |")
    print("| ---: | ---: | ---: | ---: |")
    for ep in (1, 2, 4, 8, 16, 32, 64, 128):
        aux = float(routing_imbalance(Routing.AUX_LOSS, experts, ep))
        free = float(routing_imbalance(Routing.AUX_FREE, experts, ep))
        print(f"| {ep} | {experts // ep} | {aux:.4f} | {free:.4f} |")

    row = _measured()["aux_loss"]
    one_b = float(row["reference_values"]["1b"])
    print()
    print("megatron-moe-modelzoo dropless rows, step-time error (%)")
    print("| row | ep | imbalance | forced (1.0) | 1 + 1e-6 | sourced | with 1B MaxVio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in megatron_moe_modelzoo_cases():
        if case.scenario["model"]["moe"]["routing"] != "aux_loss":
            continue
        ep = case.scenario["strategy"]["ep"]
        sourced = float(routing_imbalance(Routing.AUX_LOSS, experts, ep))
        alt = float(rank_imbalance(one_b, int(row["num_experts"]), experts, ep))
        errors = []
        for imbalance in (1.0, 1.0 + 1e-6, None, alt):
            c = copy.deepcopy(case)
            if imbalance is not None:
                c.scenario["model"]["moe"] = {"imbalance": imbalance}
            errors.append(100 * run_case(c).error)
        cells = " | ".join(f"{e:+.1f}" for e in errors)
        print(f"| {case.row_id} | {ep} | {sourced:.4f} | {cells} |")


if __name__ == "__main__":
    main()
