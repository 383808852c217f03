"""API2:2023 Broken Authentication, tokens: what the API accepts instead of a valid credential.

Most checks start from *probe operations*: secured GET operations (no request body) that the
first user may call (2xx) and an anonymous client may not (401/403). A forged or misplaced
credential that turns the anonymous refusal into a 2xx on such an operation is a finding — the
refusal proves the operation needs authentication, the 2xx proves the forgery passed.
"""
from __future__ import annotations

import secrets
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bastion.tester.audit.context import Operation
from bastion.tester.audit.interface import Severity
from bastion.tester.scan import jwt
from bastion.tester.scan.checks.authn.common import Outcome, api2_info
from bastion.tester.scan.checks.bfla import is_admin_operation
from bastion.tester.scan.checks.probing import finding, skip, success
from bastion.tester.scan.interface import (
    Check,
    CheckInfo,
    Exchange,
    Identity,
    RequestPlan,
    ScanContext,
    Skip,
)

JWT_ADVICE = (
    "Validate every JWT: a fixed list of accepted algorithms (never `none`, never taken from the token), the "
    "signature with the expected key, and `exp`/`nbf`. Bastion's `auth` stage (planned: there is no "
    "`policies.auth` yet) will do this before a request reaches the API; until it lands, the API must."
)



# -- probe operations ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Probe:
    """A secured operation the user may call and an anonymous client may not."""

    op: Operation
    plan: RequestPlan
    user: Identity
    allowed: Exchange
    refused: Exchange


_PROBES: weakref.WeakKeyDictionary[Any, list[Probe]] = weakref.WeakKeyDictionary()
_CRACKED: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()


def token_user(ctx: ScanContext) -> Identity | None:
    """The first non-anonymous identity with a bearer token (users first, then the admin)."""
    return next((i for i in [*ctx.users, *([ctx.admin] if ctx.admin else [])] if i.token), None)


async def probes(ctx: ScanContext, info: CheckInfo, limit: int = 2) -> list[Probe]:
    """Up to ``limit`` probe operations (computed once per scan)."""
    if ctx in _PROBES:
        return _PROBES[ctx]
    user = token_user(ctx) or next(iter([*ctx.users, *([ctx.admin] if ctx.admin else [])]), None)
    found: list[Probe] = []
    if user is not None:
        candidates = [op for op in ctx.operations() if op.method == "get" and op.secured]
        # Prefer ordinary operations: an admin one the user may call is a finding of its own (API5).
        candidates.sort(key=lambda o: (is_admin_operation(o), o.template.count("{"), o.template))
        for op in candidates[:12]:
            plan = ctx.plan(op, user)
            allowed = await ctx.send(plan, user, check=info)
            if not success(allowed):
                continue
            refused = await ctx.send(plan, ctx.anonymous, check=info)
            if refused.status in (401, 403):
                found.append(Probe(op, plan, user, allowed, refused))
            if len(found) >= limit:
                break
    _PROBES[ctx] = found
    return found


def with_token(identity: Identity, token: str, name: str) -> Identity:
    """``identity`` with its token replaced by ``token`` wherever it is sent (header, cookie, query)."""
    old = identity.token or ""

    def swap(values: dict[str, str]) -> dict[str, str]:
        return {k: v.replace(old, token) if old else v for k, v in values.items()}

    return Identity(name, role="anonymous", headers=swap(identity.headers), cookies=swap(identity.cookies),
                    query=swap(identity.query))


def with_header(identity: Identity, header: str, value: str, name: str) -> Identity:
    headers = {k: v for k, v in identity.headers.items() if k.lower() != header.lower()}
    headers[header] = value
    return Identity(name, role="anonymous", headers=headers)


def token_header(identity: Identity) -> str:
    """The header that carries the identity's token (Authorization unless configured otherwise)."""
    if identity.token:
        for key, value in identity.headers.items():
            if identity.token in value:
                return key
    return "Authorization"


async def _try_forgeries(ctx: ScanContext, info: CheckInfo, forged: Sequence[tuple[str, str]],
                         what: str) -> list[Outcome]:
    """Send each ``(label, token)`` to the first probe; a 2xx is a finding (confirmed on a second probe)."""
    found = await probes(ctx, info)
    if not found:
        return [skip(info, "no secured GET operation that the user may call and an anonymous client may not")]
    first = found[0]
    for label, token in forged:
        ident = with_token(first.user, token, f"forged ({label})")
        answer = await ctx.send(first.plan, ident, check=info, retry_429=True)
        if not success(answer):
            continue
        evidence = [answer]
        for other in found[1:]:
            evidence.append(await ctx.send(other.plan, ident, check=info))
        return [finding(info, first.op.label,
                        f"The API accepted {what} ({label}) on a secured operation that refuses anonymous "
                        f"requests with {first.refused.status}.", first.refused, *evidence)]
    return []


