"""Logging identities in: static credentials or a login flow, and a throwaway second user through sign-up.

A login request uses the media type the login operation declares (JSON, or the OAuth2 password
form); a login succeeded when its answer holds the token the identity's ``token:`` pointer names.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from bastion.tester.audit.context import Operation
from bastion.tester.scan.context import OWNER_ID_PARAMS, SELF_PATH, Scan, ScanError
from bastion.tester.scan.identities import IdentityConfig, credential_fields, json_pointer_get, signup_fields
from bastion.tester.scan.interface import Exchange, Identity, RequestPlan, ScanContext
from bastion.tester.scan.objects import norm, path_params
from bastion.tester.scan.safety import find_operation

__all__ = ["learn_own_ids", "login", "login_media_type", "login_plan", "register_identity", "secrets_of",
           "signup_operation"]

#: Profile properties holding the account's own ID, most specific first.
OWN_ID_KEYS = ("userid", "uid", "accountid", "customerid", "memberid", "id", "uuid")


async def login(scan: Scan, config: IdentityConfig) -> Identity:
    """The identity with credentials: static ones as configured, or a token from the login flow."""
    identity = Identity(
        config.name,
        role=config.role,
        headers=dict(config.headers),
        cookies=dict(config.cookies),
        query=dict(config.query),
        expired_token=config.expired_token,
        disposable=config.disposable,
    )
    auth = next((v for k, v in config.headers.items() if k.lower() == "authorization"), None)
    if auth and auth.lower().startswith("bearer "):
        identity.token = auth[7:].strip()
    flow = config.login
    if flow is None:
        return identity
    op = find_operation(scan.spec, flow.operation)
    if op is None:
        raise ScanError(f"identity {config.name}: login operation {flow.operation!r} is not in the OpenAPI document")
    plan = login_plan(scan, op, flow.body)
    exchange = await scan.send(plan, scan.anonymous)
    if not 200 <= exchange.status < 300:
        detail = exchange.error or f"HTTP {exchange.status}: {_excerpt(exchange)}"
        raise ScanError(f"identity {config.name}: login with {op.label} failed ({detail})")
    if flow.cookie is not None:
        token = set_cookie(exchange, flow.cookie)
        if token is None:
            raise ScanError(f"identity {config.name}: login with {op.label} answered {exchange.status} without "
                            f"setting the cookie {flow.cookie!r} (the login failed, or cookie: names another); the "
                            f"answer was: {_excerpt(exchange)}")
        identity.cookies[flow.cookie] = token
        identity.token = token
        _remember_credentials(identity, op, flow.body)
        return identity
    try:
        token = json_pointer_get(exchange.json(), flow.token)
    except KeyError:
        # A 2xx without a token is how some APIs say "wrong password": show what came back.
        raise ScanError(
            f"identity {config.name}: login with {op.label} answered {exchange.status} without {flow.token!r} "
            f"(the login failed, or token: points elsewhere); the answer was: {_excerpt(exchange)}"
        ) from None
    if not isinstance(token, str) or not token:
        raise ScanError(f"identity {config.name}: {flow.token!r} in the login response is not a string "
                        f"(the answer was: {_excerpt(exchange)})")
    identity.token = token
    identity.headers[flow.header] = f"{flow.scheme} {token}".strip()
    _remember_credentials(identity, op, flow.body)
    return identity


def _remember_credentials(identity: Identity, op: Operation, body: Mapping[str, Any]) -> None:
    """The login operation and the user name and password of ``body`` (for the login checks)."""
    user_field, password_field = credential_fields(body.keys())
    identity.login_operation = op
    identity.username_field, identity.password_field = user_field, password_field
    if user_field and isinstance(body.get(user_field), str):
        identity.username = body[user_field]
    if password_field and isinstance(body.get(password_field), str):
        identity.password = body[password_field]


def set_cookie(exchange: Exchange, name: str) -> str | None:
    """The value the answer's Set-Cookie headers give the cookie ``name`` (None when none sets it)."""
    for key, value in exchange.response_headers:
        if key.lower() != "set-cookie":
            continue
        cookie_name, sep, rest = value.partition("=")
        if sep and cookie_name.strip() == name:
            cookie_value = rest.split(";", 1)[0].strip().strip('"')
            return cookie_value or None
    return None


def signup_operation(scan: ScanContext, login_op: Operation | None) -> tuple[Operation, str, str] | None:
    """A public sign-up in scope: a POST with a JSON body holding a user name and a password (not the login)."""
    for op in scan.operations():
        fields = signup_fields(scan.spec, op) if op is not login_op else None
        if fields is not None:
            return op, *fields
    return None


