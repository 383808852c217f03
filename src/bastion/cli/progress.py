"""Progress for the CLI's long operations (rich), on standard error and only on a terminal:
piped or redirected output and ``--json`` stay quiet, so scripts read exactly what they did
before. Transient: the bar is gone once the operation ends, leaving the command's output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.markup import escape

from bastion.cli.output import err


def shown(quiet: bool) -> bool:
    """Whether to show progress: a terminal on standard error, and not ``--json``."""
    return err.is_terminal and not quiet


@contextmanager
def counting(description: str, total: int | None, *, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A bar of ``total`` items (a spinner and a count when the total is unknown); the context
    gives the function that adds what was just done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True, disable=not shown(quiet)) as bar:
        task = bar.add_task(escape(description), total=total)
        yield lambda done: bar.advance(task, done)


@contextmanager
def working(description: str, *, quiet: bool) -> Iterator[None]:
    """A spinner with ``description`` while one long step runs (nothing to count)."""
    if not shown(quiet):
        yield
        return
    with err.status(escape(description)):
        yield
