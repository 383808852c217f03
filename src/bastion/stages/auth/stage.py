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
from typing import TYPE_CHECKING

from bastion.pipeline.stage import HeadStage, RequestHook, RequestOutcome, RouteInfo, Stage
from bastion.stages.auth.config import AuthConfig
from bastion.stages.auth.credentials import KeyPlaces, SchemeSource
from bastion.stages.auth.decide import MISSING, Attempt, Decider, Wait, bound
from bastion.stages.auth.dispatch import NO_VERIFIERS, Verifiers, compile_verifiers
from bastion.stages.auth.lockout import KnownLocks, Lockout
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.stages.auth.schemes import (
    IMPLICIT_BEARER,
    Requirement,
    ScopedRequirement,
    challenges_of,
    compile_source,
    describe,
    phantom_cookie_alternatives,
    requirements_of,
    scheme_of,
    security_of,
)
from bastion.types import Block, Exchange, Principal

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

#: RFC 6749 3.3 scope-token characters (no quote, no backslash): safe in a quoted string.
_SCOPE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}
#: Cached refusals per route (one per reason a verifier gives); beyond it, built each time.
_MAX_CACHED = 64


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
        #: The per-request decision (compiled), over what ``_compile`` finds.
        self._decider = Decider(
            (), (), NO_VERIFIERS, self.key_places, False, self._refusal, self._finish, self._counted
        )
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
        for requirement in (*requirements, *phantom_cookie_alternatives(config, route, requirements)):
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
        self._decider = Decider(
            self.sources,
            self.alternatives,
            verifiers,
            self.key_places,
            self.lockout is not None,
            self._refusal,
            self._finish,
            self._counted,
            config.phantom_cookie or "",
            config.phantom_logout,
        )

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
    def head_hook(self) -> RequestHook:
        """Without a lockout, the compiled decider's own hook: :meth:`on_request_head` would
        only add an interpreted call around it, on every request."""
        return self.on_request_head if self.lockout is not None else self._decider.on_head

    def on_request_head(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        lockout = self.lockout
        if lockout is not None:
            left = lockout.ip_locked(exchange.request.client_ip)
            if left > 0:
                self.key_places.strip(exchange.request)  # shadow mode forwards it
                return _locked(left)
        return self._decider.on_head(exchange)

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

    def _counted(self, exchange: Exchange, attempt: Attempt, block: Block) -> Block | Awaitable[Block]:
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

    async def _finish(self, exchange: Exchange, attempt: Attempt, wait: Wait) -> Block | None:
        """Await verifier answers (the chain times this), then decide as :meth:`Decider.decide` does."""
        while True:
            answer: object = await wait.awaitable
            if not isinstance(answer, (Principal, AuthFailure)):
                raise TypeError(f"a verifier answered {type(answer).__name__}, not a Principal or an AuthFailure")
            attempt.verdicts[wait.index] = bound(answer, exchange)
            decided = self._decider.decide(exchange, attempt)
            if not isinstance(decided, Wait):
                break
            wait = decided
        if decided is None:
            return None
        counted = self._counted(exchange, attempt, decided)
        return counted if isinstance(counted, Block) else await counted


def _locked(seconds: float) -> Block:
    return Block(429, "Too Many Requests", DETAIL_LOCKED, "auth.locked", (("retry-after", str(ceil(seconds))),))


def auth_stage(built: Sequence[Stage]) -> AuthStage | None:
    """The route's auth stage among its built stages (``None`` on a public route)."""
    for stage in built:
        if isinstance(stage, AuthStage):
            return stage
    return None
