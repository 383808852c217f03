"""What the store's commands (``consumers``, ``keys``) share: opening the configured store,
reading durations, and turning store errors into one line and an exit code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from bastion.cli.output import err, print_config_error

if TYPE_CHECKING:
    from bastion.config import LoadedConfig
    from bastion.store import Store

_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: Longer than this is certainly a typo (and beyond what datetime arithmetic allows safely).
MAX_DURATION = timedelta(days=3650)
#: A scope is an RFC 6749 scope token: printable ASCII but space, quote and backslash.
_SCOPE = re.compile(r'^[\x21\x23-\x5b\x5d-\x7e]+$')


def parse_duration(text: str, option: str) -> timedelta:
    """``90d``, ``24h``, ``30m``, ``45s``, ``2w``: a positive duration, at most ten years."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration; write a number and a unit: 90d, 24h, 30m, 45s, 2w",
                                 param_hint=option)
    value = timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if value > MAX_DURATION:
        raise typer.BadParameter(f"{text!r} is longer than ten years", param_hint=option)
    return value


def parse_scopes(text: str | None) -> list[str]:
    """``books:read,books:write`` as a list; every scope an RFC 6749 scope token."""
    if not text:
        return []
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    for scope in scopes:
        if not _SCOPE.match(scope):
            raise typer.BadParameter(f"{scope!r} is not a scope (printable ASCII, no space, quote or backslash)",
                                     param_hint="--scopes")
    return scopes


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as the command's error; the exit to raise."""
    err.print("[bold red]error:[/] " + escape(message))
    return typer.Exit(code)


@contextmanager
def configured_store(config: Path) -> Iterator[Store]:
    """The store ``config`` configures, migrated and with its declared consumers synced.
    An invalid configuration exits 2, a store that cannot be opened or used exits 1,
    each with one clear message and no traceback."""
    with loaded_store(config) as (_, store):
        yield store


@contextmanager
def loaded_store(config: Path) -> Iterator[tuple[LoadedConfig, Store]]:
    """The loaded configuration and its store, as :func:`configured_store` opens it."""
    from bastion.asgi.config import load_any
    from bastion.config import ConfigError
    from bastion.store import StoreError, open_store

    try:
        loaded = load_any(config)  # a gateway's configuration, or an embedded mode's
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None
    try:
        store = open_store(loaded.config.store, loaded.config.consumers)
    except StoreError as exc:
        raise fail(str(exc)) from None
    try:
        yield loaded, store
    except StoreError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()


def when(value: datetime | None) -> str:
    """A timestamp as the listings show it (UTC, to the second), ``-`` for none."""
    return "-" if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")
