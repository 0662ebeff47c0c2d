"""``deepflow search``: the best parallelization strategies of a scenario, exhaustively.

The command loads the scenario, builds one search space per accelerator count, runs the
exact pruned search (:func:`deepflow.search.pruned_search`: the exhaustive search's top
strategies and Pareto front from the groups of strategies its bounds do not exclude) or,
with ``--exhaustive``, ``--out``, ``--workers`` or ``--scheduler``,
:func:`deepflow.search.exhaustive_search` on the chosen executor, with a progress bar, and
prints the top strategies, the infeasible points by reason and the Pareto front; ``--json``
prints one JSON object whose ``top[*].strategy`` entries are in the scenario file's
``strategy`` format (paste one into the scenario to ``deepflow predict`` it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table

from deepflow.cli.app import exits_2_on_bad_input, json_text, main, quiet_option
from deepflow.errors import ConfigError
from deepflow.estimate import time_to_train_s
from deepflow.report.progress import progress
from deepflow.report.tabular import csv_text, flatten
from deepflow.report.text import make_console, styled
from deepflow.search import (
    DEFAULT_CHUNK_SIZE,
    Candidate,
    Objective,
    SearchResult,
    SearchSpace,
    best_scenario,
    check_objective,
    equivalent_groups,
    exhaustive_search,
    make_executor,
    parse_fixes,
    pruned_search,
)
from deepflow.search.recheck import recheck as recheck_top
from deepflow.specs import load_scenario
from deepflow.specs.files import atomic_write, check_output_path
from deepflow.specs.framework import SWITCHES, check_framework_name
from deepflow.specs.strategy import StrategySpec, strategy_text
from deepflow.units import format_bytes, format_si, format_time


def _parse_gpus(text: str | None) -> list[int | None]:
    if text is None:
        return [None]
    out = []
    for part in text.split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise ConfigError(
                f"expected a comma-separated list of integers (got {text!r})", "--gpus"
            ) from None
        if value < 1:
            raise ConfigError(f"accelerator counts must be positive (got {value})", "--gpus")
        out.append(value)
    return list(dict.fromkeys(out))


def _strategy_text(c: Candidate) -> str:
    return strategy_text(c.strategy)


def _difference(base: Candidate, other: Candidate) -> str:
    """``other``'s strategy as the keys where it differs from ``base``'s: ``pipeline_schedule
    1f1b`` (two strategies with identical results often differ in a knob that does not act,
    such as the schedule of a one-stage pipeline, which the compact form leaves out)."""
    a, b = base.strategy, other.strategy
    changed = [k for k in b if a.get(k) != b[k]]
    return ", ".join(f"{k} {b[k]}" for k in changed) or _strategy_text(other)


def _render(
    result: SearchResult, title: str, console: Console, ttt: Callable[[float], float | None]
) -> None:
    """The top table (identical results once, the equivalent strategies named under the
    first), the counts and the Pareto front. ``ttt`` maps a step time to the time to
    train, None where the scenario sets no ``training.tokens`` (then no column)."""
    show_ttt = any(ttt(c.step_time_s) is not None for c in result.top)
    table = Table(title=f"best strategies by {result.objective.value}: {title}")
    names = ["#", "GPUs", "strategy", "step time"]
    names += ["time to train"] if show_ttt else []
    names += ["MFU", "peak mem", "cost", "energy"]
    for name in names:
        # the strategy column keeps its header whole; the others wrap between words
        width = len(name) if name == "strategy" else None
        table.add_column(
            name,
            justify="left" if name == "strategy" else "right",
            min_width=width,
            overflow="fold" if name == "strategy" else "ellipsis",
        )
    rank = 0
    for group in equivalent_groups(list(result.top)):
        c = group[0]
        rank += 1
        label = str(rank) if len(group) == 1 else f"{rank}-{rank + len(group) - 1}"
        rank += len(group) - 1
        strategy = _strategy_text(c)
        if len(group) > 1:
            strategy += "".join(f"\n= {_difference(c, o)}" for o in group[1:])
        cost = "no price" if c.cost_per_step is None else f"{c.cost_per_step:,.2f}"
        energy = "no TDP" if c.energy_per_step_j is None else format_si(c.energy_per_step_j, "J")
        row = [label, str(c.num_accelerators), strategy, format_time(c.step_time_s)]
        if show_ttt:
            row.append(format_time(ttt(c.step_time_s) or float("nan")))
        row += [f"{c.mfu:.1%}", format_bytes(c.peak_memory_bytes), cost, energy]
        table.add_row(*row)
    console.print(table)
    if not result.top:
        console.print(styled("no feasible strategy", "red", " in the space"))
    rate = f" ({result.evaluations_per_s:,.0f}/s)" if result.chunks_evaluated else ""
    resumed = f", {result.chunks_resumed} chunks read back" if result.chunks_resumed else ""
    console.print(
        f"evaluated {result.evaluated:,} strategies in {result.wall_s:.2f} s{rate}{resumed}; "
        f"{result.feasible:,} feasible"
    )
    pruned = result.extra.get("pruned", False)
    if pruned:
        x = result.extra
        console.print(
            f"pruned search (exact top and Pareto front; --exhaustive evaluates all): "
            f"{x['considered']:,} strategies in {x['groups']:,} groups, each bounded by one "
            f"evaluation; {x['groups_evaluated']:,} groups evaluated, "
            f"{x['groups_out_of_memory']:,} skipped as out of memory by their memory bound, "
            f"{x['groups_dominated']:,} as outside the top list and dominated on the front"
        )
    if result.infeasible:
        reasons = ", ".join(f"{k} {v:,}" for k, v in result.infeasible.items())
        of = " (of the evaluated strategies only)" if pruned else ""
        console.print(f"infeasible{of}: {reasons}")
    if not result.has_price:
        console.print("cost per step: no price (set system.price_per_accelerator_hour)")
    title = "Pareto front: step time, peak memory, accelerators"
    front = Table(title=title)
    for name in ("step time", "peak mem", "GPUs", "strategy"):
        front.add_column(name, justify="left" if name == "strategy" else "right")
    for c in result.pareto:
        front.add_row(
            format_time(c.step_time_s),
            format_bytes(c.peak_memory_bytes),
            str(c.num_accelerators),
            _strategy_text(c),
        )
    console.print(front)


@main.command("search")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option(
    "--objective",
    type=click.Choice([o.value for o in Objective]),
    default=Objective.TIME.value,
    show_default=True,
    help="Minimize step time, cost per step (needs a price) or energy per step (TDP x time).",
)
@click.option("--top", type=int, default=10, show_default=True, help="How many strategies.")
@click.option(
    "--fix",
    "fixes",
    multiple=True,
    metavar="KNOB=VALUES",
    help="Pin or restrict a knob: tp=8, tp=1,2,4, pp=2..16, recompute=full (repeatable).",
)
@click.option("--gpus", default=None, help="Sweep accelerator counts, e.g. 256,512,1024.")
@click.option("--workers", type=int, default=1, show_default=True, help="Local worker processes.")
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDR",
    help="Dask scheduler tcp://HOST:PORT, or 'local' for a local Dask cluster of --workers.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON Lines results file; a rerun resumes from it.",
)
@click.option(
    "--chunk-size",
    type=int,
    default=DEFAULT_CHUNK_SIZE,
    show_default=True,
    help="Strategies per evaluation chunk.",
)
@click.option(
    "--recheck",
    is_flag=True,
    help="Re-check the top strategies with the event-driven simulator.",
)
@click.option(
    "--recompute-policies",
    is_flag=True,
    help="Also search recompute module sets and partial full recomputation.",
)
@click.option(
    "--framework",
    default=None,
    help="Search within what this framework profile runs (strategy.framework; its switch "
    "defaults apply). Strategies it cannot run are infeasible, with the reason.",
)
@click.option(
    "--save-best",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the best strategy as a complete scenario file (YAML) that predict reads.",
)
@click.option(
    "--prune/--no-prune",
    default=None,
    help="Exact pruned search (the default in one process): the same top strategies and "
    "Pareto front as the exhaustive search from fewer evaluations (groups of strategies "
    "whose lower bounds exclude them are skipped); the infeasible counts then cover the "
    "evaluated strategies only. --no-prune evaluates every strategy.",
)
@click.option(
    "--exhaustive",
    is_flag=True,
    help="Evaluate every strategy (the same as --no-prune): exact infeasible counts.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option(
    "--csv", "as_csv", is_flag=True, help="CSV of the top strategies (nested keys dotted)."
)
@quiet_option
@exits_2_on_bad_input
def search_command(
    scenario: str,
    objective: str,
    top: int,
    fixes: tuple[str, ...],
    gpus: str | None,
    workers: int,
    scheduler: str | None,
    out: str | None,
    chunk_size: int,
    recheck: bool,
    recompute_policies: bool,
    framework: str | None,
    save_best: str | None,
    prune: bool | None,
    exhaustive: bool,
    as_json: bool,
    as_csv: bool,
    quiet: bool,
) -> None:
    """Find the best parallelization strategies of SCENARIO by exhaustive search."""
    if as_json and as_csv:
        raise ConfigError("give one of --json and --csv", "--csv")
    loaded = load_scenario(scenario)
    if save_best is not None:
        check_output_path(save_best, "--save-best", (".yaml", ".yml"))
    if framework is not None:
        check_framework_name(framework, "--framework")
        data = {k: v for k, v in loaded.strategy.model_dump().items() if k not in SWITCHES}
        strategy = StrategySpec.model_validate({**data, "framework": framework})
        loaded = loaded.model_copy(update={"strategy": strategy})
    if loaded.strategy.collective_algorithms:
        raise ConfigError(
            "the strategy search uses the built-in collective algorithms; remove the key to "
            "search, then evaluate the result with it through deepflow predict",
            "strategy.collective_algorithms",
            scenario,
        )
    restrictions = parse_fixes(fixes)
    spaces = [
        SearchSpace.from_scenario(
            loaded, restrictions, num_accelerators=n, recompute_policies=recompute_policies
        )
        for n in _parse_gpus(gpus)
    ]
    if scheduler is not None and scheduler != "local" and workers != 1:
        raise ConfigError(
            "--workers sizes local pools; a remote Dask cluster has its own", "--workers"
        )
    for space in spaces:
        check_objective(Objective(objective), space.system)
    if exhaustive and prune:
        raise ConfigError("give one of --prune and --exhaustive", "--exhaustive")
    distributed = [
        key
        for key, given in (
            ("--out", out is not None),
            ("--workers", workers != 1),
            ("--scheduler", scheduler is not None),
        )
        if given
    ]
    if prune and distributed:
        raise ConfigError("the pruned search (--prune) runs in one process", distributed[0])
    # the pruned search unless asked for every strategy or for chunks on file or workers
    prune = not exhaustive and (prune if prune is not None else not distributed)
    executor = make_executor(workers, scheduler)
    try:
        with progress("searching: groups" if prune else "searching: chunks", quiet) as bar:
            if prune:
                result = pruned_search(
                    spaces,
                    objective=objective,
                    top=top,
                    chunk_size=chunk_size,
                    on_chunk=bar.update,
                )
            else:
                result = exhaustive_search(
                    spaces,
                    objective=objective,
                    top=top,
                    executor=executor,
                    chunk_size=chunk_size,
                    out=out,
                    on_chunk=bar.update,
                )
            checked = []
            if recheck:
                bar.step("simulator re-check of the top strategies")
                checked = recheck_top(loaded, list(result.top))
    finally:
        executor.close()
    if save_best is not None:
        if not result.top:
            raise ConfigError("no feasible strategy to save", "--save-best")
        header = (
            f"# The best strategy by {result.objective.value} of deepflow search {scenario}: "
            f"{_strategy_text(result.top[0])}\n"
        )
        text = yaml.safe_dump(best_scenario(loaded, result.top[0]), sort_keys=False)
        atomic_write(save_best, header + text, "--save-best")
    tokens, per_step = loaded.training.tokens, loaded.training.global_batch_size
    seq_len = loaded.model.seq_len

    def ttt(step_time_s: float) -> float | None:
        return time_to_train_s(tokens, per_step * seq_len / step_time_s)

    if as_csv:
        simulated = {i: r.simulated_step_time_s for i, r in enumerate(checked, 1)}
        rows = []
        for rank, c in enumerate(result.top, 1):
            row: dict[str, Any] = {"rank": rank, "num_accelerators": c.num_accelerators}
            row.update(step_time_s=c.step_time_s, time_to_train_s=ttt(c.step_time_s))
            row.update(flatten(c.to_json()))
            if recheck:
                row["simulated_step_time_s"] = simulated.get(rank)
            rows.append(row)
        click.echo(csv_text(rows), nl=False)
    elif as_json:
        data: dict[str, Any] = {"scenario": loaded.name, **result.to_json()}
        if prune:
            data["pruned"] = result.extra
        if recheck:
            data["recheck"] = [
                {
                    "rank": i,
                    "step_time_s": r.candidate.step_time_s,
                    "simulated_step_time_s": r.simulated_step_time_s,
                }
                for i, r in enumerate(checked, 1)
            ]
        click.echo(json_text(data))
    else:
        _render(result, f"{loaded.name} ({loaded.model.name})", make_console(), ttt)
        for i, r in enumerate(checked, 1):
            click.echo(
                f"simulator re-check #{i}: closed form {r.candidate.step_time_s:.4g} s, "
                f"simulated {r.simulated_step_time_s:.4g} s ({r.difference:+.1%})"
            )
