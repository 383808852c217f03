"""API2:2023 Broken Authentication: what the API accepts instead of a valid credential.

Most checks start from *probe operations*: secured GET operations (no request body) that the
first user may call (2xx) and an anonymous client may not (401/403). A forged or misplaced
credential that turns the anonymous refusal into a 2xx on such an operation is a finding — the
refusal proves the operation needs authentication, the 2xx proves the forgery passed.

The login checks work on the *login operation*: the one an identity logged in with, else a
public POST whose JSON body has a user-name-like property (username, email, login...) and a
password-like one (password, passwd, pass...).

The password checks work on *password operations*: secured PUT/POST/PATCH operations whose path
or operationId mentions ``password`` and whose JSON body has a new-password property. One that
also takes a *user reference* — a path parameter or body property named ``id``, ``userId``,
``user``, ``username``, ``login``, ``accountId``, ``email``... (body: not ``id``) — acts on the
account it names. A user's own reference is read from the first secured GET without path
parameters whose last segment is ``me``/``self``/``current``/``profile``/``account``/``whoami``...
(or whose operationId says ``current``/``whoami``): the property named like the parameter, else
``id`` (``email`` for e-mail references); else the token's ``sub`` claim; user-name references
use the identity's login user name.
"""

from __future__ import annotations

import re
import secrets
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from bastion.tester.audit.context import Operation
from bastion.tester.audit.interface import Severity
from bastion.tester.scan import jwt
from bastion.tester.scan.checks.bfla import is_admin_operation
from bastion.tester.scan.checks.probing import body_fields, finding, skip, success
from bastion.tester.scan.engine import extract_id
from bastion.tester.scan.identities import credential_fields
from bastion.tester.scan.interface import (
    Check,
    CheckInfo,
    Exchange,
    Identity,
    RequestPlan,
    ScanContext,
    ScanFinding,
    Skip,
)

Outcome = ScanFinding | Skip

JWT_ADVICE = (
    "Validate every JWT: a fixed list of accepted algorithms (never `none`, never taken from the token), the "
    "signature with the expected key, and `exp`/`nbf`. Bastion's `auth` stage (planned: there is no "
    "`policies.auth` yet) will do this before a request reaches the API; until it lands, the API must."
)


