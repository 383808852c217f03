"""API2:2023 Broken Authentication, logins: account enumeration, default credentials, unlimited attempts.

The login checks work on the *login operation*: the one an identity logged in with, else a
public POST whose JSON body has a user-name-like property (username, email, login...) and a
password-like one (password, passwd, pass...).
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from bastion.tester.audit.context import Operation
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.checks.authn.common import Outcome, api2_info
from bastion.tester.scan.checks.authn.tokens import mask
from bastion.tester.scan.checks.probing import finding, pair_finding, skip, success
from bastion.tester.scan.identities import credential_fields
from bastion.tester.scan.interface import (
    Check,
    CheckInfo,
    Exchange,
    ScanContext,
)


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
    info = api2_info(
        "API2-USER-ENUM", "Login reveals which user names exist", 204, Severity.MEDIUM,
        "Logs in with a wrong password for an account the scan registered itself (or one marked disposable) and "
        "for two random user names; a different status or body (volatile fields such as request IDs ignored) for "
        "the existing account, or a consistently slower answer (by over 200 ms, confirmed twice), is a finding. A "
        "configured account never gets a wrong password: its lockout counter does not move.",
        "Answer every failed login identically (same status, body and timing: verify a dummy hash for unknown "
        "users), and rate-limit logins (at the load balancer until Bastion's planned `ratelimit` stage lands).",
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        login = find_login(ctx)
        if login is None:
            return [skip(self.info, "no login operation (a public POST with user name and password properties)")]
        username, why_not = await self._expendable_account(ctx, login)
        if username is None:
            return [skip(self.info, why_not)]
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
            return [pair_finding(self.info, login.op.label,
                                 f"A wrong password for an existing user gets {known.status}; an unknown user name "
                                 f"gets {unknown1.status}.", unknown1, known)]
        if isinstance(base, dict) and isinstance(mine, dict):
            differs = any(k in mine and mine[k] != v for k, v in base.items() if v is not None)
        else:
            differs = base is not None and base != mine
        if differs:
            return [pair_finding(self.info, login.op.label,
                                 f"A wrong password for an existing user and an unknown user name both get "
                                 f"{known.status}, with different bodies.", unknown1, known)]
        if known.elapsed - max(unknown1.elapsed, unknown2.elapsed) > 0.2:
            again_known = await attempt(ctx, login, self.info, username, wrong)
            again_ghost = await attempt(ctx, login, self.info, throwaway_user(login, username), wrong)
            if again_known.status not in (0, 429) and again_known.elapsed - again_ghost.elapsed > 0.2:
                return [pair_finding(self.info, login.op.label,
                                     f"A wrong password for an existing user takes {known.elapsed:.2f}s and "
                                     f"{again_known.elapsed:.2f}s; unknown user names take {unknown1.elapsed:.2f}s and "
                                     f"{again_ghost.elapsed:.2f}s.", unknown1, known, again_ghost, again_known)]
        return []

    async def _expendable_account(self, ctx: ScanContext, login: Login) -> tuple[str | None, str]:
        """The name of an existing account a wrong password may go to — one the scan registered, else one the
        user marked ``disposable`` —, or None and why there is none. A real account is never used: each wrong
        password would move its lockout counter."""
        from bastion.tester.scan.login import signup_operation

        people = [*ctx.users, *([ctx.admin] if ctx.admin else [])]
        registered = next((u.username for u in people if u.registered_with and u.username), None)
        if registered is not None:
            return registered, ""
        signup = signup_operation(ctx, login.op)
        if signup is not None:
            name, password = throwaway_user(login, None), "Bscan-" + secrets.token_hex(8) + "!5b"
            op, user_field, password_field = signup
            plan = ctx.plan(op, ctx.anonymous)
            body = dict(plan.json) if isinstance(plan.json, dict) else {}
            mail = name if "@" in name else name + "@example.com"
            body.update({k: mail for k in body if "mail" in k.lower()})
            body.update({user_field: mail if "mail" in user_field.lower() else name.split("@")[0],
                         password_field: password})
            made = await ctx.send(plan.copy(json=body), ctx.anonymous, check=self.info)
            login_name = mail if "mail" in login.user_field.lower() else str(body[user_field])
            if success(made) and looks_logged_in(await attempt(ctx, login, self.info, login_name, password)):
                return login_name, ""
            return None, (f"the account registered through {op.label} to test against ({made.status}) could not "
                          "log in; a configured account's name is never sent with a wrong password")
        disposable = next((u.username for u in people if u.disposable and u.username), None)
        if disposable is not None:
            return disposable, ""
        return None, ("needs an account the scan may send a wrong password to: a public sign-up in the document "
                      "(the scan registers a throwaway) or an identity marked `disposable: true`; a configured "
                      "account's name is never used, so its lockout counter does not move")


DEFAULT_CREDENTIALS: tuple[tuple[str, str], ...] = (
    ("admin", "admin"),
    ("admin", "password"),
    ("root", "root"),
    ("root", "toor"),
    ("administrator", "administrator"),
    ("test", "test"),
    ("user", "user"),
    ("guest", "guest"),
)
#: Wrong passwords the check may send for one user name. These names may be real accounts
#: (a real ``admin``): an API that locks an account after 3 failures must not lock it because
#: of a scan, so the check stays below the lowest lockout threshold in common use.
MAX_GUESSES_PER_NAME = 2


class DefaultCredentials(Check):
    info = api2_info(
        "API2-DEFAULT-CREDS", "Default credentials accepted", 1392, Severity.CRITICAL,
        "Logs in with well-known default pairs (admin/admin, admin/password, root/root...) on the login operation; "
        "a 2xx carrying a token or a cookie is a finding. At most 2 passwords per user name (below common "
        "lockout thresholds, so a real account is not locked); stops at the first 429.",
        "Remove default accounts or force a password change before first use; rate-limit the login route "
        "(Bastion's `ratelimit` stage is planned) so guessing stays slow.",
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        login = find_login(ctx)
        if login is None:
            return [skip(self.info, "no login operation (a public POST with user name and password properties)")]
        tried = 0
        per_name: dict[str, int] = {}
        for username, password in DEFAULT_CREDENTIALS:
            if (username, password) in login.known or per_name.get(username, 0) >= MAX_GUESSES_PER_NAME:
                continue
            per_name[username] = per_name.get(username, 0) + 1
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
    info = api2_info(
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


CHECKS: list[Check] = [
    UserEnumeration(),
    DefaultCredentials(),
    NoLoginLimit(),
]
