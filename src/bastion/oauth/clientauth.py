"""Which client is calling, by the credentials it presents (RFC 6749 2.3, RFC 7523 2.2).

Exactly one method per request: HTTP Basic (``client_secret_basic``), ``client_id`` and
``client_secret`` in the form (``client_secret_post``), or a signed assertion
(``private_key_jwt``). Presenting two is an error, as RFC 6749 2.3 requires.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_plus

from bastion.oauth.assertion import ASSERTION_TYPE, unverified_client

Method = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]
METHODS: tuple[Method, ...] = ("client_secret_basic", "client_secret_post", "private_key_jwt")
#: What a client id may be (RFC 6749 allows more; these are what ``clients create`` makes).
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")
MAX_ID_LENGTH = 64


def valid_client_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_LENGTH and all(c in _ID_CHARS for c in value)


@dataclass(frozen=True, slots=True)
class Presented:
    """The credentials of one request; ``client_id`` is not proven yet."""

    method: Method
    client_id: str
    secret: str = ""
    assertion: str = ""


@dataclass(frozen=True, slots=True)
class Malformed:
    """The request's credentials cannot be read: ``invalid_request`` (400), or
    ``invalid_client`` (401) when no usable credentials were presented."""

    error: Literal["invalid_request", "invalid_client"]
    description: str


def presented(authorization: str | None, form: dict[str, str]) -> Presented | Malformed:
    """The one set of client credentials in the request (headers' ``Authorization`` and the form)."""
    found: list[Presented] = []
    form_id = form.get("client_id")
    if authorization is not None:
        basic = _basic(authorization)
        if isinstance(basic, Malformed):
            return basic
        found.append(basic)
    if "client_secret" in form:
        if form_id is None:
            return Malformed("invalid_request", "client_secret needs client_id.")
        found.append(Presented("client_secret_post", form_id, secret=form["client_secret"]))
    if "client_assertion" in form or "client_assertion_type" in form:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return Malformed("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}.")
        assertion = form.get("client_assertion", "")
        claimed = unverified_client(assertion)
        if claimed is None:
            return Malformed("invalid_client", "The client assertion cannot be read.")
        found.append(Presented("private_key_jwt", claimed, assertion=assertion))
    if not found:
        return Malformed("invalid_client", "Client authentication is required.")
    if len(found) > 1:
        return Malformed("invalid_request", "Use exactly one client authentication method.")
    client = found[0]
    if form_id is not None and form_id != client.client_id:
        return Malformed("invalid_request", "client_id does not match the client's credentials.")
    if not valid_client_id(client.client_id):
        return Malformed("invalid_client", "Client authentication failed.")
    return client


def _basic(authorization: str) -> Presented | Malformed:
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return Malformed("invalid_client", "Only HTTP Basic client authentication is accepted in Authorization.")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return Malformed("invalid_request", "The Basic credentials are not valid base64 UTF-8.")
    user, colon, password = decoded.partition(":")
    if not colon:
        return Malformed("invalid_request", "The Basic credentials have no ':'.")
    # RFC 6749 2.3.1: both parts are form-urlencoded before being joined.
    return Presented("client_secret_basic", unquote_plus(user), secret=unquote_plus(password))