def _info(id: str, title: str, cwe: int, severity: Severity, checks: str, advice: str, **extra: Any) -> CheckInfo:
    return CheckInfo(id=id, title=title, category="API2:2023", cwe=cwe, severity=severity, phase="authentication",
                     checks=checks, advice=advice, **extra)


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
    info = _info(
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
    info = _info(
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
    info = _info(
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
    info = _info(
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
    info = _info(
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
    info = _info(
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
    info = _info(
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
    info = _info(
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


# -- login checks ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Login:
    op: Operation
    user_field: str
    password_field: str
    #: A JSON pointer to the token in a successful answer, when known from an identity's login flow.
    known: tuple[tuple[str, str], ...]  # (username, password) of configured identities


def find_login(ctx: ScanContext) -> Login | None:
    """The login operation and its credential fields (see the module docstring)."""
    people = [*ctx.users, *([ctx.admin] if ctx.admin else [])]
    known = tuple((i.username, i.password) for i in people if i.username and i.password)
    for ident in people:
        if ident.login_operation is not None and ident.username_field and ident.password_field:
            return Login(ident.login_operation, ident.username_field, ident.password_field, known)
    for op in ctx.all_operations():
        if op.method != "post" or op.secured:
            continue
        for node in ctx.spec.request_schemas(op):
            props = node.schema.get("properties")
            if not isinstance(props, dict):
                continue
            user_field, password_field = credential_fields(props)
            if not (user_field and password_field) or "pass" not in password_field.lower():
                continue
            if any(w in password_field.lower() for w in ("new", "old", "current", "confirm")):
                continue
            return Login(op, user_field, password_field, known)
    return None


async def attempt(ctx: ScanContext, login: Login, info: CheckInfo, username: str, password: str) -> Exchange:
    """One login as ``username``, in the media type the operation declares (JSON, or the OAuth2 form)."""
    plan = ctx.plan(login.op, ctx.anonymous)
    if plan.json is None and plan.content_type == "application/x-www-form-urlencoded":
        fields = dict(parse_qsl((plan.body or b"").decode(), keep_blank_values=True))
        fields[login.user_field] = username
        fields[login.password_field] = password
        return await ctx.send(plan.copy(body=urlencode(fields).encode()), ctx.anonymous, check=info,
                              retry_429=False)
    body = dict(plan.json) if isinstance(plan.json, dict) else {}
    body[login.user_field] = username
    body[login.password_field] = password
    return await ctx.send(plan.copy(json=body, content_type=plan.content_type or "application/json"),
                          ctx.anonymous, check=info, retry_429=False)


def looks_logged_in(answer: Exchange) -> bool:
    """A 2xx carrying a token-named string or setting a cookie."""
    if not success(answer):
        return False
    if answer.header("set-cookie"):
        return True
    body = answer.json()
    stack: list[Any] = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if "token" in str(key).lower() and isinstance(value, str) and len(value) >= 8:
                    return True
                stack.append(value)
    return False


def throwaway_user(login: Login, example: str | None) -> str:
    name = "bscan" + secrets.token_hex(5)
    if (example and "@" in example) or "mail" in login.user_field.lower():
        return name + "@example.com"
    return name


_VOLATILE = re.compile(r"[0-9a-f]{8,}|\d{2,}", re.IGNORECASE)


def _normalised(answer: Exchange, replace: Sequence[str]) -> Any:
    body = answer.json()
    if body is None:
        text = answer.text
        for value in replace:
            text = text.replace(value, "<user>")
        return _VOLATILE.sub("#", text)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            for value in replace:
                node = node.replace(value, "<user>")
            return node
        return node

    return walk(body)


def _stable(a: Any, b: Any) -> Any:
    """The parts of two answers to the same kind of request that are equal (volatile fields dropped)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _stable(a[k], b[k]) for k in a if k in b and (a[k] == b[k] or isinstance(a[k], dict))}
    return a if a == b else None


class UserEnumeration(Check):
    info = _info(
        "API2-USER-ENUM", "Login reveals which user names exist", 204, Severity.MEDIUM,
        "Logs in with a wrong password for a configured user and for two random user names; a different status "
        "or body (volatile fields such as request IDs ignored) for the real user, or a consistently slower answer "
        "(by over 200 ms, confirmed twice), is a finding.",
        "Answer every failed login identically (same status, body and timing: verify a dummy hash for unknown "
        "users), and rate-limit logins (at the load balancer until Bastion's planned `ratelimit` stage lands).",
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        login = find_login(ctx)
        if login is None:
            return [skip(self.info, "no login operation (a public POST with user name and password properties)")]
        real = next(((u, p) for u, p in login.known if u), None)
        if real is None:
            return [skip(self.info, "needs an identity that logs in with a user name and password")]
        username = real[0]
        wrong = "Wrong-" + secrets.token_hex(6)
        ghost1, ghost2 = throwaway_user(login, username), throwaway_user(login, username)
        unknown1 = await attempt(ctx, login, self.info, ghost1, wrong)
        known = await attempt(ctx, login, self.info, username, wrong)
        unknown2 = await attempt(ctx, login, self.info, ghost2, wrong)
        answers = (unknown1, known, unknown2)
        # A 2xx without a token is a failed login too (APIs that answer {"status": "fail"} with 200).
        if any(a.status in (0, 429) or looks_logged_in(a) for a in answers):
            return [skip(self.info, "inconclusive: a failed login was rate limited, errored or succeeded "
                                    f"({', '.join(str(a.status) for a in answers)})")]
        if unknown1.status != unknown2.status:
            return [skip(self.info, "inconclusive: two unknown user names got different statuses")]
        names = (ghost1, ghost2, username)
        base = _stable(_normalised(unknown1, names), _normalised(unknown2, names))
        mine = _stable(_normalised(known, names), _normalised(known, names))
        if known.status != unknown1.status:
            return [finding(self.info, login.op.label,
                            f"A wrong password for an existing user gets {known.status}; an unknown user name gets "
                            f"{unknown1.status}.", unknown1, known)]
        if isinstance(base, dict) and isinstance(mine, dict):
            differs = any(k in mine and mine[k] != v for k, v in base.items() if v is not None)
        else:
            differs = base is not None and base != mine
        if differs:
            return [finding(self.info, login.op.label,
                            f"A wrong password for an existing user and an unknown user name both get "
                            f"{known.status}, with different bodies.", unknown1, known)]
        if known.elapsed - max(unknown1.elapsed, unknown2.elapsed) > 0.2:
            again_known = await attempt(ctx, login, self.info, username, wrong)
            again_ghost = await attempt(ctx, login, self.info, throwaway_user(login, username), wrong)
            if again_known.status not in (0, 429) and again_known.elapsed - again_ghost.elapsed > 0.2:
                return [finding(self.info, login.op.label,
                                f"A wrong password for an existing user takes {known.elapsed:.2f}s and "
                                f"{again_known.elapsed:.2f}s; unknown user names take {unknown1.elapsed:.2f}s and "
                                f"{again_ghost.elapsed:.2f}s.", unknown1, known, again_ghost, again_known)]
        return []


DEFAULT_CREDENTIALS: tuple[tuple[str, str], ...] = (
    ("admin", "admin"),
    ("admin", "password"),
    ("root", "root"),
    ("admin", "admin123"),
    ("administrator", "administrator"),
    ("test", "test"),
    ("user", "user"),
    ("admin", "changeme"),
)


class DefaultCredentials(Check):
    info = _info(
        "API2-DEFAULT-CREDS", "Default credentials accepted", 1392, Severity.CRITICAL,
        "Logs in with well-known default pairs (admin/admin, admin/password, root/root...) on the login operation; "
        "a 2xx carrying a token or a cookie is a finding. Stops at the first 429.",
        "Remove default accounts or force a password change before first use; rate-limit the login route "
        "(Bastion's `ratelimit` stage is planned) so guessing stays slow.",
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        login = find_login(ctx)
        if login is None:
            return [skip(self.info, "no login operation (a public POST with user name and password properties)")]
        tried = 0
        for username, password in DEFAULT_CREDENTIALS:
            if (username, password) in login.known:
                continue
            answer = await attempt(ctx, login, self.info, username, password)
            tried += 1
            if answer.status == 429:
                return [skip(self.info, f"the login was rate limited after {tried} attempt(s); the remaining "
                                        "default pairs were not tried")]
            if looks_logged_in(answer):
                return [finding(self.info, login.op.label,
                                f"The default credentials {username}/{mask(password)} log in ({answer.status}).",
                                answer)]
        return []


class NoLoginLimit(Check):
    info = _info(
        "API2-LOGIN-NO-LIMIT", "No lockout or rate limit on failed logins", 307, Severity.MEDIUM,
        "Sends 8 failed logins for a random user name; none of them answered 429 (or 423, or any change of "
        "status or a Retry-After) is a finding.",
        "Limit failed logins per account and per client (429 with Retry-After, growing delays, or a temporary "
        "lock); Bastion's planned `ratelimit` stage will limit the login route by client and by the user-name "
        "field.",
    )
    attempts = 8

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        login = find_login(ctx)
        if login is None:
            return [skip(self.info, "no login operation (a public POST with user name and password properties)")]
        ghost = throwaway_user(login, next((u for u, _ in login.known), None))
        answers: list[Exchange] = []
        for _ in range(self.attempts):
            answer = await attempt(ctx, login, self.info, ghost, "Wrong-" + secrets.token_hex(6))
            answers.append(answer)
            # Every way out says why: a pass (limited, or the answer changed: a lockout) or a skip.
            if answer.status == 0:
                return [skip(self.info, f"the login operation did not answer ({answer.error})")]
            if answer.status in (423, 429) or answer.header("retry-after"):
                return []
            if looks_logged_in(answer):
                return [skip(self.info, f"inconclusive: a login with a random user name got {answer.status} with "
                                        "a token or a cookie")]
            if answer.status != answers[0].status:
                return []
            if len(answers) == 1 and not _failed_login(answer):
                return [skip(self.info, f"inconclusive: a failed login gets {answer.status}, which does not look "
                                        "like a refused password")]
        return [finding(self.info, login.op.label,
                        f"{self.attempts} failed logins for one user name in a row all got {answers[0].status}: no "
                        "lockout and no rate limit.", answers[0], answers[-1])]


_REFUSAL_WORDS = re.compile(r"invalid|incorrect|wrong|unknown|bad|fail|credential|denied|unauthori", re.I)


def _failed_login(answer: Exchange) -> bool:
    """A refused login: 401/403/404, or a 400 (or a 2xx without a token) whose body says the credentials were
    wrong."""
    if answer.status in (401, 403, 404):
        return True
    refused = bool(_REFUSAL_WORDS.search(answer.text))
    return refused and (answer.status == 400 or (success(answer) and not looks_logged_in(answer)))


class PasswordChangeWithoutOld(Check):
    info = _info(
        "API2-PASSWORD-NO-OLD", "Password change without the current password", 620, Severity.HIGH,
        "Changes the last user's password sending only the new one (no current password) and restores it "
        "afterwards; a 2xx is a finding. Changes a real account, so it runs only with --allow-destructive.",
        "Require the current password (or a fresh re-authentication) to change a password or e-mail address, and "
        "revoke the user's other sessions afterwards. Declare the current password `required` in the request "
        "schema: Bastion's `policies.validation` (on by default for OpenAPI routes) then refuses a change "
        "without it with 400.",
        destructive=True,
        needs_users=1,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        target = ctx.users[-1]
        out: list[Outcome] = []
        for op in ctx.operations():
            if op.method not in ("put", "post", "patch") or "password" not in op.template.lower():
                continue
            fields = _password_fields(ctx, op)
            if fields is None:
                continue
            new_field, old_field = fields
            if target.password is None:
                return [skip(self.info, f"{target.name}'s password is unknown (static credentials), so it could "
                                        "not be restored")]
            # An operation naming the account (``/users/{userId}/password``) is sent the target's own reference,
            # never a guessed one: this check is about the target's own password.
            selector = user_selector(ctx, op)
            ref = await user_reference(ctx, target, selector, self.info) if selector else None
            if selector is not None and ref is None:
                out.append(skip(self.info, f"{op.label}: {target.name}'s own `{selector.name}` is unknown"))
                continue
            plan = ctx.plan(op, target, path_values={selector.name: ref} if selector and ref is not None
                            and selector.location == "path" else None)
            body = {k: v for k, v in (plan.json or {}).items() if k not in (new_field, old_field)
                    and "pass" not in k.lower()} if isinstance(plan.json, dict) else {}
            if selector is not None and ref is not None and selector.location == "body":
                body[selector.name] = _typed(ref, selector.schema)
            temporary = "Bscan-" + secrets.token_hex(6) + "-Aa1!"
            answer = await ctx.send(plan.copy(json={**body, new_field: temporary}), target, check=self.info)
            if not success(answer):
                continue
            restore = {**body, new_field: target.password}
            if old_field:
                restore[old_field] = temporary
            back = await ctx.send(plan.copy(json=restore), target, check=self.info)
            if not success(back):
                back = await ctx.send(plan.copy(json={**body, new_field: target.password}), target, check=self.info)
            note = "" if success(back) else f" The password of {target.name} could not be restored: reset it."
            out.append(finding(self.info, op.label,
                               f"{op.label} changed {target.name}'s password without the current password "
                               f"({answer.status}).{note}", answer))
        return out


# -- password change for another user -----------------------------------------------------------
#: Parameter and property names (lower case, separators removed) that name the account an operation acts on.
USER_SELECTORS = frozenset({"id", "uid", "user", "userid", "username", "userlogin", "login", "account", "accountid",
                            "member", "memberid", "customer", "customerid", "principal", "principalid", "email",
                            "useremail"})
#: Last path segments of an operation that returns the caller's own profile.
SELF_SEGMENT = re.compile(r"^(?:me|self|my|myself|current|current[-_]?user|whoami|profile|account|userinfo)$",
                          re.IGNORECASE)
_PROFILES: weakref.WeakKeyDictionary[Any, dict[str, dict[str, Any] | None]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class UserSelector:
    """Where a password operation takes the account it acts on."""

    location: Literal["path", "body"]
    name: str
    schema: dict[str, Any]


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def user_selector(ctx: ScanContext, op: Operation) -> UserSelector | None:
    """The path parameter (first) or body property that names the account ``op`` acts on, if any."""
    for param in op.parameters:
        if param.location == "path" and _squash(param.name) in USER_SELECTORS:
            node = ctx.spec.parameter_schema(param)
            return UserSelector("path", param.name, node.schema if node is not None else {})
    for field in body_fields(ctx.spec, op):
        if not field.read_only and _squash(field.name) in USER_SELECTORS - {"id"}:
            return UserSelector("body", field.name, field.schema)
    return None


async def own_profile(ctx: ScanContext, identity: Identity, info: CheckInfo) -> dict[str, Any] | None:
    """The identity's own profile object from a "me"-like GET (see the module docstring), once per scan."""
    cache = _PROFILES.setdefault(ctx, {})
    if identity.name in cache:
        return cache[identity.name]
    found: dict[str, Any] | None = None
    for op, values in profile_reads(ctx, identity)[:3]:
        answer = await ctx.send(ctx.plan(op, identity, path_values=values), identity, check=info)
        body = answer.json()
        if success(answer) and isinstance(body, dict):
            found = body
            break
    cache[identity.name] = found
    return found


#: Path parameters that name an account by its user name.
NAME_SELECTORS = frozenset({"username", "user", "login", "userlogin", "account", "accountname"})


def profile_reads(ctx: ScanContext, identity: Identity) -> list[tuple[Operation, dict[str, str]]]:
    """GETs that return ``identity``'s own profile: "me"-like paths (secured, no parameters) first, then a GET
    whose only path parameter names an account by user name (``/users/{username}``), filled with its own."""
    me = [op for op in ctx.all_operations() if op.method == "get" and op.secured and "{" not in op.template
          and (SELF_SEGMENT.match(op.template.rstrip("/").rsplit("/", 1)[-1])
               or re.search(r"current|whoami", str(op.node.get("operationId", "")), re.IGNORECASE))]
    out: list[tuple[Operation, dict[str, str]]] = [(op, {}) for op in sorted(me, key=lambda o: len(o.template))]
    if identity.username:
        for op in ctx.all_operations():
            params = re.findall(r"\{([^}]+)\}", op.template)
            if op.method == "get" and len(params) == 1 and op.template.endswith("{" + params[0] + "}") \
                    and _squash(params[0]) in NAME_SELECTORS:
                out.append((op, {params[0]: identity.username}))
    return out


async def user_reference(ctx: ScanContext, identity: Identity, selector: UserSelector,
                         info: CheckInfo) -> str | None:
    """``identity``'s own value for ``selector`` (its ID, user name or e-mail address), or None if unknown."""
    squashed = _squash(selector.name)
    if "mail" in squashed or selector.schema.get("format") == "email":
        if identity.username and "@" in identity.username:
            return identity.username
        profile = await own_profile(ctx, identity, info)
        email = next((v for k, v in (profile or {}).items() if "mail" in k.lower() and isinstance(v, str)), None)
        return email
    if "name" in squashed or "login" in squashed:
        return identity.username
    profile = await own_profile(ctx, identity, info)
    if profile is not None:
        value = extract_id(profile, selector.name)
        if value is not None:
            return value
    decoded = jwt.decode(identity.token) if identity.token else None
    sub = decoded.claims.get("sub") if decoded is not None else None
    if isinstance(sub, str | int) and not isinstance(sub, bool):
        return str(sub)
    return identity.username if squashed == "user" else None


def _typed(value: str, schema: dict[str, Any]) -> Any:
    """``value`` as the JSON type the schema wants (an integer ID stays an integer)."""
    types = schema.get("type")
    wanted = types if isinstance(types, list) else [types]
    if ("integer" in wanted or "number" in wanted) and value.isdigit():
        return int(value)
    return value


def _fresh_token(answer: Exchange) -> str | None:
    """The first token-named string of a login answer (a new session for the restore)."""
    stack: list[Any] = [answer.json()]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if "token" in str(key).lower() and isinstance(value, str) and len(value) >= 8:
                    return value
                stack.append(value)
    return None


def _password_ops(ctx: ScanContext) -> list[Operation]:
    """Secured writes whose path or operationId mentions a password and whose body has a new-password field."""
    return [op for op in ctx.operations() if op.method in ("put", "post", "patch") and not op.public
            and "password" in f"{op.template} {op.node.get('operationId', '')}".lower()
            and _password_fields(ctx, op) is not None]


class PasswordChangeOtherUser(Check):
    info = _info(
        "API2-PASSWORD-OTHER-USER", "Password change for another user", 620, Severity.CRITICAL,
        "As the second user, sets the first user's password through each password operation that names the account "
        "(a user ID or name in the path or body), with the caller's own password as the current one; logging in as "
        "the first user with the new password is a finding. The password is set back at once (a failed restore is "
        "stated in the finding). Changes a real account, so it runs only with --allow-destructive.",
        "Change a password only for the authenticated caller: take the account from the verified credential, never "
        "from the request, and verify that account's current password; reserve resets of other accounts to an "
        "administrative flow with its own authorization. No Bastion stage blocks this yet: it is object-level "
        "authorization, the API's to check (the planned `auth` stage will pass the verified user to the API).",
        destructive=True,
        needs_users=2,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        victim, attacker = ctx.users[0], ctx.users[1]
        login = find_login(ctx)
        if login is None:
            return [skip(self.info, "no login operation (a public POST with user name and password properties), so "
                                    "a change could not be proven")]
        if not (victim.username and victim.password):
            return [skip(self.info, f"{victim.name}'s user name and password are unknown (static credentials), so a "
                                    "change could be neither proven nor undone")]
        out: list[Outcome] = []
        targeted = [(op, sel) for op in _password_ops(ctx) if (sel := user_selector(ctx, op)) is not None]
        if not targeted:
            return [skip(self.info, "no password operation takes a user ID or name (path parameter or body property)")]
        for op, selector in targeted:
            ref = await user_reference(ctx, victim, selector, self.info)
            if ref is None:
                out.append(skip(self.info, f"{op.label}: {victim.name}'s `{selector.name}` is unknown"))
                continue
            temporary = "Bscan-" + secrets.token_hex(6) + "-Aa1!"
            plan = self._change(ctx, op, attacker, selector, ref, temporary, attacker.password)
            answer = await ctx.send(plan, attacker, check=self.info)
            if not success(answer):
                continue
            proof = await attempt(ctx, login, self.info, victim.username, temporary)
            if looks_logged_in(proof):
                restored = await self._restore(ctx, login, op, victim, temporary, proof)
                note = (f" {victim.name}'s password was set back." if restored else
                        f" RESTORE FAILED: {victim.name}'s password is still the scan's temporary value {temporary} "
                        "— log in with it and reset it now.")
                out.append(finding(self.info, op.label,
                                   f"{attacker.name} set {victim.name}'s password through {op.label} "
                                   f"(`{selector.name}`={ref}, {answer.status}) and the login as {victim.name} with "
                                   f"the new password succeeded.{note}", answer, proof))
                continue
            out.append(await self._unclear(ctx, login, op, victim, attacker, temporary, proof))
        return out

    def _change(self, ctx: ScanContext, op: Operation, caller: Identity, selector: UserSelector | None,
                ref: str | None, new_value: str, old_value: str | None) -> RequestPlan:
        """A request of ``op`` as ``caller`` setting the password of the account ``ref`` to ``new_value``."""
        new_field, old_field = _password_fields(ctx, op) or ("password", None)
        by_path = selector is not None and ref is not None and selector.location == "path"
        plan = ctx.plan(op, caller, path_values={selector.name: ref} if selector and ref and by_path else None)
        base = plan.json if isinstance(plan.json, dict) else {}
        body = {k: v for k, v in base.items() if "pass" not in k.lower()}
        if selector is not None and ref is not None and selector.location == "body":
            body[selector.name] = _typed(ref, selector.schema)
        for field in body_fields(ctx.spec, op):
            lowered = field.name.lower()
            if "pass" in lowered and any(w in lowered for w in ("confirm", "repeat", "again", "verify")):
                body[field.name] = new_value
        body[new_field] = new_value
        if old_field and old_value is not None:
            body[old_field] = old_value
        return plan.copy(json=body, content_type=plan.content_type or "application/json")

    async def _restore(self, ctx: ScanContext, login: Login, used: Operation, owner: Identity, temporary: str,
                       fresh_login: Exchange | None) -> bool:
        """Set ``owner``'s password back from ``temporary`` (as ``owner``: its session, else the new one from
        ``fresh_login``) through ``used`` or another password operation; True once a login with it works."""
        original = owner.password
        if original is None or owner.username is None:
            return False
        sessions = [owner]
        token = _fresh_token(fresh_login) if fresh_login is not None else None
        if token and owner.token and token != owner.token:
            sessions.append(with_token(owner, token, owner.name))
        ops = [used, *[op for op in _password_ops(ctx) if op is not used]]
        for session in sessions:
            for op in ops:
                selector = user_selector(ctx, op)
                ref = await user_reference(ctx, owner, selector, self.info) if selector else None
                if selector is not None and ref is None:
                    continue
                back = await ctx.send(self._change(ctx, op, session, selector, ref, original, temporary), session,
                                      check=self.info)
                if success(back):
                    check = await attempt(ctx, login, self.info, owner.username, original)
                    if looks_logged_in(check):
                        return True
        return False

    async def _unclear(self, ctx: ScanContext, login: Login, op: Operation, victim: Identity, attacker: Identity,
                       temporary: str, proof: Exchange) -> Outcome:
        """The change was accepted but the victim cannot log in with the new password: say what happened."""
        if proof.status in (0, 423, 429):
            restored = await self._restore(ctx, login, op, victim, temporary, None)
            state = "set back" if restored else f"NOT set back (it may now be {temporary}: check the account)"
            return skip(self.info, f"{op.label} accepted {attacker.name}'s change of {victim.name}'s password "
                                   f"({proof.status or proof.error} on the login that would prove it); the password "
                                   f"was {state}")
        if attacker.username and attacker.password:
            own = await attempt(ctx, login, self.info, attacker.username, temporary)
            if looks_logged_in(own):
                restored = await self._restore(ctx, login, op, attacker, temporary, own)
                state = "set back" if restored else f"NOT set back (it is now {temporary}: reset it)"
                return skip(self.info, f"{op.label} ignored the user reference and changed {attacker.name}'s own "
                                       f"password instead (not a finding); it was {state}")
        return skip(self.info, f"{op.label} answered {proof.status} to {attacker.name}'s change of {victim.name}'s "
                               "password, but the new password does not log in: nothing changed")


def _password_fields(ctx: ScanContext, op: Operation) -> tuple[str, str | None] | None:
    """(new password property, current password property or None) of the operation's body."""
    for node in ctx.spec.request_schemas(op):
        props = node.schema.get("properties")
        if not isinstance(props, dict):
            continue
        names = [str(k) for k in props]
        lowered = {n: n.lower().replace("_", "").replace("-", "") for n in names}
        old = next((n for n in names if "pass" in lowered[n] and any(w in lowered[n] for w in ("old", "current"))),
                   None)
        new = next((n for n in names if "pass" in lowered[n] and "new" in lowered[n]), None)
        if new is None:
            new = next((n for n in names if "pass" in lowered[n] and n != old and "confirm" not in lowered[n]), None)
        if new is not None:
            return new, old
    return None


CHECKS: list[Check] = [
    MissingAuthentication(),
    InvalidToken(),
    AlgNone(),
    WrongKey(),
    AlgSwap(),
    WeakSecret(),
    ExpiredToken(),
    TokenInUrl(),
    UserEnumeration(),
    DefaultCredentials(),
    NoLoginLimit(),
    PasswordChangeWithoutOld(),
    PasswordChangeOtherUser(),
]
