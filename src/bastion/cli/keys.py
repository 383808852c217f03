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
from bastion.cli.remote import AdminUrlOpt, JsonOpt, TokenOpt, print_json, remote
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
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key for a consumer; the key is the last line of the output, shown once
    (with --json: one JSON object, the key in `secret`)."""
    from bastion.store import keys
    from bastion.store.models import utcnow

    scope_list = parse_scopes(scopes)
    api = remote(admin_url, token)
    if api is not None:
        lifetime = int(parse_duration(expires, "--expires").total_seconds()) if expires else None
        made = api.call("POST", "/api/v1/keys", {"consumer": consumer, "scopes": scope_list, "expires_in": lifetime})
        if as_json:
            print_json(made)
            return
        shown = made["key"]
        out.print(f"created API key {shown['id']} for {consumer} (scopes: {' '.join(shown['scopes']) or '-'}; "
                  f"expires: {shown['expires_at'] or '-'})", markup=False)
        _show_new_key(made["secret"])
        return
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
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List API keys by id and prefix (never the keys themselves), with their state."""
    from bastion.store import keys
    from bastion.store.models import utcnow

    api = remote(admin_url, token)
    if api is not None:
        found = api.items("/api/v1/keys", {"consumer": consumer})
        if as_json:
            for item in found:
                print_json(item)
            return
        if not found:
            out.print("no API keys" + (f" for {consumer}" if consumer else ""), markup=False)
            return

        def day(value: str | None) -> str:
            return "-" if value is None else value[:19] + "Z"

        table(("ID", "PREFIX", "CONSUMER", "SCOPES", "STATE", "CREATED", "EXPIRES", "LAST USED"),
              [(k["id"], k["prefix"], k["consumer"], ",".join(k["scopes"]) or "-",
                f"rotated->{k['replaced_by']}" if k["state"] == "rotated" else k["state"], day(k["created_at"]),
                day(k["expires_at"]), day(k["last_used_at"])) for k in found])
        return
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
def revoke(key: KeyArg, config: ConfigOpt = Path("bastion.yaml"), admin_url: AdminUrlOpt = None,
           token: TokenOpt = None) -> None:
    """Revoke an API key: gateways refuse it within about a second."""
    from bastion.store import keys

    key_id = _key_id(key)
    api = remote(admin_url, token)
    if api is not None:
        changed = api.call("POST", f"/api/v1/keys/{key_id}/revoke")["changed"]
        out.print(f"revoked API key {key_id}" if changed else f"API key {key_id} was revoked already", markup=False)
        return
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
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace an API key by a new one with the same consumer and scopes; the old one works
    until the overlap ends. The new key is the last line of the output, shown once."""
    from bastion.store import keys
    from bastion.store.models import utcnow

    window = _overlap(overlap)
    lifetime = parse_duration(expires, "--expires") if expires else None
    key_id = _key_id(key)
    api = remote(admin_url, token)
    if api is not None:
        body: dict[str, int] = {"overlap": int(window.total_seconds())}
        if lifetime is not None:
            body["expires_in"] = int(lifetime.total_seconds())
        made = api.call("POST", f"/api/v1/keys/{key_id}/rotate", body)
        if as_json:
            print_json(made)
            return
        out.print(f"rotated API key {key_id} (works until {made['old_key']['expires_at'] or '-'}) to "
                  f"{made['key']['id']} (expires: {made['key']['expires_at'] or '-'})", markup=False)
        _show_new_key(made["secret"])
        return
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

