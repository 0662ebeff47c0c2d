"""``deepflow collective``: time, algorithm bandwidth and bus bandwidth of one collective.

The collective spans every accelerator of ``--nodes`` nodes of the ``--system`` preset,
placed on its two-level hierarchy; the cost is the network layer's closed form
(:func:`deepflow.network.collective_time`). ``--sweep`` prints an nccl-tests-style table
over sizes doubling up to ``--size``.

``--msccl FILE.xml`` replaces the built-in algorithm with an MSCCL-IR algorithm: the file is
parsed and checked on symbolic data (:mod:`deepflow.interop.msccl`), turned into the network
layer's step program, and costed by the program's closed form
(:class:`deepflow.network.ProgramAlgorithm`); its ``coll`` must be OP and its ``ngpus`` the
number of ranks. ``--simulate`` also runs the program chunk by chunk on the system's
link-level topology (scale-up switches joined by a scale-out switch).
"""

from __future__ import annotations

import click

from deepflow.cli.app import exits_2_on_bad_input, json_text, main
from deepflow.errors import ConfigError
from deepflow.interop.msccl import msccl_algorithm, read_msccl, verify_collective
from deepflow.network import (
    Algorithm,
    Collective,
    Hierarchy,
    ProgramAlgorithm,
    bus_bandwidth,
    collective_time,
    place_group,
    simulate_program,
)
from deepflow.network.topologies import multi_dim
from deepflow.specs import system_from
from deepflow.units import Dimension, parse_quantity

_OPS = {op.value.replace("-", ""): op for op in Collective}


def _parse_op(value: str) -> Collective:
    key = value.strip().lower().replace("-", "").replace("_", "")
    if key not in _OPS:
        known = ", ".join(op.value for op in Collective)
        raise ConfigError(f"unknown collective {value!r}; known: {known}", "OP")
    return _OPS[key]


def _parse_algorithm(value: str) -> Algorithm:
    try:
        return Algorithm.parse(value)
    except ValueError:
        known = ", ".join(a.value for a in Algorithm)
        raise ConfigError(f"unknown algorithm {value!r}; known: {known}", "--algorithm") from None


def _parse_size(value: str, option: str) -> float:
    try:
        size = parse_quantity(value, Dimension.BYTES)
    except ConfigError as exc:
        raise ConfigError(exc.message, option) from None
    if size <= 0:
        raise ConfigError(f"must be positive, got {value!r}", option)
    return size


def _msccl(path: str, op: Collective, n: int) -> ProgramAlgorithm:
    """The MSCCL-IR algorithm of ``path``, checked against the collective it stands for."""
    algo = read_msccl(path)
    verify_collective(algo)
    program = msccl_algorithm(algo)
    if program.program.op is not op:
        raise ConfigError(
            f"{path}: the algorithm implements {program.program.op.value}, not {op.value}",
            "--msccl",
        )
    if program.program.ranks != n:
        raise ConfigError(
            f"{path}: the algorithm is written for {program.program.ranks} ranks, the "
            f"collective spans {n}",
            "--msccl",
        )
    return program


def _row(op: Collective, size: float, n: int, t: float) -> dict[str, float]:
    return {
        "size_bytes": size,
        "time_s": t,
        "algbw_Bps": size / t if t > 0 else 0.0,
        "busbw_Bps": bus_bandwidth(op, size, n, t),
    }


@main.command("collective")
@click.argument("op")
@click.option("--size", default="256MiB", show_default=True, help="Buffer per rank, e.g. 256MiB.")
@click.option("--system", default="dgx-a100-80gb", show_default=True, help="System preset.")
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--algorithm", default="ring", show_default=True, help="ring, direct, tree ...")
@click.option(
    "--msccl",
    "msccl_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="MSCCL-IR XML algorithm to use instead of --algorithm.",
)
@click.option(
    "--simulate",
    "run_sim",
    is_flag=True,
    help="Also simulate the --msccl program chunk by chunk on the link-level topology.",
)
@click.option("--sweep", is_flag=True, help="Table over sizes doubling from --min-size.")
@click.option("--min-size", default="1KiB", show_default=True, help="First size of --sweep.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@exits_2_on_bad_input
def collective_command(
    op: str,
    size: str,
    system: str,
    nodes: int,
    algorithm: str,
    msccl_path: str | None,
    run_sim: bool,
    sweep: bool,
    min_size: str,
    as_json: bool,
) -> None:
    """Time of collective OP (all-reduce, reduce-scatter, all-gather, all-to-all, broadcast,
    reduce) over all accelerators of NODES nodes of SYSTEM."""
    collective = _parse_op(op)
    top = _parse_size(size, "--size")
    spec = system_from(system, "--system")
    n = nodes * spec.accelerators_per_node
    hierarchy = Hierarchy.from_system(spec)
    group = place_group(n, 1, hierarchy.scale_up_size)
    alg: Algorithm | ProgramAlgorithm
    if msccl_path is not None:
        alg = _msccl(msccl_path, collective, n)
        alg_name = f"msccl:{alg.name}"
    else:
        if run_sim:
            raise ConfigError(
                "needs --msccl (the built-in algorithms' cost is exact)", "--simulate"
            )
        alg = _parse_algorithm(algorithm)
        alg_name = alg.value
    if sweep:
        low = _parse_size(min_size, "--min-size")
        sizes = []
        s = low
        while s <= top:
            sizes.append(s)
            s *= 2
        sizes = sizes or [top]
    else:
        sizes = [top]
    times = collective_time(collective, sizes, group, hierarchy, alg)
    rows = [_row(collective, s, n, float(t)) for s, t in zip(sizes, times, strict=True)]
    if run_sim and isinstance(alg, ProgramAlgorithm):
        topology = multi_dim(hierarchy.dims(nodes)[: 1 if nodes == 1 else 2])
        for r, s in zip(rows, sizes, strict=True):
            r["simulated_time_s"] = simulate_program(alg.program, topology, s).time
    header = {
        "op": collective.value,
        "algorithm": alg_name,
        "system": spec.name,
        "nodes": nodes,
        "ranks": n,
    }
    if as_json:
        click.echo(json_text({**header, "results": rows} if sweep else {**header, **rows[0]}))
        return
    click.echo(f"# {collective.value}, {alg_name}, {n} ranks ({nodes} x {spec.name})")
    if not sweep:
        r = rows[0]
        click.echo(f"time   {r['time_s'] * 1e6:12.2f} us")
        if "simulated_time_s" in r:
            click.echo(f"sim    {r['simulated_time_s'] * 1e6:12.2f} us")
        click.echo(f"algbw  {r['algbw_Bps'] / 1e9:12.2f} GB/s")
        click.echo(f"busbw  {r['busbw_Bps'] / 1e9:12.2f} GB/s")
        return
    click.echo(
        f"{'size(B)':>14} {'count':>12} {'type':>6} {'time(us)':>12} "
        f"{'algbw(GB/s)':>12} {'busbw(GB/s)':>12}"
    )
    for r in rows:
        click.echo(
            f"{int(r['size_bytes']):>14} {int(r['size_bytes'] // 4):>12} {'float':>6} "
            f"{r['time_s'] * 1e6:>12.2f} {r['algbw_Bps'] / 1e9:>12.2f} {r['busbw_Bps'] / 1e9:>12.2f}"
        )
