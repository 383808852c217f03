"""The ``auth`` stage's per-request decision, compiled with mypyc (``setup.py``): which of
the route's alternatives the request's credentials satisfy, each scheme read and verified
at most once.

The stage class (``stage.py``) stays interpreted, like every stage class; it builds one
:class:`Decider` per route at load and asks it on every request. Interpreted, this loop
was most of what an API key cost per request (callgrind); the refusals, rarer, are built
by the stage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bastion.stages.auth.credentials import ANY_BEARER, NO_BEARER, KeyPlaces, Malformed, SchemeSource, bearer_token
from bastion.stages.auth.dispatch import Verifiers, bearer_verifier, credential_handle
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.stages.auth.phantom import UNKNOWN as PHANTOM_UNKNOWN
from bastion.stages.auth.phantom import PhantomVerifier
from bastion.stages.phantom.tokens import PHANTOM_PREFIX
from bastion.types import Block, Exchange, HeaderList, Principal, Request

#: No credential at all (RFC 6750 3.1: the challenge carries no error).
MISSING = AuthFailure("auth.missing")
#: A credential in a form no scheme allows (RFC 6750 3.1: 400 invalid_request).
MALFORMED = AuthFailure("auth.malformed", "invalid_request", 400)
#: A bearer token of a kind the route verifies nothing of (an opaque token, no introspection).
UNSUPPORTED = AuthFailure("auth.unsupported")
#: A certificate-bound token (RFC 8705) on a connection without that client certificate.
CERT_BINDING = AuthFailure("auth.cert_binding")

#: One alternative: (scheme index, the scopes it requires) per scheme required together.
Alternative = tuple[tuple[int, frozenset[str]], ...]
#: Builds the refusal when no alternative succeeded, from the verdicts, the first
#: alternative whose scopes were missing (-1: none) and whether credentials required
#: together proved different consumers.
Refuse = Callable[[list[Verdict | None], int, bool], Block]


class Wait:
    """A verifier's awaitable answer for one scheme, on its way to the chain's awaiting loop."""

    def __init__(self, index: int, awaitable: Awaitable[Verdict]) -> None:
        self.index = index
        self.awaitable = awaitable


_NO_HANDLES: list[str] = []


class Attempt:
    """One request's verdicts, per scheme of the route (``None``: not read yet), so a scheme
    several alternatives name is verified once."""

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


#: Awaits a verifier's answer and decides again (the stage's: the request waits on I/O anyway).
Finish = Callable[[Exchange, Attempt, Wait], Awaitable[Block | None]]
#: Counts a refusal against the client before it is answered (the stage's lockout).
Count = Callable[[Exchange, Attempt, Block], Block | Awaitable[Block]]


class Decider:
    """A route's alternatives over its schemes' sources and verifiers, decided per request."""

    def __init__(
        self,
        sources: tuple[SchemeSource, ...],
        alternatives: tuple[Alternative, ...],
        verifiers: Verifiers,
        key_places: KeyPlaces,
        counted: bool,
        refuse: Refuse,
        finish: Finish,
        count: Count,
        phantom_cookie: str = "",
        phantom_logout: bool = False,
    ) -> None:
        self.sources = sources
        self.alternatives = alternatives
        self.verifiers = verifiers
        self.key_places = key_places
        #: A lockout counts failures: note each credential's public id, and count a refusal.
        self.counted = counted
        self.refuse = refuse
        self.finish = finish
        self.count = count
        #: The cookie that carries phantom tokens ("": none), never forwarded as it came.
        self.phantom_cookie = phantom_cookie
        #: A logout: the phantom token used is deleted before the request is forwarded.
        self.phantom_logout = phantom_logout

    def on_head(self, exchange: Exchange) -> Block | Awaitable[Block | None] | None:
        """The request's decision: ``None`` once an alternative succeeded, the refusal (counted
        first with a lockout), or the awaitable that finishes deciding. Without a lockout this
        is the head hook the chain calls (``AuthStage.head_hook``): a request with a valid
        credential then runs no interpreted code in the stage."""
        attempt = Attempt(len(self.sources), self.counted)
        decided = self.decide(exchange, attempt)
        if decided is None:
            return None
        if isinstance(decided, Wait):
            return self.finish(exchange, attempt, decided)
        return self.count(exchange, attempt, decided) if self.counted else decided

    def decide(self, exchange: Exchange, attempt: Attempt) -> Block | Wait | None:
        """Try the alternatives in order: ``None`` once one succeeds (the principal set),
        the refusal when none can, or the verifier answer to wait for."""
        verdicts = attempt.verdicts
        scope_failed = -1
        mismatched = False
        for a, alternative in enumerate(self.alternatives):
            first: Principal | None = None
            satisfied = True
            for index, scopes in alternative:
                verdict = verdicts[index]
                if verdict is None:
                    found = self.verify(index, exchange, attempt)
                    if not isinstance(found, (Principal, AuthFailure)):
                        return Wait(index, found)
                    verdict = bound(found, exchange)
                    verdicts[index] = verdict
                if isinstance(verdict, AuthFailure):
                    satisfied = False
                    break
                if scopes and not scopes <= verdict.scopes:
                    if scope_failed < 0:
                        scope_failed = a
                    satisfied = False
                    break
                if first is None:
                    first = verdict  # schemes required together: the first one's principal
                elif verdict.consumer_name != first.consumer_name:
                    # Credentials of two consumers never add up to one: alice's key beside
                    # bob's token would lend alice the scopes of bob's token.
                    mismatched = True
                    satisfied = False
                    break
            if satisfied:
                exchange.principal = first
                self.key_places.strip(exchange.request)
                if attempt.upstream is not None:
                    forward_upstream_token(exchange, attempt.upstream, attempt.upstream_cookie)
                if self.phantom_cookie:
                    forward_cookie(exchange.request, self.phantom_cookie, attempt)
                return None
        # Refused, but forwarded all the same in shadow mode: without Bastion's keys too.
        self.key_places.strip(exchange.request)
        return self.refuse(verdicts, scope_failed, mismatched)

    def verify(self, index: int, exchange: Exchange, attempt: Attempt) -> Verdict | Awaitable[Verdict]:
        source = self.sources[index]
        if source.certificate:
            return self.verify_certificate(exchange)
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
            return resolve_phantom(phantom, credential, attempt, source.cookie, self.phantom_logout)
        verifier = bearer_verifier(credential, verifiers) if source.bearer == ANY_BEARER else verifiers.api_key
        if verifier is None:
            return UNSUPPORTED
        if self.counted:
            attempt.handles[index] = credential_handle(credential)
        if verifier is phantom and phantom is not None:
            return resolve_phantom(phantom, credential, attempt, "", self.phantom_logout)
        return verifier.verify(credential)

    def verify_certificate(self, exchange: Exchange) -> Verdict:
        """The consumer the connection's client certificate (verified by TLS) identifies."""
        cert = exchange.client_cert
        if cert is None:
            return MISSING
        verifier = self.verifiers.mtls
        return UNSUPPORTED if verifier is None else verifier.verify_certificate(cert)


