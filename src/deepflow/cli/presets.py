"""``deepflow presets``: the built-in accelerators, systems and models, with sources."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich import box
from rich.table import Table

from deepflow.cli.app import exits_2_on_bad_input, json_text, main
from deepflow.report.presets import preset_rows
from deepflow.report.text import make_console
from deepflow.specs.presets import KINDS

_Format = Callable[[Any], str]


def _scaled(scale: float, digits: int = 4) -> _Format:
    """A number in the column's unit (``scale`` SI units each), ``-`` for zero (absent)."""
    return lambda value: f"{value / scale:.{digits}g}" if value else "-"


# (row key, header with the column's unit, formatter): fixed units per column keep the
# numbers short enough that a table fits 80 columns without cutting any of them
_COLUMNS: dict[str, list[tuple[str, str, _Format]]] = {
    "accelerators": [
        ("name", "name", str),
        ("peak_bf16_flops", "bf16\nTFLOP/s", _scaled(1e12)),
        ("peak_fp8_flops", "fp8\nTFLOP/s", _scaled(1e12)),
        ("memory_bytes", "memory\nGiB", _scaled(2**30)),
        ("memory_bandwidth", "memory\nGB/s", _scaled(1e9)),
        ("scale_up_bandwidth", "link\nGB/s", _scaled(1e9)),
        ("tdp_w", "TDP\nW", _scaled(1)),
    ],
    "systems": [
        ("name", "name", str),
        ("accelerator", "accelerator", str),
        ("accelerators_per_node", "per\nnode", str),
        ("scale_up_size", "scale\nup", str),
        ("intra_node_bandwidth", "intra\nGB/s", _scaled(1e9)),
        ("inter_node_bandwidth", "inter\nGB/s", _scaled(1e9)),
    ],
    "models": [
        ("name", "name", str),
        ("parameters", "params\nB", _scaled(1e9)),
        ("num_layers", "layers", str),
        ("hidden_size", "hidden", str),
        ("num_attention_heads", "heads", str),
        ("num_kv_heads", "kv", str),
        ("vocab_size", "vocab", str),
        ("seq_len", "seq", str),
        ("num_experts", "experts", _scaled(1)),
    ],
}


@main.command("presets")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per preset (JSON Lines).")
@exits_2_on_bad_input
def presets_command(kind: str | None, as_json: bool) -> None:
    """List the built-in presets (KIND: accelerators, systems or models; default all three)
    with their key numbers (bandwidths per accelerator per direction) and first source."""
    kinds = [kind] if kind else list(KINDS)
    console = make_console()
    for k in kinds:
        rows = preset_rows(k)
        if as_json:
            for row in rows:
                click.echo(json_text({"kind": k, **row}))
            continue
        # numbers in a table narrow enough for 80 columns, sources below it, one per preset
        table = Table(
            title=f"{k} ({len(rows)})",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1, 0, 0),
        )
        cells = [[fmt(row[key]) for key, _, fmt in _COLUMNS[k]] for row in rows]
        for i, (_, header, _) in enumerate(_COLUMNS[k]):
            width = max(
                len(line) for text in [header, *(c[i] for c in cells)] for line in text.split("\n")
            )
            table.add_column(
                header, justify="left" if i == 0 else "right", no_wrap=True, min_width=width
            )
        for row_cells in cells:
            table.add_row(*row_cells)
        console.print(table)
        for row in rows:
            console.print(f"  {row['name']}: {'; '.join(row['sources'])}", overflow="fold")
        console.print()
