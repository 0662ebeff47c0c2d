"""Progress bars for the commands that can run for seconds (rich, on stderr).

A bar shows only where a person watches: off when stderr is not a terminal (pipes, files,
CI logs, ``--json`` consumers) and with ``--quiet``; it is transient, so the finished
command leaves only its result. Counts come from the library's own callbacks
(``on_progress(done, total)``); where a step has none, the bar names the step and shows the
elapsed time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from deepflow.report.text import make_console

__all__ = ["Reporter", "progress"]


class Reporter:
    """What a command calls while it works: :meth:`step` names what runs now (an
    indeterminate bar), :meth:`update` gives a count; both do nothing when the bar is off."""

    def __init__(self, bar: Progress | None, task: TaskID | None) -> None:
        self._bar = bar
        self._task = task

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def step(self, description: str) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=description, completed=0, total=None)

    def update(self, done: int, total: int | None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total)


@contextmanager
def progress(
    description: str, quiet: bool = False, console: Console | None = None
) -> Iterator[Reporter]:
    """A transient progress bar on ``console`` (default: stderr) while the block runs;
    none when ``quiet`` or when the console is not a terminal."""
    console = console or make_console(stderr=True)
    if quiet or not console.is_terminal:
        yield Reporter(None, None)
        return
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task(description, total=None)
    with bar:
        yield Reporter(bar, task)
