"""The ``auth`` stage: who sent a request to a route that is not public, from its head alone.

At load, the route's OpenAPI security requirements (alternatives, each a set of schemes
required together, with the scopes each lists) are compiled against the verifiers the
route's settings name (:func:`~bastion.stages.auth.dispatch.compile_verifiers`): where each
scheme's credential is (:mod:`~bastion.stages.auth.credentials`), and the refusals, with
their ``WWW-Authenticate`` challenges, built once. A route none of whose alternatives can be
verified keeps a refusal decided at load: the proxy answers it 401 as soon as the request
head is complete (``RouteRuntime.auth_refusal``), and no other stage runs.

Per request (:meth:`AuthStage.on_request_head`, before any of the body is read), the first
alternative whose credentials all verify, with the scopes it lists, sets
``exchange.principal``. Otherwise the answer follows RFC 6750 3.1: no credential is a 401
whose challenges carry no error; a credential that proves nothing a 401 with
``error="invalid_token"``, the same body whatever the reason (an unknown key and a wrong one
look alike; the reason goes to the access record only); a malformed one a 400
``invalid_request``; a valid one lacking a scope a 403 ``insufficient_scope`` naming the
scopes; a verifier that cannot answer (key store, JWKS endpoint down) a 503: fail closed.

Bastion's own API keys never reach the upstream: once the stage has decided, every ``bst_...``
value is removed from where the route reads keys (:class:`~bastion.stages.auth.credentials.KeyPlaces`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import replace
from math import ceil
from typing import TYPE_CHECKING, Any

from bastion.pipeline.stage import HeadStage, RequestOutcome, RouteInfo, Stage
from bastion.stages.auth.config import AuthConfig
from bastion.stages.auth.credentials import (
    ANY_BEARER,
    KEY_BEARER,
    NO_BEARER,
    KeyPlaces,
    Malformed,
    SchemeSource,
    bearer_token,
)
from bastion.stages.auth.dispatch import NO_VERIFIERS, Verifiers, bearer_verifier, compile_verifiers, credential_handle
from bastion.stages.auth.lockout import KnownLocks, Lockout
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.stages.auth.phantom import UNKNOWN as PHANTOM_UNKNOWN
from bastion.stages.auth.phantom import PhantomVerifier
from bastion.stages.phantom.tokens import PHANTOM_PREFIX
from bastion.types import Block, Exchange, HeaderList, Principal, Request

if TYPE_CHECKING:
    from bastion.services import Services

REASON_UNCONFIGURED = "auth.unconfigured"
#: Schemes required together were met by credentials of different consumers.
REASON_MISMATCH = "auth.consumer_mismatch"
DETAIL_UNCONFIGURED = (
    "This operation requires authentication, which this gateway cannot verify yet: "
    "its requests are refused until an authentication method is configured."
)
#: One body for every 401: what was wrong with a credential is never told (the record says).
DETAIL_UNAUTHORIZED = "This operation requires authentication: the request carried no valid credential."
DETAIL_MALFORMED = "The request's credentials are malformed: repeated, in two places at once, or badly formed."
DETAIL_FORBIDDEN = "The credential is valid but lacks a scope this operation requires."
DETAIL_UNAVAILABLE = "The credential could not be verified right now; try again later."
DETAIL_LOCKED = "Too many failed authentication attempts: try again later."

#: No credential at all (RFC 6750 3.1: the challenge carries no error).
MISSING = AuthFailure("auth.missing")
#: A credential in a form no scheme allows (RFC 6750 3.1: 400 invalid_request).
MALFORMED = AuthFailure("auth.malformed", "invalid_request", 400)
#: A bearer token of a kind the route verifies nothing of (an opaque token, no introspection).
UNSUPPORTED = AuthFailure("auth.unsupported")
#: A certificate-bound token (RFC 8705) on a connection without that client certificate.
CERT_BINDING = AuthFailure("auth.cert_binding")

#: Characters of an HTTP token (RFC 9110 5.6.2): what may appear unquoted, or be quoted safely.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: RFC 6749 3.3 scope-token characters (no quote, no backslash): safe in a quoted string.
_SCOPE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}
_HTTP_SCHEMES = {"bearer": "Bearer", "basic": "Basic", "digest": "Digest", "negotiate": "Negotiate"}
#: Cached refusals per route (one per reason a verifier gives); beyond it, built each time.
_MAX_CACHED = 64

#: One way to authenticate: all these schemes together (an OpenAPI security requirement).
Requirement = tuple[str, ...]
#: A requirement with the scopes each of its schemes lists.
ScopedRequirement = tuple[tuple[str, tuple[str, ...]], ...]
#: The scheme a route with no security requirement declared (a hand-written route) takes.
IMPLICIT_BEARER = "bearer"
#: The alternative ``phantom_cookie`` adds where no declared scheme reads that cookie.
PHANTOM_COOKIE_SCHEME = "phantom cookie"


def _token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


def security_of(route: RouteInfo) -> tuple[ScopedRequirement, ...]:
    """The route's security requirements (alternatives) with their scopes, from its OpenAPI
    operation or the document's global ``security``; empty for a hand-written route."""
    op = route.operation
    if op is None:
        return ()
    doc = route.openapi or {}
    security = op.get("security", doc.get("security"))
    if not isinstance(security, list):
        return ()
    out: list[ScopedRequirement] = []
    for req in security:
        if isinstance(req, dict) and req:
            out.append(
                tuple(
                    (str(name), tuple(str(s) for s in scopes) if isinstance(scopes, list) else ())
                    for name, scopes in req.items()
                )
            )
    return tuple(out)


