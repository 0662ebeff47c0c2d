"""The root command group; subcommands live in sibling modules and register here."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from deepflow.errors import DeepflowError

F = TypeVar("F", bound=Callable[..., Any])


def exits_2_on_bad_input(func: F) -> F:
    """Map deepflow's input errors to exit code 2 with a one-line message on stderr."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DeepflowError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(package_name="deepflow")
def main() -> None:
    """Predict, simulate and optimize distributed deep-learning training."""


def _register() -> None:
    from deepflow.cli import commands  # noqa: F401  (imports register the subcommands)


_register()
