"""What every command prints with: the two consoles and the configuration error printer.

A module of its own so that the command modules (``app``, ``run``, ``tester``) share it
without importing one another.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

# soft_wrap: never break a message across lines (errors must stay greppable, one per line).
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def print_config_error(exc: Exception) -> None:
    """Print a :class:`ConfigError` one located problem a line, anything else as one line."""
    from bastion.config import ConfigError  # the loader, and all it imports, only when it is needed

    if isinstance(exc, ConfigError):
        err.print(f"[bold red]error:[/] the configuration is invalid ({len(exc.issues)} problem(s)):")
        for issue in exc.issues:
            err.print(f"  {issue}", markup=False)
    else:
        err.print("[bold red]error:[/] " + escape(f"{exc}"))
