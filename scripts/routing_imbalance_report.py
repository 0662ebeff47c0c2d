"""The routing model's numbers quoted in docs/moe.md ("Routing outcome").

    python scripts/routing_imbalance_report.py

Prints (1) the busiest-rank imbalance of ``moe.routing: aux_loss`` and ``aux_free`` for
Qwen3-235B-A22B's 128 experts at EP 1-128 (``deepflow.parallel.routing``, from Wang et al.
2024's MaxVio in ``parallel/data/routing.yaml``) and the spread of one expert's rows in a
micro-batch (``expert_row_spread``) with the grouped GEMM's expected row tiles
(``deepflow.hardware.grouped_tiles``) at EP 8, and (2) the ``megatron-moe-modelzoo``
dropless rows' step-time error: the routing's spread kept, with the ranks balanced
(imbalance 1.0), at imbalance ``1 + 1e-6`` (no step: the expected tiles are continuous in
the load), at the sourced default (the 3B row, MaxVio 0.52) and with the 1B row's MaxVio
0.72 in both the imbalance and the spread. Nothing here is fitted; the validation rows are
only evaluated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

from deepflow.estimate.evaluate import PART_COSTS
from deepflow.hardware.grouped_tiles import expected_row_tiles
from deepflow.parallel.routing import (
    _measured,
    expert_row_spread,
    expert_spread,
    routing_imbalance,
)
from deepflow.specs.model import MoESpec, Routing
from deepflow.validation.datasets import megatron_moe_modelzoo_cases
from deepflow.validation.runner import run_case


@contextmanager
def _maxvio(value: float) -> Iterator[None]:
    """The ``aux_loss`` MaxVio replaced by ``value`` while the block runs (the layer-cost
    memo, keyed on the scenario, not on the routing data, is emptied around it)."""
    row = _measured()["aux_loss"]
    saved = row["value"]
    row["value"] = value
    PART_COSTS.clear()
    try:
        yield
    finally:
        row["value"] = saved
        PART_COSTS.clear()


def main() -> None:
    experts = 128
    print("busiest-rank imbalance, 128 experts (Qwen3-235B-A22B)")
    print("| ep | experts per rank | aux_loss | aux_free |")
    print("| ---: | ---: | ---: | ---: |")
    for ep in (1, 2, 4, 8, 16, 32, 64, 128):
        aux = float(routing_imbalance(Routing.AUX_LOSS, experts, ep))
        free = float(routing_imbalance(Routing.AUX_FREE, experts, ep))
        print(f"| {ep} | {experts // ep} | {aux:.4f} | {free:.4f} |")

    print()
    print("one expert's rows at EP 8 (rows 5 and 4: one 4,096-token sequence at tp 4 with")
    print("sequence parallelism gives a rank 1,024 tokens, 8,192 routed rows, 512 for each of")
    print("its 16 experts) and the expected 128- and 256-row tiles per expert, busiest rank")
    print("| routing | spread c | rows sigma | load | mean rows | tiles (128) | tiles (256) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for routing in (Routing.FORCED, Routing.AUX_FREE, Routing.AUX_LOSS):
        moe = MoESpec(num_experts=experts, top_k=8, routing=routing)
        sigma = float(expert_row_spread(moe, 512.0))
        load = float(routing_imbalance(routing, experts, 8))
        t128, t256 = (float(expected_row_tiles(512.0 * load, sigma, t)) for t in (128, 256))
        print(
            f"| {routing.value} | {expert_spread(routing):.4f} | {sigma:.1f} | {load:.4f} | "
            f"{512 * load:.1f} | {t128:.3f} | {t256:.3f} |"
        )
    print("| equal rows (old rule) | - | 0 | 1.0000 | 512.0 | 4.000 | 2.000 |")

    one_b = float(_measured()["aux_loss"]["reference_values"]["1b"])
    print()
    print("megatron-moe-modelzoo dropless rows, step-time error (%)")
    print("| row | ep | imbalance | balanced ranks (1.0) | 1 + 1e-6 | sourced | with 1B MaxVio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in megatron_moe_modelzoo_cases():
        if case.scenario["model"]["moe"]["routing"] != "aux_loss":
            continue
        ep = case.scenario["strategy"]["ep"]
        sourced = float(routing_imbalance(Routing.AUX_LOSS, experts, ep))
        errors = []
        for imbalance in (1.0, 1.0 + 1e-6, None):
            c = copy.deepcopy(case)
            if imbalance is not None:
                c.scenario["model"]["moe"] = {"routing": "aux_loss", "imbalance": imbalance}
            errors.append(100 * run_case(c).error)
        with _maxvio(one_b):
            errors.append(100 * run_case(copy.deepcopy(case)).error)
        cells = " | ".join(f"{e:+.1f}" for e in errors)
        print(f"| {case.row_id} | {ep} | {sourced:.4f} | {cells} |")


if __name__ == "__main__":
    main()