def bound(verdict: Verdict, exchange: Exchange) -> Verdict:
    """RFC 8705 3: a certificate-bound token proves its principal only over a connection
    whose client certificate is the one it names (a stolen token is useless elsewhere)."""
    if isinstance(verdict, Principal) and verdict.bound_certificate:
        cert = exchange.client_cert
        if cert is None or cert.fingerprint != verdict.bound_certificate:
            return CERT_BINDING
    return verdict


async def resolve_phantom(
    verifier: PhantomVerifier, token: str, attempt: Attempt, cookie: str, logout: bool
) -> Verdict:
    """The phantom token's verdict; the upstream token it stands for is kept on ``attempt``
    with the cookie it came in ("": ``Authorization``). On a logout the phantom is deleted."""
    verdict, upstream = await verifier.resolve(token, end=logout)
    if upstream is not None:
        attempt.upstream = upstream
        attempt.upstream_cookie = cookie
    return verdict


def forward_upstream_token(exchange: Exchange, upstream: str, cookie: str) -> None:
    """Put the upstream's token where the phantom was: ``Authorization`` (read once: single),
    or the phantom cookie (:func:`forward_cookie` puts it there)."""
    if cookie:
        return
    request = exchange.request
    request.headers = [
        (key, "Bearer " + upstream if key == "authorization" else value) for key, value in request.headers
    ]



def forward_cookie(request: Request, name: str, attempt: Attempt) -> None:
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


__all__ = ["CERT_BINDING", "MALFORMED", "MISSING", "UNSUPPORTED", "Attempt", "Decider", "Wait", "bound"]
