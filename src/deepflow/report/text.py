"""Human-readable reports (rich tables); the data comes computed, this only renders."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deepflow.estimate.prediction import Prediction
from deepflow.specs.framework import framework_profile
from deepflow.specs.scenario import Scenario
from deepflow.units import format_bytes, format_si, format_time


def make_console(stderr: bool = False) -> Console:
    """The console every command prints through. Markup is off: names and reasons come
    from user files, and a name such as ``[/]`` must print as itself, not raise rich's
    ``MarkupError``; styles are applied with :class:`~rich.text.Text` instead."""
    return Console(markup=False, stderr=stderr)


def compact_table(title: str) -> Table:
    """A table for many columns: a rule under the header, no vertical lines, one space
    between columns, so that eight or nine numbers fit 80 columns side by side."""
    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1))


def add_columns(table: Table, names: tuple[str, ...], text: tuple[str, ...] = ()) -> None:
    """Add columns to ``table``: those in ``text`` left-aligned and wrapping, the others
    numbers, right-aligned and never wrapped. Nothing is shortened to an ellipsis: where 80
    columns cannot hold a cell it folds onto the next line ("fold"), so every digit stays
    on the screen."""
    for name in names:
        if name in text:
            table.add_column(name, overflow="fold")
        else:
            table.add_column(name, justify="right", no_wrap=True, overflow="fold")


def styled(label: str, style: str, rest: str = "") -> Text:
    """``label`` in ``style`` followed by plain ``rest`` (no markup parsing)."""
    return Text.assemble((label, style), rest)


def strategy_line(scenario: Scenario) -> str:
    """The strategy of ``scenario`` in one line, as every report prints it (enum values,
    never their Python reprs)."""
    s = scenario.strategy
    etp = f"expert_tp={s.etp} " if s.etp != s.tp else ""
    dispatcher = f"dispatcher={s.moe_dispatcher} " if s.moe_dispatcher != "alltoall" else ""
    recipe = s.effective_fp8_recipe
    precision = s.precision.value + (f" ({recipe.value})" if recipe is not None else "")
    return (
        f"dp={s.dp} tp={s.tp} pp={s.pp} vpp={s.vpp} cp={s.cp} ep={s.ep} {etp}{dispatcher}"
        f"sp={s.sequence_parallel} zero={s.zero} recompute={s.recompute.value} "
        f"micro_batch={s.micro_batch_size} {precision} {s.schedule.value}; "
        f"global batch {scenario.training.global_batch_size} x {scenario.model.seq_len} tokens"
    )


def render_prediction(prediction: Prediction, scenario: Scenario, console: Console) -> None:
    """Print a prediction: headline numbers, where the time goes, where the memory goes."""
    s = scenario.strategy
    console.print(
        styled(
            scenario.name,
            "bold",
            f": {scenario.model.name} on {scenario.system.num_accelerators} x "
            f"{scenario.system.accelerator.name} ({scenario.system.name})",
        )
    )
    profile = framework_profile(s.framework)
    console.print(f"framework: {s.framework} ({profile.description})")
    console.print(f"strategy: {strategy_line(scenario)}")
    if not prediction.feasible:
        console.print(styled("infeasible", "red", f": {prediction.reason}"))
        return
    head = Table(show_header=False, box=None)
    head.add_row("step time", format_time(prediction.step_time_s))
    head.add_row("throughput", f"{format_si(prediction.tokens_per_s, 'tokens/s')}")
    head.add_row("MFU / HFU", f"{prediction.mfu:.1%} / {prediction.hfu:.1%}")
    head.add_row("model FLOPs/step", format_si(prediction.model_flops_per_step, "FLOP"))
    head.add_row(
        "peak memory",
        f"{format_bytes(prediction.peak_memory_bytes)} "
        f"(stage {prediction.peak_memory_stage}, capacity "
        f"{format_bytes(scenario.system.accelerator.memory_capacity)})",
    )
    head.add_row("micro-batches", str(prediction.micro_batches))
    if prediction.time_to_train_s is not None:
        head.add_row("time to train", format_time(prediction.time_to_train_s))
    console.print(head)
    time_table = Table(title="where the step time goes")
    time_table.add_column("part")
    time_table.add_column("time", justify="right")
    time_table.add_column("share", justify="right")
    for key, value in prediction.breakdown_s.items():
        if value > 0:
            time_table.add_row(key, format_time(value), f"{value / prediction.step_time_s:.1%}")
    mem_table = Table(title="memory of the fullest device")
    mem_table.add_column("kind")
    mem_table.add_column("bytes", justify="right")
    for key, value in prediction.memory_bytes.items():
        mem_table.add_row(key, format_bytes(value))
    console.print(time_table)
    console.print(mem_table)
