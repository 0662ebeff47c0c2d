"""The ``deepflow`` command line (thin: load specs, call the library, format, map errors)."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Predict, simulate and optimize distributed deep-learning training."""