def requirements_of(route: RouteInfo) -> tuple[Requirement, ...]:
    """The route's security requirements (alternatives), scheme names only."""
    return tuple(tuple(name for name, _ in req) for req in security_of(route))


def _schemes(doc: dict[str, Any] | None) -> dict[str, Any]:
    components = doc.get("components") if isinstance(doc, dict) else None
    schemes = components.get("securitySchemes") if isinstance(components, dict) else None
    return schemes if isinstance(schemes, dict) else {}


def _resolve(doc: dict[str, Any], node: Any) -> Any:
    """Follow a local ``$ref`` (one scheme pointing at another), at most a few hops."""
    for _ in range(8):
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/")):
            return node
        target: Any = doc
        for part in node["$ref"][2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        node = target
    return None


def scheme_of(route: RouteInfo, name: str, config: AuthConfig | None = None) -> Any:
    """The security scheme object ``name`` stands for on ``route`` (``None`` if undeclared)."""
    if name == IMPLICIT_BEARER and route.operation is None:
        return {"type": "http", "scheme": "bearer"}
    if name == PHANTOM_COOKIE_SCHEME and config is not None and config.phantom_cookie:
        return {"type": "apiKey", "in": "cookie", "name": config.phantom_cookie}
    return _resolve(route.openapi or {}, _schemes(route.openapi).get(name))


def challenge(scheme: Any, realm: str) -> str | None:
    """The ``WWW-Authenticate`` challenge for an OpenAPI security scheme object, if HTTP has one.

    Only token characters from the document reach the header (no quoting or CR/LF tricks).
    """
    if not isinstance(scheme, dict):
        return None
    kind = scheme.get("type")
    quoted_realm = f'realm="{realm}"'
    if kind in ("oauth2", "openIdConnect"):
        return f"Bearer {quoted_realm}"  # RFC 6750: OAuth 2 access tokens are bearer tokens
    if kind == "http":
        name = str(scheme.get("scheme", ""))
        http = _HTTP_SCHEMES.get(name.lower(), name if _token(name) else "")
        return f"{http} {quoted_realm}" if http else None
    if kind == "apiKey":
        # No registered HTTP scheme for API keys; say where the key goes, as auth-params.
        where, pname = str(scheme.get("in", "")), str(scheme.get("name", ""))
        params = [quoted_realm]
        if where in ("header", "query", "cookie") and _token(pname):
            params += [f'in="{where}"', f'name="{pname}"']
        return "ApiKey " + ", ".join(params)
    return None  # mutualTLS: the certificate is asked for by TLS, not by a challenge


def challenges_of(route: RouteInfo, requirements: Sequence[Requirement]) -> tuple[str, ...]:
    """Every distinct challenge of the route's schemes; ``Bearer`` when none can be derived
    (RFC 9110 requires at least one challenge on a 401)."""
    realm = route.service  # service names are tokens: safe inside a quoted string
    out: list[str] = []
    for requirement in requirements:
        for name in requirement:
            found = challenge(scheme_of(route, name), realm)
            if found is not None and found not in out:
                out.append(found)
    return tuple(out) or (f'Bearer realm="{realm}"',)


def describe(requirements: Sequence[Requirement]) -> str:
    """``apiKey or bearerAuth``; ``apiKey + signature`` for schemes required together."""
    if not requirements:
        return "authentication"
    return " or ".join(" + ".join(req) for req in requirements)


def compile_source(name: str, scheme: Any, config: AuthConfig, verifiers: Verifiers) -> tuple[SchemeSource, str] | None:
    """Where scheme ``name``'s credential is on a route with ``verifiers``, and how
    ``bastion check`` says it; ``None`` when nothing here can verify that scheme."""
    if not isinstance(scheme, dict):
        return None
    kind = scheme.get("type")
    if kind == "apiKey":
        where, pname = str(scheme.get("in", "")), str(scheme.get("name", ""))
        if where == "cookie" and pname and pname == config.phantom_cookie and verifiers.phantom is not None:
            return SchemeSource(name, cookie=pname, phantom=True), f"phantom token (cookie {pname})"
        if verifiers.api_key is None:
            return None
        if not pname:
            return SchemeSource(name, bearer=KEY_BEARER), "api key (Authorization: Bearer bst_...)"
        if where == "header":
            header = pname.lower()
            bearer = NO_BEARER if header == "authorization" else KEY_BEARER
            return SchemeSource(name, header=header, bearer=bearer), f"api key (header {pname})"
        if where == "cookie":
            return SchemeSource(name, cookie=pname, bearer=KEY_BEARER), f"api key (cookie {pname})"
        if where == "query":
            if config.api_keys.query:
                return SchemeSource(name, query=pname, bearer=KEY_BEARER), f"api key (query {pname})"
            return (
                SchemeSource(name, bearer=KEY_BEARER, ignored_query=pname),
                f"api key (Authorization: Bearer bst_...; the query parameter {pname} is ignored: "
                "api_keys.query is off)",
            )
        return SchemeSource(name, bearer=KEY_BEARER), "api key (Authorization: Bearer bst_...)"
    bearer = kind in ("oauth2", "openIdConnect") or (
        kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer"
    )
    if bearer and verifiers.takes_bearer:
        kinds = verifiers.bearer_kinds()
        label = ", ".join(kinds[:-1]) + (" or " if len(kinds) > 1 else "") + kinds[-1]
        return SchemeSource(name, bearer=ANY_BEARER), f"bearer token ({label})"
    if kind == "mutualTLS" and verifiers.mtls is not None:
        return SchemeSource(name, certificate=True), "client certificate (mTLS)"
    return None  # basic, digest, undeclared schemes


def _with_error(challenges: Sequence[str], error: str, scope: str = "") -> tuple[tuple[str, str], ...]:
    extra = f', error="{error}"' + (f', scope="{scope}"' if scope else "")
    return tuple(("www-authenticate", c + extra) for c in challenges)


def _scope_refusal(route: RouteInfo, requirement: ScopedRequirement) -> Block:
    """The 403 of one alternative: its schemes' challenges naming the scopes it requires."""
    scopes = " ".join(s for _, names in requirement for s in names if s and all(c in _SCOPE_CHARS for c in s))
    challenges = challenges_of(route, [tuple(name for name, _ in requirement)])
    return Block(
        403, "Forbidden", DETAIL_FORBIDDEN, "auth.scope", _with_error(challenges, "insufficient_scope", scopes)
    )


class _Wait:
    """A verifier's awaitable answer for one scheme, on its way to the chain's awaiting loop."""

    __slots__ = ("awaitable", "index")

    def __init__(self, index: int, awaitable: Awaitable[Verdict]) -> None:
        self.index = index
        self.awaitable = awaitable


_NO_HANDLES: list[str] = []


class _Attempt:
    """One request's verdicts, per scheme of the route (``None``: not read yet), so a scheme
    several alternatives name is verified once."""

    __slots__ = ("bearer", "handles", "token", "upstream", "upstream_cookie", "verdicts")

    def __init__(self, count: int, counted: bool) -> None:
        self.verdicts: list[Verdict | None] = [None] * count
        #: The ``Authorization: Bearer`` token, read at most once: 0 not yet, 1 read (in
        #: ``token``, ``None`` if absent), 2 malformed.
        self.bearer = 0
        self.token: str | None = None
        #: Each scheme's credential's public id (an API key's prefix), where a lockout counts.
        self.handles: list[str] = [""] * count if counted else _NO_HANDLES
        #: The upstream token a verified phantom token stands for, forwarded in its place,
        #: and the cookie the phantom came in ("": ``Authorization``).
        self.upstream: str | None = None
        self.upstream_cookie = ""


class AuthStage(HeadStage):
    """Authentication of a route that is not public (public routes get no auth stage).

    ``verifiers`` defaults to what the route's settings name (:func:`compile_verifiers`);
    tests pass their own, as a worker never does.
    """

    def __init__(self, config: AuthConfig, route: RouteInfo, verifiers: Verifiers | None = None) -> None:
        super().__init__("auth", config)
        self.route = route
        self.requirements = requirements_of(route)
        #: The backend authenticates requests itself; the gateway forwards them unchecked.
        self.delegated = config.delegate == "upstream"
        #: The 401 every request gets, when nothing can verify the route's credentials.
        self.refusal: Block | None = None
        self.verifiers = NO_VERIFIERS
        #: The schemes the route verifies, and each alternative as (scheme index, scopes).
        self.sources: tuple[SchemeSource, ...] = ()
        self.alternatives: tuple[tuple[tuple[int, frozenset[str]], ...], ...] = ()
        self.lockout: Lockout | None = None
        #: The cookie that carries phantom tokens ("": none), never forwarded as it came.
        self.phantom_cookie = config.phantom_cookie or ""
        #: A logout: the phantom token used is deleted before the request is forwarded.
        self.phantom_logout = config.phantom_logout
        #: Where the route's requests may carry Bastion API keys, removed before forwarding.
        self.key_places = KeyPlaces()
        #: Refusals built at load: no credential; a missing scope, per alternative; and
        #: those of each reason a verifier gives (same body and challenges per status).
        self._challenges: tuple[str, ...] = ()
        self._missing = Block(401, "Unauthorized", DETAIL_UNAUTHORIZED, MISSING.reason)
        self._scope_refusals: tuple[Block, ...] = ()
        self._cached: dict[tuple[int, str], Block] = {}
        self._described: list[str] = []
        self._unverified: list[Requirement] = []
        if self.delegated:
            return
        self._compile(config, route, verifiers if verifiers is not None else compile_verifiers(config, route))
        if not self.alternatives:
            self.refusal = Block(
                401,
                "Unauthorized",
                DETAIL_UNCONFIGURED,
                REASON_UNCONFIGURED,
                tuple(("www-authenticate", c) for c in challenges_of(route, self.requirements)),
            )

    def _compile(self, config: AuthConfig, route: RouteInfo, verifiers: Verifiers) -> None:
        sources: list[SchemeSource] = []
        labels: list[str] = []
        alternatives: list[tuple[tuple[int, frozenset[str]], ...]] = []
        scope_refusals: list[Block] = []
        verifiable: list[Requirement] = []
        requirements = security_of(route) or (((IMPLICIT_BEARER, ()),),)
        for requirement in (*requirements, *_phantom_cookie_alternative(config, route, requirements)):
            names = tuple(name for name, _ in requirement)
            compiled = [compile_source(name, scheme_of(route, name, config), config, verifiers) for name in names]
            if any(found is None for found in compiled):
                self._unverified.append(names)
                continue
            alternative: list[tuple[int, frozenset[str]]] = []
            parts: list[str] = []
            for (name, scopes), found in zip(requirement, compiled, strict=True):
                if found is None:  # checked above; keeps the type checker content
                    continue
                known = [s.name for s in sources]
                if name not in known:
                    sources.append(found[0])
                    labels.append(found[1])
                index = known.index(name) if name in known else len(sources) - 1
                alternative.append((index, frozenset(scopes)))
                parts.append(labels[index] + (f" with scopes {' '.join(scopes)}" if scopes else ""))
            alternatives.append(tuple(alternative))
            verifiable.append(names)
            scope_refusals.append(_scope_refusal(route, requirement))
            self._described.append(" + ".join(parts))
        if not alternatives:
            return
        if not any(s.certificate for s in sources):
            verifiers = replace(verifiers, mtls=None)  # not started where nothing uses it
        self.verifiers = verifiers
        self.sources = tuple(sources)
        self.alternatives = tuple(alternatives)
        self.key_places = KeyPlaces.of(self.sources)
        self._scope_refusals = tuple(scope_refusals)
        self._challenges = challenges_of(route, verifiable)
        self._missing = Block(
            401,
            "Unauthorized",
            DETAIL_UNAUTHORIZED,
            MISSING.reason,
            tuple(("www-authenticate", c) for c in self._challenges),
        )
        if config.lockout.enabled:
            self.lockout = Lockout(config.lockout)
            self.uses_state = True
        if verifiers.phantom is not None:
            self.uses_state = True  # phantom tokens' records: every worker must see them

    @classmethod
    def from_config(cls, config: AuthConfig, route: RouteInfo) -> AuthStage | None:
        return None if route.public else cls(config, route)

    @property
    def authenticates(self) -> bool:
        """Whether the stage checks credentials per request (neither delegated nor refusing
        every request from the head): only then is it in the route's chain."""
        return bool(self.alternatives)

    @property
    def summary(self) -> str:
        """What is really enforced on the route, for ``bastion check`` and the audit."""
        required = describe(self.requirements)
        if self.delegated:
            what = f"authentication ({required})" if self.requirements else "authentication"
            shadow = "; shadow mode, nothing to observe" if not self.config.enforce else ""
            return f"{what} delegated to upstream{shadow}"
        if not self.alternatives:
            return f"401: requires {required}, which nothing here verifies"
        text = " or ".join(self._described)
        if self._unverified:
            text += f" (not verified here, so never accepted: {describe(self._unverified)})"
        if self.lockout is not None:
            text += "; lockout on"
        return text

    # -- start and stop -------------------------------------------------------------------
    async def start(self, services: Services) -> None:
        if not self.alternatives:
            return
        for verifier in self.verifiers.all():
            await verifier.start(services)
        if self.lockout is not None:
            known = services.shared("auth:lockout", KnownLocks)
            self.lockout.start(services.state, known, services.clock.monotonic)

    async def close(self) -> None:
        for verifier in self.verifiers.all():
            await verifier.close()

    # -- per request ----------------------------------------------------------------------
    def on_request_head(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        lockout = self.lockout
        if lockout is not None:
            left = lockout.ip_locked(exchange.request.client_ip)
            if left > 0:
                self.key_places.strip(exchange.request)  # shadow mode forwards it
                return _locked(left)
        attempt = _Attempt(len(self.sources), lockout is not None)
        decided = self._decide(exchange, attempt)
        if decided is None:
            return None
        if isinstance(decided, _Wait):
            return self._finish(exchange, attempt, decided)
        return self._counted(exchange, attempt, decided)

    def _decide(self, exchange: Exchange, attempt: _Attempt) -> Block | _Wait | None:
        """Try the alternatives in order: ``None`` once one succeeds (the principal set),
        the refusal when none can, or the verifier answer to wait for."""
        verdicts = attempt.verdicts
        scope_failed = -1
        mismatched = False
        for a, alternative in enumerate(self.alternatives):
            first: Principal | None = None
            for index, scopes in alternative:
                verdict = verdicts[index]
                if verdict is None:
                    found = self._verify(index, exchange, attempt)
                    if not isinstance(found, (Principal, AuthFailure)):
                        return _Wait(index, found)
                    verdicts[index] = verdict = _bound(found, exchange)
                if isinstance(verdict, AuthFailure):
                    break
                if scopes and not scopes <= verdict.scopes:
                    if scope_failed < 0:
                        scope_failed = a
                    break
                if first is None:
                    first = verdict  # schemes required together: the first one's principal
                elif verdict.consumer_name != first.consumer_name:
                    # Credentials of two consumers never add up to one: alice's key beside
                    # bob's token would lend alice the scopes of bob's token.
                    mismatched = True
                    break
            else:
                exchange.principal = first
                self.key_places.strip(exchange.request)
                if attempt.upstream is not None:
                    _forward_upstream_token(exchange, attempt.upstream, attempt.upstream_cookie)
                if self.phantom_cookie:
                    _forward_cookie(exchange.request, self.phantom_cookie, attempt)
                return None
        # Refused, but forwarded all the same in shadow mode: without Bastion's keys too.
        self.key_places.strip(exchange.request)
        return self._refusal(verdicts, scope_failed, mismatched)

    def _verify(self, index: int, exchange: Exchange, attempt: _Attempt) -> Verdict | Awaitable[Verdict]:
        source = self.sources[index]
        if source.certificate:
            return self._verify_certificate(exchange)
        request = exchange.request
        if source.bearer != NO_BEARER and attempt.bearer != 1:
            if attempt.bearer == 0:
                try:
                    attempt.token = bearer_token(request)
                    attempt.bearer = 1
                except Malformed:
                    attempt.bearer = 2
                    return MALFORMED
            else:
                return MALFORMED
        try:
            credential = source.read(request, attempt.token)
        except Malformed:
            return MALFORMED
        if credential is None:
            return MISSING
        verifiers = self.verifiers
        phantom = verifiers.phantom
        if source.phantom:
            if phantom is None or not credential.startswith(PHANTOM_PREFIX):
                return PHANTOM_UNKNOWN  # the upstream's own token, or anything else: never forwarded
            return _resolve_phantom(phantom, credential, attempt, source.cookie, self.phantom_logout)
        verifier = bearer_verifier(credential, verifiers) if source.bearer == ANY_BEARER else verifiers.api_key
        if verifier is None:
            return UNSUPPORTED
        if self.lockout is not None:
            attempt.handles[index] = credential_handle(credential)
        if verifier is phantom and phantom is not None:
            return _resolve_phantom(phantom, credential, attempt, "", self.phantom_logout)
        return verifier.verify(credential)

    def _verify_certificate(self, exchange: Exchange) -> Verdict:
        """The consumer the connection's client certificate (verified by TLS) identifies."""
        cert = exchange.client_cert
        if cert is None:
            return MISSING
        verifier = self.verifiers.mtls
        return UNSUPPORTED if verifier is None else verifier.verify_certificate(cert)

    def _refusal(self, verdicts: list[Verdict | None], scope_failed: int, mismatched: bool = False) -> Block:
        """The answer when no alternative succeeded, by precedence: a verifier that could not
        answer (503, fail closed), a missing scope (403), a malformed credential (400), a
        credential that proves nothing (401 invalid_token), credentials required together
        that prove different consumers (401 invalid_token), no credential (401)."""
        unavailable: AuthFailure | None = None
        forbidden: AuthFailure | None = None
        malformed: AuthFailure | None = None
        invalid: AuthFailure | None = None
        for verdict in verdicts:
            if not isinstance(verdict, AuthFailure) or verdict is MISSING:
                continue
            if verdict.status >= 500:
                unavailable = unavailable or verdict
            elif verdict.status == 403:
                forbidden = forbidden or verdict
            elif verdict.status == 400 or verdict.error == "invalid_request":
                malformed = malformed or verdict
            else:
                invalid = invalid or verdict
        if unavailable is not None:
            return self._refusal_for(503, unavailable.reason)
        if scope_failed >= 0:
            return self._scope_refusals[scope_failed]
        if forbidden is not None:
            return self._refusal_for(403, forbidden.reason)
        if malformed is not None:
            return self._refusal_for(400, malformed.reason)
        if invalid is not None:
            return self._refusal_for(401, invalid.reason)
        if mismatched:
            return self._refusal_for(401, REASON_MISMATCH)
        return self._missing

    def _refusal_for(self, status: int, reason: str) -> Block:
        """The refusal of one kind (status) recorded with ``reason``: the client sees the same
        body and challenges whatever the reason."""
        key = (status, reason)
        found = self._cached.get(key)
        if found is not None:
            return found
        challenges = self._challenges
        if status == 503:
            block = Block(503, "Service Unavailable", DETAIL_UNAVAILABLE, reason)
        elif status == 403:
            block = Block(403, "Forbidden", DETAIL_FORBIDDEN, reason, _with_error(challenges, "insufficient_scope"))
        elif status == 400:
            block = Block(400, "Bad Request", DETAIL_MALFORMED, reason, _with_error(challenges, "invalid_request"))
        else:
            block = Block(401, "Unauthorized", DETAIL_UNAUTHORIZED, reason, _with_error(challenges, "invalid_token"))
        if len(self._cached) < _MAX_CACHED:
            self._cached[key] = block
        return block

    def _counted(self, exchange: Exchange, attempt: _Attempt, block: Block) -> Block | Awaitable[Block]:
        """``block``, once the failure it answers is counted against the client (a lockout
        it trips answers instead). Only a credential that was there and proved nothing
        counts: not a missing one, a missing scope or a verifier that could not answer."""
        if self.lockout is None or block.status not in (400, 401) or block is self._missing:
            return block
        # The credential counted is the first that failed (never one that verified, beside it).
        handle = ""
        for verdict, found in zip(attempt.verdicts, attempt.handles, strict=True):
            if isinstance(verdict, AuthFailure) and verdict is not MISSING:
                handle = found
                break
        return self._count(exchange.request.client_ip, handle, block)

    async def _count(self, ip: str, handle: str, block: Block) -> Block:
        lockout = self.lockout
        assert lockout is not None
        left = await lockout.count(ip, handle)
        return _locked(left) if left > 0 else block

    async def _finish(self, exchange: Exchange, attempt: _Attempt, wait: _Wait) -> Block | None:
        """Await verifier answers (the chain times this), then decide as :meth:`_decide` does."""
        while True:
            answer: object = await wait.awaitable
            if not isinstance(answer, (Principal, AuthFailure)):
                raise TypeError(f"a verifier answered {type(answer).__name__}, not a Principal or an AuthFailure")
            attempt.verdicts[wait.index] = _bound(answer, exchange)
            decided = self._decide(exchange, attempt)
            if not isinstance(decided, _Wait):
                break
            wait = decided
        if decided is None:
            return None
        counted = self._counted(exchange, attempt, decided)
        return counted if isinstance(counted, Block) else await counted


def _bound(verdict: Verdict, exchange: Exchange) -> Verdict:
    """RFC 8705 3: a certificate-bound token proves its principal only over a connection
    whose client certificate is the one it names (a stolen token is useless elsewhere)."""
    if isinstance(verdict, Principal) and verdict.bound_certificate:
        cert = exchange.client_cert
        if cert is None or cert.fingerprint != verdict.bound_certificate:
            return CERT_BINDING
    return verdict


async def _resolve_phantom(
    verifier: PhantomVerifier, token: str, attempt: _Attempt, cookie: str, logout: bool
) -> Verdict:
    """The phantom token's verdict; the upstream token it stands for is kept on ``attempt``
    with the cookie it came in ("": ``Authorization``). On a logout the phantom is deleted."""
    verdict, upstream = await verifier.resolve(token, end=logout)
    if upstream is not None:
        attempt.upstream = upstream
        attempt.upstream_cookie = cookie
    return verdict


def _forward_upstream_token(exchange: Exchange, upstream: str, cookie: str) -> None:
    """Put the upstream's token where the phantom was: ``Authorization`` (read once: single),
    or the phantom cookie (:func:`_forward_cookie` puts it there)."""
    if cookie:
        return
    request = exchange.request
    request.headers = [
        (key, "Bearer " + upstream if key == "authorization" else value) for key, value in request.headers
    ]


def _forward_cookie(request: Request, name: str, attempt: _Attempt) -> None:
    """The phantom cookie as forwarded: the upstream's token when the phantom in it proved
    the caller, and removed otherwise (a phantom, or a token the client should not hold,
    never reaches the upstream). A bearer token beside a cookie that proved the caller
    (refused, or it would have proved the caller first) is removed too."""
    upstream = attempt.upstream if attempt.upstream_cookie == name else None
    out: HeaderList = []
    for key, value in request.headers:
        if key == "cookie":
            pairs: list[str] = []
            for pair in value.split(";"):
                if pair.strip(" ").partition("=")[0] == name:
                    if upstream is not None:
                        pairs.append(f" {name}={upstream}" if pairs else f"{name}={upstream}")
                    continue
                pairs.append(pair)
            value = ";".join(pairs).strip(" ")
            if not value:
                continue
        elif key == "authorization" and upstream is not None and value[:7].lower() == "bearer ":
            continue  # the caller is the cookie's: no other bearer token rides along
        out.append((key, value))
    request.headers = out


def _phantom_cookie_alternative(
    config: AuthConfig, route: RouteInfo, requirements: Sequence[ScopedRequirement]
) -> tuple[ScopedRequirement, ...]:
    """The alternatives a ``phantom_cookie`` adds: each alternative that takes a bearer token,
    with the cookie in the bearer scheme's place and the same scopes (the cookie is one more
    place for the same phantom, never a way around a scope). None where a declared ``apiKey``
    scheme already reads that cookie (it then takes the phantom tokens itself)."""
    name = config.phantom_cookie
    if not name or not config.phantom_tokens:
        return ()
    bearer: set[str] = set()
    for requirement in requirements:
        for scheme_name, _ in requirement:
            scheme = scheme_of(route, scheme_name)
            if not isinstance(scheme, dict):
                continue
            if scheme.get("type") == "apiKey" and scheme.get("in") == "cookie" and scheme.get("name") == name:
                return ()
            kind = scheme.get("type")
            if kind in ("oauth2", "openIdConnect") or (
                kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer"
            ):
                bearer.add(scheme_name)
    out: list[ScopedRequirement] = []
    for requirement in requirements:
        if any(scheme_name in bearer for scheme_name, _ in requirement):
            swapped = tuple(
                (PHANTOM_COOKIE_SCHEME if scheme_name in bearer else scheme_name, scopes)
                for scheme_name, scopes in requirement
            )
            if swapped not in out:
                out.append(swapped)
    return tuple(out)


def _locked(seconds: float) -> Block:
    return Block(429, "Too Many Requests", DETAIL_LOCKED, "auth.locked", (("retry-after", str(ceil(seconds))),))


def auth_stage(built: Sequence[Stage]) -> AuthStage | None:
    """The route's auth stage among its built stages (``None`` on a public route)."""
    for stage in built:
        if isinstance(stage, AuthStage):
            return stage
    return None
