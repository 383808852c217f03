"""``bastion blocks list|lift``: what the detectors block now, and lifting a block early.

Blocks live in the state backend: with ``backends.state: redis`` these commands read and
lift them there (directly, or through ``--admin-url``); with the memory backend each worker
keeps its own, out of reach, and the commands say so (exit 1).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli.consumers import table
from bastion.cli.output import out
from bastion.cli.remote import AdminUrlOpt, JsonOpt, TokenOpt, print_json, remote
from bastion.cli.storeaccess import configured_store, fail

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Configuration file (its `backends:` say where the blocks are).")
]
blocks_app = typer.Typer(name="blocks", help="List the detectors' blocks and lift them.", no_args_is_help=True)


@blocks_app.command("list")
def list_(config: ConfigOpt = Path("bastion.yaml"), admin_url: AdminUrlOpt = None, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """The clients, consumers and credentials blocked now, by which detector, for how long."""
    api = remote(admin_url, token)
    found: list[dict[str, Any]]
    if api is not None:
        found = api.call("GET", "/api/v1/blocks")["items"]
    else:
        from bastion.control.api.blocks import candidates, current

        with configured_store(config) as store:
            r = _redis(config)
            subjects = candidates(store)
        found = _run(current(r, subjects))
    if as_json:
        for item in found:
            print_json(item)
        return
    if not found:
        out.print("no blocks", markup=False)
        return
    table(("KIND", "VALUE", "DETECTOR", "ENDS IN", "ALERT"),
          [(b["kind"], b["value"], b["detector"], "-" if b["expires_in"] is None else f"{b['expires_in']:.0f}s",
            b["alert"]["summary"]) for b in found])


@blocks_app.command("lift")
def lift(
    kind: Annotated[str, typer.Argument(help="ip, consumer or credential.")],
    value: Annotated[str, typer.Argument(help="The blocked IP address, consumer id or credential id.")],
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Lift a block now: every gateway sharing the backend lets the subject in within a second."""
    api = remote(admin_url, token)
    if api is not None:
        from urllib.parse import quote

        api.call("DELETE", f"/api/v1/blocks/{quote(kind, safe='')}/{quote(value, safe='')}")
        out.print(f"lifted the block of {kind} {value}", markup=False)
        return
    import getpass

    from bastion.control.api.blocks import lift as lift_now
    from bastion.control.api.blocks import peek_one
    from bastion.store import adminaudit

    r = _redis(config)
    try:
        before = _run(peek_one(r, kind, value))
    except LookupError as exc:
        raise fail(str(exc)) from None
    if before is None:
        raise fail(f"no {kind} {value!r} is blocked now")
    with configured_store(config) as store, store.write() as session:
        who = f"cli:{getpass.getuser()}"
        adminaudit.record(session, actor=who, via="cli", action="block.lift", target=f"block:{kind}:{value}",
                          source="cli", before=before)
    _run(lift_now(r, kind, value))
    out.print(f"lifted the block of {kind} {value}", markup=False)


def _redis(config: Path) -> Any:
    from bastion.config import load_config
    from bastion.control.api.blocks import BlocksUnreachable, require_shared

    try:
        return require_shared(load_config(config).config.backends)  # valid: configured_store loaded it
    except BlocksUnreachable as exc:
        raise fail(str(exc)) from None


def _run(coro: Any) -> Any:
    from bastion.errors import DependencyUnavailable

    try:
        return asyncio.run(coro)
    except DependencyUnavailable as exc:
        raise fail(str(exc)) from None
