"""``bastion oauth``: the built-in authorization server's clients, and token revocation."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from bastion.cli.output import out, print_config_error
from bastion.cli.remote import AdminUrlOpt, JsonOpt, TokenOpt, print_json, remote
from bastion.cli.storeaccess import configured_store, fail

if TYPE_CHECKING:
    from bastion.config import LoadedConfig
    from bastion.oauth.store import OAuthStore

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Configuration file; relative paths inside it resolve against its folder."),
]

oauth_app = typer.Typer(help="The built-in OAuth 2.0 authorization server: clients and token revocation.",
                        no_args_is_help=True)
clients_app = typer.Typer(help="OAuth clients (client credentials grant).", no_args_is_help=True)
oauth_app.add_typer(clients_app, name="clients")


def _load(config: Path) -> LoadedConfig:
    from bastion.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None


@contextmanager
def _store(config: Path) -> Iterator[OAuthStore]:
    """The configured store's OAuth side (errors exit as the store's commands do)."""
    from bastion.oauth.sqlstore import SqlOAuthStore

    with configured_store(config) as store:
        yield SqlOAuthStore(store)


@clients_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The client id (A-Z a-z 0-9 . _ ~ -, at most 64).")],
    consumer: Annotated[str, typer.Option("--consumer", help="The consumer the client's tokens act for.")],
    scopes: Annotated[str, typer.Option("--scopes", help="Scopes the client may ask for: a,b.")] = "",
    jwks: Annotated[
        Path | None,
        typer.Option("--jwks", help="The client's public keys (a JWK Set file): private_key_jwt, no secret."),
    ] = None,
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a client. Prints its secret once, as the last line (none with --jwks)."""
    from bastion.oauth.clients import BadClient, create_client, parse_scopes
    from bastion.oauth.store import ClientExists

    keys = None
    if jwks is not None:
        try:
            keys = json.loads(jwks.read_text())
        except (OSError, ValueError) as exc:
            raise fail(f"cannot read the JWKS {jwks}: {exc}", 2) from None
    api = remote(admin_url, token)
    if api is not None:
        try:
            wanted = list(parse_scopes(scopes))
        except BadClient as exc:
            raise fail(str(exc), 2) from None
        body: dict[str, object] = {"client_id": name, "consumer": consumer, "scopes": wanted}
        if keys is not None:
            body["jwks"] = keys
        made = api.call("POST", "/api/v1/oauth-clients", body)
        if as_json:
            print_json(made)
            return
        shown = made["client"]
        out.print(escape(f"created OAuth client {shown['client_id']} for consumer {shown['consumer']} "
                         f"(scopes: {' '.join(shown['scopes']) or '-'}; authenticates with {shown['auth_method']})"))
        if made["secret"] is not None:
            out.print("client secret (shown once, keep it safe):")
            out.print(made["secret"], markup=False)
        return
    with _store(config) as store:
        try:
            created = create_client(store, name, consumer, parse_scopes(scopes), keys)
        except (BadClient, ClientExists) as exc:
            raise fail(str(exc), 2) from None
    client = created.client
    method = "private_key_jwt" if created.secret is None else "client_secret_basic or client_secret_post"
    out.print(escape(f"created OAuth client {client.client_id} for consumer {client.consumer_name} "
                     f"(scopes: {' '.join(client.scopes) or '-'}; authenticates with {method})"))
    if created.secret is not None:
        out.print("client secret (shown once, keep it safe):")
        out.print(created.secret, markup=False)


@clients_app.command("list")
def list_clients(config: ConfigOpt = Path("bastion.yaml"), admin_url: AdminUrlOpt = None, token: TokenOpt = None,
                 as_json: JsonOpt = False) -> None:
    """List the clients (never their secrets)."""
    api = remote(admin_url, token)
    if api is not None:
        found = api.items("/api/v1/oauth-clients")
        for c in found:
            if as_json:
                print_json(c)
                continue
            state = f"revoked {c['revoked_at'][:16]}" if c["revoked_at"] else "active"
            out.print(escape(f"{c['client_id']:<24} consumer={c['consumer']:<16} auth={c['auth_method']:<16} "
                             f"scopes={' '.join(c['scopes']) or '-'}  created {c['created_at'][:16]}  {state}"))
        if not found and not as_json:
            out.print("no OAuth clients (bastion oauth clients create NAME --consumer C)")
        return
    with _store(config) as store:
        clients = store.list_clients()
    if not clients:
        out.print("no OAuth clients (bastion oauth clients create NAME --consumer C)")
        return
    for c in clients:
        state = f"revoked {c.revoked_at:%Y-%m-%d %H:%M}" if c.revoked_at else "active"
        out.print(escape(f"{c.client_id:<24} consumer={c.consumer_name:<16} auth={c.auth_method:<16} "
                         f"scopes={' '.join(c.scopes) or '-'}  created {c.created_at:%Y-%m-%d %H:%M}  {state}"))


