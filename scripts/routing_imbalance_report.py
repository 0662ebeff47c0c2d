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
import math
from collections.abc import Iterator
from contextlib import contextmanager

from deepflow.estimate.evaluate import clear_memos
from deepflow.hardware.grouped_tiles import expected_row_tiles
from deepflow.parallel.routing import (
    _measured,
    expected_normal_max,
    expert_row_spread,
    expert_spread,
    routing_imbalance,
)
from deepflow.specs.model import MoESpec, Routing
from deepflow.validation.datasets import Case, megatron_moe_modelzoo_cases
from deepflow.validation.runner import run_case


@contextmanager
def _maxvio(value: float) -> Iterator[None]:
    """The ``aux_loss`` MaxVio replaced by ``value`` while the block runs (the layer-cost
    memo, keyed on the scenario, not on the routing data, is emptied around it)."""
    row = _measured()["aux_loss"]
    saved = row["value"]
    row["value"] = value
    clear_memos()
    try:
        yield
    finally:
        row["value"] = saved
        clear_memos()


def _matching_imbalance(case: Case) -> str:
    """The imbalance in [1, 4] at which ``case``'s prediction meets its measurement, or
    where it lies outside (an imbalance whose buffers no longer fit counts as too slow)."""

    def error(imbalance: float) -> float:
        c = copy.deepcopy(case)
        c.scenario["model"]["moe"] = {"routing": "aux_loss", "imbalance": imbalance}
        e = run_case(c).error
        return math.inf if e is None else e  # infeasible (memory): above any match

    lo, hi = 1.0, 4.0
    if error(lo) >= 0:
        return "below 1 (row too slow at balance)"
    if error(hi) < 0:
        return "above 4"
    for _ in range(20):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if error(mid) < 0 else (lo, mid)
    if not math.isfinite(error(hi)):
        return f"none: infeasible above {lo:.3f}"
    return f"{0.5 * (lo + hi):.3f}"


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

    print()
    print("megatron-moe-modelzoo H100 rows (tp4 pp8 vpp4 ep8 unless stated): step time per")
    print("global-batch token, measured and predicted (microseconds), and the binomial")
    print("rank-level spread of forced (random) routing that the model leaves out:")
    print("1 + z(ep) sqrt((1 - k/E) / (E_loc mu)), mu = balanced rows per expert")
    print("| row | seq | router | recompute | measured | predicted | error | sampling term |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |")
    per_token: dict[tuple[int, str], tuple[float, float]] = {}
    for case in megatron_moe_modelzoo_cases():
        st = case.scenario["strategy"]
        if "H100" not in case.description or st["tp"] != 4:
            continue
        seq = case.scenario["model"]["seq_len"]
        tokens = case.scenario["training"]["global_batch_size"] * seq
        result = run_case(copy.deepcopy(case))
        local = experts // st["ep"]
        # one rank's micro-batch tokens (sequence parallel over tp, context over cp),
        # top-8 copies over the rank's experts
        mu = st["micro_batch_size"] * seq / (st["tp"] * st.get("cp", 1)) * 8 / local
        sampling = 1 + expected_normal_max(st["ep"]) * math.sqrt((1 - 8 / experts) / (local * mu))
        print(
            f"| {case.row_id} | {seq:,} | {case.scenario['model']['moe']['routing']} | "
            f"{st.get('recompute', 'none')} | {1e6 * result.measured / tokens:.3f} | "
            f"{1e6 * result.predicted / tokens:.3f} | {100 * result.error:+.1f} | "
            f"{sampling:.4f} |"
        )
        routing = case.scenario["model"]["moe"]["routing"]
        per_token[seq, routing] = (1e6 * result.measured / tokens, 1e6 * result.predicted / tokens)
    print()
    print("dropless minus forced balance, same sequence, microseconds per token")
    print("| seq | measured | predicted |")
    print("| ---: | ---: | ---: |")
    for seq in sorted({s for s, _ in per_token}):
        if (seq, "forced") in per_token and (seq, "aux_loss") in per_token:
            (ma, pa), (mf, pf) = per_token[seq, "aux_loss"], per_token[seq, "forced"]
            print(f"| {seq:,} | {ma - mf:.3f} | {pa - pf:.3f} |")

    print()
    print("diagnostic only (not used by the model): the stated moe.imbalance at which each")
    print("dropless row's predicted step time would equal the measured one (bisection on")
    print("[1, 4], the routing's spread kept)")
    print("| row | seq | sourced | matching imbalance |")
    print("| --- | ---: | ---: | ---: |")
    for case in megatron_moe_modelzoo_cases():
        if case.scenario["model"]["moe"]["routing"] != "aux_loss":
            continue
        ep = case.scenario["strategy"]["ep"]
        sourced = float(routing_imbalance(Routing.AUX_LOSS, experts, ep))
        print(
            f"| {case.row_id} | {case.scenario['model']['seq_len']:,} | {sourced:.3f} | "
            f"{_matching_imbalance(case)} |"
        )


if __name__ == "__main__":
    main()
