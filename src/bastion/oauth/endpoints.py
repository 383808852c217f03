"""The endpoints, as one stage that answers every request of the built-in routes.

The stage is the only one on those routes (see :mod:`bastion.oauth.routes`): it never
returns ``None``, so nothing is ever forwarded, and the routes have no upstream to
forward to. Store look-ups run in a thread; the state backend (failure counters,
assertion replay, revocations) is awaited; a backend that does not answer is a 503 under
the stage's closed failure mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from bastion.oauth import assertion as assertions
from bastion.oauth.clientauth import METHODS, Malformed, presented
from bastion.oauth.guard import AuthGuard
from bastion.oauth.paths import INTROSPECT_PATH, JWKS_PATH, METADATA_PATH, REVOKE_PATH, TOKEN_PATH
from bastion.oauth.responses import invalid_client, json_response, oauth_error, too_many_failures
from bastion.oauth.secrets import secret_matches
from bastion.oauth.server import OAuthServer
from bastion.oauth.store import ClientRecord
from bastion.oauth.tokens import LEEWAY_SECONDS, Invalid, decode, issue
from bastion.pipeline.stage import RequestOutcome, RequestStage, StageConfig
from bastion.stages.auth.revocations import load_revoked, publish_revocation
from bastion.types import Decision, Exchange, Response, header_get

STAGE_NAME = "oauth_server"
#: Largest request body the endpoints read (a form with a client assertion fits well).
MAX_BODY_BYTES = 16 * 1024
_FORM_TYPE = "application/x-www-form-urlencoded"
_MAX_FIELDS = 16
#: RFC 6749 3.3 scope-token characters (NQCHAR: printable ASCII but space, '"' and '\').
_SCOPE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}
#: Settings of the stage: fails closed; its hooks may wait for the store and the backend.
CONFIG = StageConfig(enabled=True, enforce=True, failure_mode="closed", timeout=5.0)

Handler = Callable[[Exchange], Response | Awaitable[Response]]


class OAuthEndpoints(RequestStage):
    """Answers the authorization server's routes (dispatching on the route's path)."""

    needs_request_body = True
    #: Failure counters and assertion replay must be shared by every worker.
    uses_state = True

    def __init__(self, server: OAuthServer) -> None:
        super().__init__(STAGE_NAME, CONFIG)
        self.server = server
        settings = server.settings
        self.metadata = json_response(200, metadata(server), cache="public, max-age=300")
        self.audiences = (settings.issuer, settings.url(TOKEN_PATH))
        self.handlers: dict[str, Handler] = {
            METADATA_PATH: self._metadata,
            JWKS_PATH: self._jwks,
            TOKEN_PATH: self._token,
            INTROSPECT_PATH: self._introspect,
            REVOKE_PATH: self._revoke,
        }
        self._guard: AuthGuard | None = None

    async def start(self, services: Any) -> None:
        await self.server.start(services)
        self._guard = AuthGuard(services.state, self.server.settings.client_auth_limit)

    async def close(self) -> None:
        await self.server.close()

    @property
    def guard(self) -> AuthGuard:
        if self._guard is None:
            raise RuntimeError("the OAuth endpoints are not started")
        return self._guard

    def on_request(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        handler = self.handlers.get(exchange.request.path)
        if handler is None:  # the routes are these paths only; never forward anything
            return oauth_error(404, "invalid_request", "No such endpoint.")
        return handler(exchange)

    # -- discovery ----------------------------------------------------------------------
    def _metadata(self, exchange: Exchange) -> Response:
        return Response(self.metadata.status, list(self.metadata.headers), self.metadata.body)

    def _jwks(self, exchange: Exchange) -> Response:
        now = datetime.fromtimestamp(self.server.now(), UTC)
        # Short: a verifier that caches it sees the next key, published ahead, in time.
        return json_response(200, self.server.ring.keys.jwks(now), cache="public, max-age=10")

    # -- token ----------------------------------------------------------------------------
    async def _token(self, exchange: Exchange) -> Response:
        form = _form(exchange)
        if isinstance(form, Response):
            return _refused(exchange, form, "oauth.invalid_request")
        grant = form.get("grant_type")
        if grant is None:
            return _refused(exchange, oauth_error(400, "invalid_request", "grant_type is required."),
                            "oauth.invalid_request")
        if grant != "client_credentials":
            return _refused(
                exchange,
                oauth_error(400, "unsupported_grant_type", "Only the client_credentials grant is supported."),
                "oauth.unsupported_grant_type",
            )
        client = await self._authenticate(exchange, form, TOKEN_PATH)
        if isinstance(client, Response):
            return client
        scopes = _scopes(form.get("scope"), client)
        if scopes is None:
            return _refused(
                exchange,
                oauth_error(400, "invalid_scope", "The requested scope is invalid or exceeds the client's scopes."),
                "oauth.invalid_scope",
            )
        s = self.server.settings
        issued = issue(
            self.server.signing_key(),
            issuer=s.issuer,
            audience=s.audience,
            subject=client.consumer_name,
            client_id=client.client_id,
            scopes=scopes,
            ttl=s.token_ttl,
            now=self.server.now(),
        )
        body = {"access_token": issued.token, "token_type": "Bearer", "expires_in": issued.expires_in,
                "scope": issued.scope}
        return json_response(200, body)

    # -- introspection (RFC 7662) ---------------------------------------------------------------
    async def _introspect(self, exchange: Exchange) -> Response:
        form = _form(exchange)
        if isinstance(form, Response):
            return _refused(exchange, form, "oauth.invalid_request")
        client = await self._authenticate(exchange, form, INTROSPECT_PATH)
        if isinstance(client, Response):
            return client
        token = form.get("token")
        if not token:
            return _refused(exchange, oauth_error(400, "invalid_request", "token is required."),
                            "oauth.invalid_request")
        claims = await self._active_claims(token)
        if claims is None:
            return json_response(200, {"active": False})
        out: dict[str, Any] = {"active": True, "token_type": "Bearer"}
        for name in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti"):
            if name in claims:
                out[name] = claims[name]
        return json_response(200, out)

    async def _active_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of ``token`` if it is ours, valid, not revoked, and its client is not."""
        claims = self._decode(token)
        if isinstance(claims, Invalid):
            return None
        # The backend's set itself, not this worker's copy fed by pub/sub: a revocation made
        # on another instance a moment ago is seen here at once. Revoked tokens are few and
        # leave the set when they expire, so reading it whole stays small.
        revoked = await load_revoked(self.server.services.state, self.server.now())
        if str(claims["jti"]) in revoked:
            return None
        client = await asyncio.to_thread(self.server.store.find_client, str(claims["client_id"]))
        if client is None or client.revoked_at is not None:
            return None
        return claims

    def _decode(self, token: str) -> dict[str, Any] | Invalid:
        s = self.server.settings
        return decode(token, self.server.ring.keys, issuer=s.issuer, audience=s.audience, now=self.server.now())

    # -- revocation (RFC 7009) -----------------------------------------------------------------
    async def _revoke(self, exchange: Exchange) -> Response:
        form = _form(exchange)
        if isinstance(form, Response):
            return _refused(exchange, form, "oauth.invalid_request")
        client = await self._authenticate(exchange, form, REVOKE_PATH)
        if isinstance(client, Response):
            return client
        token = form.get("token")
        if not token:
            return _refused(exchange, oauth_error(400, "invalid_request", "token is required."),
                            "oauth.invalid_request")
        claims = self._decode(token)
        if isinstance(claims, Invalid):
            return json_response(200, {})  # RFC 7009 2.2: an invalid token is not an error
        if claims["client_id"] != client.client_id:
            return _refused(
                exchange,
                oauth_error(400, "unauthorized_client", "The token was not issued to this client."),
                "oauth.not_owner",
            )
        # Kept until the token's expiry plus the verifiers' leeway: accepted until then.
        expires = float(claims["exp"]) + LEEWAY_SECONDS
        await publish_revocation(self.server.services.state, str(claims["jti"]), expires, self.server.now())
        return json_response(200, {})

    # -- client authentication ----------------------------------------------------------------
    async def _authenticate(self, exchange: Exchange, form: dict[str, str], path: str) -> ClientRecord | Response:
        """The authenticated client, or the answer to send: 400 for a malformed request, 429
        beyond the failure limit, 401 ``invalid_client`` for anything else."""
        request = exchange.request
        found = presented(header_get(request.headers, "authorization"), form)
        ip = request.client_ip
        guard = self.guard
        if isinstance(found, Malformed):
            if found.error == "invalid_request":
                return _refused(exchange, oauth_error(400, "invalid_request", found.description),
                                "oauth.invalid_request")
            await guard.failed(None, ip)
            return _refused(exchange, invalid_client(), "oauth.invalid_client")
        if await guard.over_limit(found.client_id, ip):
            return _refused(exchange, too_many_failures(int(guard.limit.window)), "oauth.too_many_failures")
        client = await asyncio.to_thread(self.server.store.find_client, found.client_id)
        usable = client if client is not None and client.revoked_at is None else None
        ok = False
        if found.method == "private_key_jwt":
            ok = usable is not None and await self._assertion_ok(found.assertion, usable, path)
        else:
            # The HMAC is computed whether or not the client exists: same work either way.
            ok = secret_matches(self.server.store.pepper, found.secret, usable.secret_hash if usable else None)
        if not ok or usable is None:
            await guard.failed(found.client_id, ip)
            return _refused(exchange, invalid_client(), "oauth.invalid_client")
        return usable

    async def _assertion_ok(self, assertion: str, client: ClientRecord, path: str) -> bool:
        if client.jwks is None:
            return False
        checked = assertions.verify_assertion(
            assertion, client.client_id, client.jwks, (*self.audiences, self.server.settings.url(path)),
            self.server.now(),
        )
        if checked is None:
            return False
        return await assertions.first_use(self.server.services.state, client.client_id, checked)


