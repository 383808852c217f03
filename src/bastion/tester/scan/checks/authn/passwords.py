"""API2:2023 Broken Authentication, passwords: changes without the current password, or of another account.


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
import weakref
from dataclasses import dataclass
from typing import Any, Literal

from bastion.tester.audit.context import Operation
from bastion.tester.audit.interface import Severity
from bastion.tester.scan import jwt
from bastion.tester.scan.checks.authn.common import Outcome, api2_info
from bastion.tester.scan.checks.authn.logins import Login, attempt, find_login, looks_logged_in
from bastion.tester.scan.checks.authn.tokens import with_token
from bastion.tester.scan.checks.probing import body_fields, finding, skip, success
from bastion.tester.scan.interface import (
    Check,
    CheckInfo,
    Exchange,
    Identity,
    RequestPlan,
    ScanContext,
)
from bastion.tester.scan.objects import extract_id


class PasswordChangeWithoutOld(Check):
    info = api2_info(
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
    info = api2_info(
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
    PasswordChangeWithoutOld(),
    PasswordChangeOtherUser(),
]
