"""``bastion keys create|list|revoke|rotate``: consumers' API keys.

A key is printed once, as the last line of ``create`` or ``rotate``, and is not kept: the
store holds only its keyed hash. Every other command names keys by their public id (the
``bst_<id>…`` prefix shows it).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.consumers import table
from bastion.cli.output import err, out
from bastion.cli.storeaccess import configured_store, parse_duration, parse_scopes, when

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Configuration file (its `store:` says where the store is)."),
]
KeyArg = Annotated[str, typer.Argument(help="The key's id (from `bastion keys list`), or the key itself.")]

keys_app = typer.Typer(name="keys", help="Create, list, revoke and rotate API keys.", no_args_is_help=True)


def _key_id(given: str) -> str:
    """A key id from what the user gave: the id, the shown prefix, or the whole key."""
    from bastion.stages.auth import keyformat

    given = given.strip().rstrip("…")
    if given.startswith(keyformat.PREFIX):
        return keyformat.key_id(given)
    return given


def _show_new_key(secret: str) -> None:
    # The key last, alone on its line, so `tail -n1` takes it; stderr carries the advice so
    # that stdout's last line is the key even when both go to one terminal.
    err.print("Store it now: it is shown only this once and cannot be recovered.", markup=False)
    out.print(secret, markup=False, soft_wrap=True)


@keys_app.command("create")
def create(
    consumer: Annotated[str, typer.Argument(help="The consumer who will hold the key.")],
    scopes: Annotated[str | None, typer.Option("--scopes", help="Scopes it grants, comma-separated.")] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime: 90d, 24h, 30m, 2w (default: none).")
    ] = None,
    config: ConfigOpt = Path("bastion.yaml"),
) -> None:
    """Create an API key for a consumer; the key is the last line of the output, shown once."""
    from bastion.store import keys
    from bastion.store.models import utcnow

    scope_list = parse_scopes(scopes)
    expires_at = utcnow() + parse_duration(expires, "--expires") if expires else None
    with configured_store(config) as store:
        pepper = store.pepper
        with store.write() as session:
            new = keys.create(session, pepper, consumer, scope_list, expires_at)
    record = new.record
    out.print(
        f"created API key {record.id} for {consumer} (scopes: {' '.join(record.scopes) or '-'}; "
        f"expires: {when(record.expires_at)})",
        markup=False,
    )
    _show_new_key(new.secret)


@keys_app.command("list")
def list_(
    consumer: Annotated[str | None, typer.Argument(help="Only this consumer's keys.")] = None,
    config: ConfigOpt = Path("bastion.yaml"),
) -> None:
    """List API keys by id and prefix (never the keys themselves), with their state."""
    from bastion.store import keys
    from bastion.store.models import utcnow

    now = utcnow()
    with configured_store(config) as store, store.read() as session:
        found = keys.list_keys(session, consumer)
    if not found:
        out.print("no API keys" + (f" for {consumer}" if consumer else ""), markup=False)
        return
    rows = []
    for key, name in found:
        if key.revoked_at is not None:
            state = "revoked"
        elif key.expires_at is not None and key.expires_at <= now:
            state = "expired"
        elif key.replaced_by is not None:
            state = f"rotated->{key.replaced_by}"
        else:
            state = "active"
        rows.append((key.id, key.prefix, name, ",".join(key.scopes) or "-", state, when(key.created_at),
                     when(key.expires_at), when(key.last_used_at)))
    table(("ID", "PREFIX", "CONSUMER", "SCOPES", "STATE", "CREATED", "EXPIRES", "LAST USED"), rows)


@keys_app.command("revoke")
def revoke(key: KeyArg, config: ConfigOpt = Path("bastion.yaml")) -> None:
    """Revoke an API key: gateways refuse it within about a second."""
    from bastion.store import keys

    key_id = _key_id(key)
    with configured_store(config) as store, store.write() as session:
        changed = keys.revoke(session, key_id)
    out.print(f"revoked API key {key_id}" if changed else f"API key {key_id} was revoked already", markup=False)


@keys_app.command("rotate")
def rotate(
    key: KeyArg,
    overlap: Annotated[
        str, typer.Option("--overlap", help="How long the old key keeps working: 24h, 7d, 0s (default 24h).")
    ] = "24h",
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime of the new key (default: as long as the old one's).")
    ] = None,
    config: ConfigOpt = Path("bastion.yaml"),
) -> None:
    """Replace an API key by a new one with the same consumer and scopes; the old one works
    until the overlap ends. The new key is the last line of the output, shown once."""
    from bastion.store import keys
    from bastion.store.models import utcnow

    window = _overlap(overlap)
    lifetime = parse_duration(expires, "--expires") if expires else None
    key_id = _key_id(key)
    with configured_store(config) as store:
        pepper = store.pepper
        with store.write() as session:
            old = keys.get(session, key_id)
            if lifetime is None and old.expires_at is not None:
                lifetime = old.expires_at - old.created_at  # the same lifetime as the key it replaces
            new = keys.rotate(session, pepper, key_id, window, utcnow() + lifetime if lifetime else None)
            old_end = old.expires_at
    out.print(
        f"rotated API key {key_id} (works until {when(old_end)}) to {new.record.id} "
        f"(expires: {when(new.record.expires_at)})",
        markup=False,
    )
    _show_new_key(new.secret)


def _overlap(text: str) -> timedelta:
    if text.strip() in ("0", "0s"):
        return timedelta(0)
    return parse_duration(text, "--overlap")