def metadata(server: OAuthServer) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    s = server.settings
    methods = list(METHODS)
    algs = ["ES256", "ES384", "EdDSA", "RS256", "PS256"]
    return {
        "issuer": s.issuer,
        "token_endpoint": s.url(TOKEN_PATH),
        "jwks_uri": s.url(JWKS_PATH),
        "introspection_endpoint": s.url(INTROSPECT_PATH),
        "revocation_endpoint": s.url(REVOKE_PATH),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": methods,
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "introspection_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_signing_alg_values_supported": algs,
        "revocation_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_signing_alg_values_supported": algs,
    }


def _refused(exchange: Exchange, response: Response, reason: str) -> Response:
    """``response``, with why in the exchange's record (the chain records that it answered)."""
    exchange.decisions.append(Decision(STAGE_NAME, "refuse", reason, response.status))
    return response


def _form(exchange: Exchange) -> dict[str, str] | Response:
    """The request's form parameters; each at most once (RFC 6749 3.1, 3.2)."""
    request = exchange.request
    content_type = (header_get(request.headers, "content-type") or "").partition(";")[0].strip().lower()
    if content_type != _FORM_TYPE:
        return oauth_error(400, "invalid_request", f"The request body must be {_FORM_TYPE}.")
    try:
        text = (request.body or b"").decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return oauth_error(400, "invalid_request", "The form body cannot be parsed.")
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            return oauth_error(400, "invalid_request", "A parameter appears more than once.")
        form[name] = value
    return form


def valid_scope(scope: str) -> bool:
    """An RFC 6749 3.3 scope token: one or more NQCHAR."""
    return 0 < len(scope) <= 128 and set(scope) <= _SCOPE_CHARS


def _scopes(requested: str | None, client: ClientRecord) -> tuple[str, ...] | None:
    """The scopes to grant: what was asked, if the client has all of it; all of the
    client's scopes when nothing was asked (RFC 6749 3.3); ``None`` when refused."""
    if requested is None:
        return client.scopes
    asked = requested.split(" ")
    if not all(valid_scope(s) for s in asked):
        return None
    allowed = set(client.scopes)
    if not set(asked) <= allowed:
        return None
    return tuple(dict.fromkeys(asked))