def _user_jwt(ctx: ScanContext, info: CheckInfo) -> tuple[Identity, jwt.Jwt] | Skip:
    user = token_user(ctx)
    if user is None or user.token is None:
        return skip(info, "no identity with a bearer token (configure a login flow or an Authorization header)")
    decoded = jwt.decode(user.token)
    if decoded is None:
        return skip(info, f"the token of {user.name} is not a JWT")
    return user, decoded


# -- checks ------------------------------------------------------------------------------------
class MissingAuthentication(Check):
    info = api2_info(
        "API2-NO-AUTH", "Secured operation answers without credentials", 306, Severity.HIGH,
        "Calls every operation the document declares secured without any credential (path values of the first "
        "user's objects); a 2xx answer is a finding.",
        "Enforce authentication on every operation the document secures. Behind Bastion, a route that is not "
        "`security: []` answers 401 until an authentication method is configured; only routes declared "
        "`auth: {delegate: upstream}` are forwarded for the API alone to decide (`bastion audit -c` reports "
        "them, BAST-GW-002).",
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        out: list[Outcome] = []
        user = next(iter([*ctx.users, *([ctx.admin] if ctx.admin else [])]), ctx.anonymous)
        for op in ctx.operations():
            if not op.secured:
                continue
            answer = await ctx.send(ctx.plan(op, user), ctx.anonymous, check=self.info)
            if success(answer):
                out.append(finding(self.info, op.label,
                                   f"{op.label} is declared secured but answered {answer.status} to a request "
                                   "without credentials.", answer))
        return out


class InvalidToken(Check):
    info = api2_info(
        "API2-INVALID-TOKEN", "Invalid credential accepted", 287, Severity.CRITICAL,
        "Sends a random, well-formed but invalid token in place of the user's to a probe operation; a 2xx is a "
        "finding.",
        JWT_ADVICE,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        found = await probes(ctx, self.info)
        if not found:
            return [skip(self.info, "no secured GET operation that the user may call and an anonymous client "
                                    "may not")]
        first = found[0]
        fake = "bastion-invalid-" + secrets.token_hex(16)
        if first.user.token:
            ident = with_token(first.user, fake, "invalid token")
        else:
            header = next(iter(first.user.headers), "Authorization")
            ident = with_header(first.user, header, fake, "invalid credential")
        answer = await ctx.send(first.plan, ident, check=self.info)
        if success(answer):
            return [finding(self.info, first.op.label,
                            f"A random invalid credential was accepted ({answer.status}) where an anonymous "
                            f"request gets {first.refused.status}.", first.refused, answer)]
        return []


class AlgNone(Check):
    info = api2_info(
        "API2-JWT-NONE", "JWT with alg none accepted", 347, Severity.CRITICAL,
        "Re-sends the user's JWT claims unsigned (`alg: none`, `None`, `NONE`); the API accepting one is a finding.",
        JWT_ADVICE,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        got = _user_jwt(ctx, self.info)
        if isinstance(got, Skip):
            return [got]
        _, token = got
        forged = [(f"alg {alg}", jwt.encode({**token.header, "alg": alg}, token.claims, None))
                  for alg in ("none", "None", "NONE")]
        return await _try_forgeries(ctx, self.info, forged, "an unsigned JWT")


class WrongKey(Check):
    info = api2_info(
        "API2-JWT-WRONG-KEY", "JWT signed with another key accepted", 347, Severity.CRITICAL,
        "Re-signs the user's JWT claims with a random key (same algorithm); the API accepting it means it does "
        "not verify signatures.",
        JWT_ADVICE,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        got = _user_jwt(ctx, self.info)
        if isinstance(got, Skip):
            return [got]
        _, token = got
        forged = jwt.encode(token.header, {**token.claims}, secrets.token_bytes(32))
        return await _try_forgeries(ctx, self.info, [("random key", forged)], "a JWT signed with a random key")


class AlgSwap(Check):
    info = api2_info(
        "API2-JWT-ALG-SWAP", "JWT with a swapped algorithm accepted", 347, Severity.CRITICAL,
        "Re-sends the user's JWT claims under another algorithm family (HS256 -> RS256 with a bogus signature, "
        "RS/ES -> HS256 keyed with a random key); the API accepting it trusts the token's `alg` header.",
        JWT_ADVICE,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        got = _user_jwt(ctx, self.info)
        if isinstance(got, Skip):
            return [got]
        _, token = got
        swapped = "RS256" if token.alg.startswith("HS") else "HS256"
        forged = jwt.encode({**token.header, "alg": swapped}, token.claims, secrets.token_bytes(32))
        return await _try_forgeries(ctx, self.info, [(f"{token.alg} -> {swapped}", forged)],
                                    f"a JWT re-labelled {swapped}")


def cracked_secret(ctx: ScanContext, token: jwt.Jwt) -> str | None:
    """The HMAC secret of the user's token from the bundled wordlist (cracked once per scan)."""
    if ctx not in _CRACKED:
        _CRACKED[ctx] = jwt.crack(token, jwt.candidates())
    return _CRACKED[ctx]


def mask(secret: str) -> str:
    return secret[:2] + "*" * max(3, len(secret) - 2) if len(secret) > 3 else "*" * len(secret)


class WeakSecret(Check):
    info = api2_info(
        "API2-JWT-WEAK-SECRET", "JWT HMAC secret is a well-known weak value", 1391, Severity.CRITICAL,
        "Tries each secret of a bundled wordlist of well-known values, then every number of up to six digits, "
        "against the user's HS256/384/512 token offline; a match is proven by forging a new token with it that the "
        "API accepts.",
        "Sign tokens with a random secret of at least 32 bytes (or an asymmetric key) kept in a secret manager, "
        "and rotate it now: anyone can mint tokens for any user. Bastion's planned `auth` stage will "
        "verify tokens against a JWKS so the API never needs the secret.",
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        got = _user_jwt(ctx, self.info)
        if isinstance(got, Skip):
            return [got]
        _, token = got
        if token.alg not in jwt.HMAC_ALGS:
            return [skip(self.info, f"the token is signed with {token.alg or 'no algorithm'}, not HMAC")]
        secret = cracked_secret(ctx, token)
        if secret is None:
            return []
        claims = {**token.claims, "jti": secrets.token_hex(8)}
        forged = jwt.encode(token.header, claims, secret.encode("utf-8"))
        found = await _try_forgeries(ctx, self.info, [("forged with the cracked secret", forged)],
                                     f"a token forged with the cracked secret {mask(secret)!r}")
        if not found:
            return [skip(self.info, f"the secret {mask(secret)!r} matched the token offline, but the API refused "
                                    "a token forged with it")]
        return found


class ExpiredToken(Check):
    info = api2_info(
        "API2-JWT-EXPIRED", "Expired JWT accepted", 613, Severity.HIGH,
        "Sends the user's claims with `exp` an hour in the past, signed with the cracked secret when there is one "
        "(else with a random key), or the identity's configured `expired_token`; the API accepting it ignores "
        "expiry.",
        JWT_ADVICE,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        got = _user_jwt(ctx, self.info)
        if isinstance(got, Skip):
            return [got]
        user, token = got
        now = int(time.time())
        claims = {**token.claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}
        forged: list[tuple[str, str]] = []
        secret = cracked_secret(ctx, token) if token.alg in jwt.HMAC_ALGS else None
        if secret is not None:
            forged.append(("expired an hour ago, signed with the cracked secret",
                           jwt.encode(token.header, claims, secret.encode("utf-8"))))
        if user.expired_token:
            forged.append(("the configured expired token", user.expired_token))
        forged.append(("expired an hour ago, signed with a random key",
                       jwt.encode(token.header, claims, secrets.token_bytes(32))))
        found = await _try_forgeries(ctx, self.info, forged, "an expired JWT")
        if not found and secret is None and not user.expired_token:
            return [skip(self.info, "could not sign an expired token the API would otherwise accept (secret "
                                    "unknown); set expired_token on the identity to test expiry")]
        return found


class TokenInUrl(Check):
    info = api2_info(
        "API2-TOKEN-IN-URL", "Credential accepted in the URL", 598, Severity.MEDIUM,
        "Sends the user's token as a query parameter (`access_token`, `token`) instead of a header; the API "
        "accepting it invites tokens into logs, proxies and Referer headers.",
        "Accept tokens only in the Authorization header. In front of the API, Bastion's `policies.validation` "
        "with `reject_unknown_query_params: true` refuses query parameters the operation does not declare "
        "(such as `access_token`) with 400; `bastion audit` flags credential-named query parameters "
        "(BAST-AUTH-003).",
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        found = await probes(ctx, self.info)
        if not found:
            return [skip(self.info, "no secured GET operation that the user may call and an anonymous client "
                                    "may not")]
        first = found[0]
        if not first.user.token:
            return [skip(self.info, f"{first.user.name} has no bearer token")]
        for name in ("access_token", "token"):
            plan = first.plan.copy(query=[*first.plan.query, (name, first.user.token)])
            answer = await ctx.send(plan, ctx.anonymous, check=self.info)
            if success(answer):
                return [finding(self.info, first.op.label,
                                f"The API accepted the token in the `{name}` query parameter ({answer.status}); "
                                f"without it the request gets {first.refused.status}.", first.refused, answer)]
        return []


CHECKS: list[Check] = [
    MissingAuthentication(),
    InvalidToken(),
    AlgNone(),
    WrongKey(),
    AlgSwap(),
    WeakSecret(),
    ExpiredToken(),
    TokenInUrl(),
]
