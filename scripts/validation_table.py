"""Print the README's validation table (markdown) from `deepflow validate`'s results.

    python scripts/validation_table.py

The numbers in README.md's "Validation" section are this script's output; rerun it after a
change to the model and paste the table.
"""

from __future__ import annotations

from deepflow.validation.runner import STEP_TIME_DATASETS, all_dataset_names, run_by_name

DESCRIPTIONS = {d.name: d.description for d in STEP_TIME_DATASETS}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def main() -> None:
    print("| data set | rows | mean abs. error | worst | peak memory | bound in tests |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name in all_dataset_names():
        r = run_by_name(name)
        bound = " / ".join(pct(b) for b in (r.mape_bound, r.worst_bound) if b is not None)
        memory_bound = getattr(r, "memory_bound", None)
        if memory_bound is not None:
            bound = f"{bound}; memory {pct(memory_bound)}"
        label = DESCRIPTIONS.get(name, r.description)
        memory = pct(getattr(r, "memory_mape", None))
        print(
            f"| `{name}`: {label} | {len(r.rows):,} | {pct(r.mape)} | {pct(r.worst)} | "
            f"{memory} | {bound or 'reported'} |"
        )


if __name__ == "__main__":
    main()
