"""The FP8 recipes side by side: bytes per element of their quantization kernels and weight
caches (deepflow.specs.fp8), and one scenario's step time and peak memory under each
(Llama 2 7B, tp 2, ZeRO-1, 8 GPUs, global batch 64) on an H100 and a B200 node, against
BF16. The numbers in docs/model.md, "FP8 recipes", come from here.

    python bench/fp8_recipes.py
"""

from __future__ import annotations

from deepflow.estimate import evaluate
from deepflow.parallel import StrategyBatch
from deepflow.specs import scenario_from_dict
from deepflow.specs.fp8 import FP8_RECIPES, RECIPES, quantize_bytes, weight_copy_bytes


def main() -> None:
    print("recipe       chip       quantize B/elem  weight cache B/param")
    for recipe in FP8_RECIPES:
        for mx, chip in ((False, "Hopper"), (True, "Blackwell")):
            if RECIPES[recipe].needs_microscaling and not mx:
                continue
            q, w = quantize_bytes(recipe, mx), weight_copy_bytes(recipe, mx)
            print(f"{recipe.value:<12} {chip:<10} {q:>15.4f}  {w:>20.6f}")
    print()
    for system in ("dgx-h100", "dgx-b200"):
        mx = system != "dgx-h100"
        variants = [{}] + [
            {"precision": "fp8", "fp8_recipe": r.value, **g}
            for r in FP8_RECIPES
            if mx or not RECIPES[r].needs_microscaling
            for g in ({}, {"fp8_param_gather": True})
        ]
        scenarios = [
            scenario_from_dict(
                {
                    "model": "llama2-7b",
                    "system": {"preset": system, "num_accelerators": 8},
                    "strategy": {"tp": 2, "zero": 1, **v},
                    "training": {"global_batch_size": 64},
                }
            )
            for v in variants
        ]
        s = scenarios[0]
        r = evaluate(
            s.model, s.system, 64, StrategyBatch.from_specs([x.strategy for x in scenarios])
        )
        for v, t, mem, w in zip(
            variants, r.step_time, r.peak_memory, r.memory["weights"], strict=True
        ):
            name = v.get("fp8_recipe", "bf16") + (
                " +fp8_param_gather" if v.get("fp8_param_gather") else ""
            )
            gb = f"peak {mem / 1e9:6.2f} GB  weights {w / 1e9:6.2f} GB"
            print(f"{system:<9} {name:<30} step {t:7.3f} s  {gb}")


if __name__ == "__main__":
    main()