async def register_identity(scan: Scan, template: IdentityConfig) -> Identity | str | None:
    """A second user made through the API's own sign-up, logged in like ``template``; a reason when that
    failed, None when the API has no sign-up (or ``template`` no login flow to copy)."""
    flow = template.login
    login_op = find_operation(scan.spec, flow.operation) if flow is not None else None
    found = signup_operation(scan, login_op)
    if flow is None or found is None:
        return None
    op, user_field, password_field = found
    name = "bscan" + secrets.token_hex(4)
    password = "Bscan-" + secrets.token_hex(8) + "!7a"
    plan = scan.plan(op, scan.anonymous)
    body = dict(plan.json) if isinstance(plan.json, dict) else {}
    for key in list(body):
        if "mail" in key.lower():
            body[key] = f"{name}@example.com"
    body[user_field] = f"{name}@example.com" if "mail" in user_field.lower() else name
    body[password_field] = password
    made = await scan.send(plan.copy(json=body), scan.anonymous)
    if not 200 <= made.status < 300:
        return f"registering through {op.label} answered {made.status} ({_excerpt(made)})"
    login_user, login_password = credential_fields(flow.body.keys())
    if not (login_user and login_password):
        return f"{template.name}'s login body has no user name and password fields to fill for the new account"
    config = IdentityConfig(name, "user", login=replace(flow, body={**flow.body, login_user: body[user_field],
                                                                    login_password: password}))
    try:
        identity = await login(scan, config)
    except ScanError as exc:
        return f"the account registered through {op.label} could not log in: {exc}"
    identity.registered_with = op.label
    scan.configs[name] = config
    return identity


def login_media_type(scan: Scan, op: Operation) -> str:
    """The media type the login operation declares (JSON preferred; the OAuth2 password form if only that)."""
    body, _ = scan.spec.resolve(op.node.get("requestBody"), ())
    content = body.get("content") if isinstance(body, dict) else None
    if isinstance(content, dict) and content:
        return next((m for m in content if "json" in m.lower()), None) or str(next(iter(content)))
    return "application/json"


def login_plan(scan: Scan, op: Operation, fields: Mapping[str, Any]) -> RequestPlan:
    """A login request with ``fields`` in the operation's declared media type (JSON, or a form)."""
    from urllib.parse import urlencode

    plan = RequestPlan(op, op.method.upper(), scan.plan(op, scan.anonymous).path)
    media = login_media_type(scan, op)
    if "json" in media.lower():
        plan.json, plan.content_type = dict(fields), media
    else:
        plan.body = urlencode({k: v if isinstance(v, str) else orjson.dumps(v).decode()
                               for k, v in fields.items()}).encode()
        plan.content_type = "application/x-www-form-urlencoded"
    return plan


def _excerpt(exchange: Exchange, limit: int = 200) -> str:
    text = exchange.text.strip().replace("\n", " ")
    return (text[:limit] + "...") if len(text) > limit else (text or "an empty body")


def secrets_of(identities: Sequence[Identity]) -> dict[str, str]:
    """Every credential value, mapped to the placeholder reports show (``$ALICE_TOKEN``)."""
    out: dict[str, str] = {}
    for ident in identities:
        base = re.sub(r"[^A-Z0-9]", "_", ident.name.upper())
        if ident.token:
            out[ident.token] = f"${base}_TOKEN"
        for key, value in [*ident.headers.items(), *ident.cookies.items(), *ident.query.items()]:
            secret = value[7:].strip() if value.lower().startswith("bearer ") else value
            if len(secret) >= 6:
                out.setdefault(secret, f"${base}_{re.sub(r'[^A-Z0-9]', '_', key.upper())}")
        if ident.password and len(ident.password) >= 4:
            out[ident.password] = f"${base}_PASSWORD"
        if ident.expired_token:
            out[ident.expired_token] = f"${base}_EXPIRED_TOKEN"
    return out


async def learn_own_ids(scan: Scan, identities: Sequence[Identity]) -> None:
    """Each identity's own account ID from its profile, when the document nests resources under an account
    (``/users/{user_id}/orders``): no request otherwise."""
    ops = scan.operations()
    nested = any(norm(p) in OWNER_ID_PARAMS and not op.template.endswith("{" + p + "}")
                 for op in ops for p in path_params(op.template))
    reads = [op for op in ops if op.method == "get" and not op.public and not path_params(op.template)
             and SELF_PATH.search(op.template.rstrip("/").rsplit("/", 1)[-1])]
    if not nested or not reads:
        return
    for identity in identities:
        answer = await scan.send(scan.plan(reads[0], identity), identity)
        body = answer.json()
        if not 200 <= answer.status < 300 or not isinstance(body, dict):
            continue
        keys = {norm(str(k)): v for k, v in body.items()}
        found = next((keys[k] for k in OWN_ID_KEYS if isinstance(keys.get(k), str | int)
                      and not isinstance(keys.get(k), bool)), None)
        if found is not None:
            identity.user_id = str(found)
