"""The ``deepflow`` command line.

Thin by design (docs/STYLE.md, practice 14): each command loads specs, calls library
functions, formats the result (a table for people, ``--json`` for scripts), and maps errors
to exit codes: a :class:`~deepflow.errors.DeepflowError` in user input exits 2 with its
message on stderr, never a traceback.
"""

from __future__ import annotations

from deepflow.cli.app import main

__all__ = ["main"]