@clients_app.command("revoke")
def revoke_client(
    name: Annotated[str, typer.Argument(help="The client id.")], config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None, token: TokenOpt = None,
) -> None:
    """Revoke a client: no more tokens for it, and its tokens introspect as inactive."""
    from bastion.oauth.clients import revoke_client as revoke

    api = remote(admin_url, token)
    if api is not None:
        from urllib.parse import quote

        if not api.call("POST", f"/api/v1/oauth-clients/{quote(name, safe='')}/revoke")["changed"]:
            raise fail(f"no active OAuth client {name!r} (`bastion oauth clients list` shows them)")
        out.print(escape(f"revoked OAuth client {name}"))
        return
    with _store(config) as store:
        if not revoke(store, name):
            raise fail(f"no active OAuth client {name!r} (`bastion oauth clients list` shows them)")
    out.print(escape(f"revoked OAuth client {name}"))


@oauth_app.command("revoke")
def revoke_token(
    token: Annotated[str, typer.Argument(help="An access token, or the jti of one.")],
    config: ConfigOpt = Path("bastion.yaml"),
) -> None:
    """Revoke an access token on every gateway instance sharing the state backend (within 1 s)."""
    from bastion.oauth.server import settings_of
    from bastion.oauth.tokens import LEEWAY_SECONDS

    loaded = _load(config)
    cfg = loaded.config
    if cfg.backends.state != "redis":
        raise fail("revocation reaches the running gateways through a shared state backend: set "
                    "backends: {state: redis, redis: {url: ...}} (the memory backend lives inside each worker)", 2)
    settings = settings_of(cfg)
    jti = token
    # A bare jti: kept as long as any token of this server may live.
    expires = time.time() + settings.token_ttl + LEEWAY_SECONDS
    if token.count(".") == 2:
        found = _jti_of(config, token)
        if found is None:
            out.print("the token is not a valid token of this server (or has expired): nothing to revoke")
            return
        jti, expires = found
    asyncio.run(_publish(loaded, jti, expires))
    out.print(escape(f"revoked token {jti}"))


def _jti_of(config: Path, token: str) -> tuple[str, float] | None:
    """The jti of a token of ours and until when it must be refused."""
    from bastion.oauth.keys import KeySet, load_key
    from bastion.oauth.server import settings_of
    from bastion.oauth.tokens import LEEWAY_SECONDS, decode

    settings = settings_of(_load(config).config)
    with _store(config) as store:
        keys = KeySet([load_key(k, store.pepper) for k in store.signing_keys()])
    now = time.time()
    claims = decode(token, keys, issuer=settings.issuer, audience=settings.audience, now=now)
    if not isinstance(claims, dict):
        return None
    return str(claims["jti"]), float(claims["exp"]) + LEEWAY_SECONDS


async def _publish(loaded: LoadedConfig, jti: str, expires: float) -> None:
    from bastion.errors import DependencyUnavailable
    from bastion.services import WorkerIdentity, build_services, new_instance_id
    from bastion.stages.auth.revocations import publish_revocation

    services = build_services(loaded.config.backends, WorkerIdentity(new_instance_id(), 0, 1, os.getpid()))
    try:
        await publish_revocation(services.state, jti, expires, time.time())
    except DependencyUnavailable as exc:
        raise fail(str(exc)) from None
    finally:
        await services.close()


def register(app: typer.Typer) -> None:
    """Add ``oauth`` (clients, revoke) to the command line, and ``clients`` as a short name for
    ``oauth clients`` (the control plane's nouns: consumers, keys, clients, routes...)."""
    app.add_typer(oauth_app, name="oauth")
    app.add_typer(clients_app, name="clients")
