"""The root command group; subcommands live in sibling modules and register here."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from deepflow.errors import DeepflowError

F = TypeVar("F", bound=Callable[..., Any])


OUT_OF_MEMORY = (
    "error: out of memory: the input needs more memory than this process may use "
    "(MemoryError; a smaller model, cluster, batch or trace fits)"
)
"""The one line a command prints when an allocation fails (a memory ceiling such as
``ulimit -v``, or a machine out of memory)."""


def exits_2_on_bad_input(func: F) -> F:
    """Map deepflow's input errors to exit code 2 with a one-line message on stderr; an
    allocation that fails (``MemoryError``) too, with :data:`OUT_OF_MEMORY`."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DeepflowError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except MemoryError:
            click.echo(OUT_OF_MEMORY, err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``: JSON has no ``NaN`` or
    ``Infinity`` (RFC 8259 sec. 6), and Python's ``json`` writes them unless told not to.
    An infinite time or price means "none" (infeasible, no price set); the object's other
    keys (``feasible``, ``reason``) say why."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        return finite_json(value.item())
    return value


def json_text(value: Any, indent: int | None = None) -> str:
    """The JSON every ``--json`` option prints: strict (no ``NaN``/``Infinity``)."""
    return json.dumps(finite_json(value), indent=indent, allow_nan=False)


quiet_option = click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="No progress bar (there is none either when stderr is not a terminal).",
)
"""The ``--quiet`` flag of every command that shows a progress bar."""


@click.group()
@click.version_option(package_name="deepflow")
def main() -> None:
    """Predict, simulate and optimize distributed deep-learning training."""


def _register() -> None:
    from deepflow.cli import commands  # noqa: F401  (imports register the subcommands)


_register()
