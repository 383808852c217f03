"""References and privileges carried in request bodies (API1, API5).

* *Object reference in the body* (``API1-BOLA-BODY-REF``): a secured write whose JSON body names the
  account it acts on (``username``, ``user_id``, ``email``... — not a password operation, those are
  ``API2-PASSWORD-OTHER-USER``'s). User B sends it with user A's reference and marked values in the
  other string fields; A's own profile (a "me"-like GET, read fresh) showing B's values is the finding.
  A's old values are written back by A at once and read again; the finding says whether that worked.
* *Privileged role change* (``API5-ROLE-CHANGE``): a secured write whose JSON body *declares* a
  privileged property (role, is_admin, permissions...: ``API3-MASS-ASSIGNMENT`` covers undeclared ones).
  User A sets its own value to a privileged one the target surely stores — an enum's highest value,
  ``true``, or the admin identity's own value for a free-form string (none is guessed) — on its own
  account (a path parameter naming the account gets A's reference); A's profile showing the new value
  is the finding. The old value is written back (by A, else by the admin) and read again.
"""

from __future__ import annotations

import secrets
from typing import Any

from bastion.tester.audit.context import Operation, types_of
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.checks.authn.passwords import _typed, profile_reads, user_reference, user_selector
from bastion.tester.scan.checks.probing import body_fields, finding, skip, success
from bastion.tester.scan.checks.properties import _PRIVILEGED, _free_string, _json, escalated_value, snake
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

__all__ = ["CHECKS", "BodyReference", "RoleChange", "fresh_profile", "own_account_plan", "privileged_fields"]

Outcome = ScanFinding | Skip
MAX_OPERATIONS = 6


async def fresh_profile(ctx: ScanContext, identity: Identity, info: CheckInfo) -> tuple[dict[str, Any] | None,
                                                                                      Exchange | None]:
    """``identity``'s own profile read now (not cached) from a "me"-like GET, and the exchange."""
    for op, values in profile_reads(ctx, identity)[:2]:
        answer = await ctx.send(ctx.plan(op, identity, path_values=values), identity, check=info)
        body = answer.json()
        if success(answer) and isinstance(body, dict):
            return body, answer
    return None, None


def _writes(ctx: ScanContext) -> list[Operation]:
    return [op for op in ctx.operations() if op.method in ("put", "patch", "post") and not op.public
            and "password" not in f"{op.template} {op.node.get('operationId', '')}".lower()]


def _marked(name: str, schema: dict[str, Any]) -> Any:
    """A recognisable value for a string field (an address for e-mail fields), or None for other types."""
    kinds = types_of(schema)
    if (kinds and "string" not in kinds) or isinstance(schema.get("enum"), list):
        return None
    token = secrets.token_hex(4)
    if "mail" in name.lower() or schema.get("format") == "email":
        return f"bscan{token}@example.com"
    return None if schema.get("format") or schema.get("pattern") else f"bscan-{token}"


async def own_account_plan(ctx: ScanContext, op: Operation, who: Identity, info: CheckInfo) -> RequestPlan | None:
    """The request ``op`` on ``who``'s own account: a path parameter or body field naming an account gets its
    reference (None when that reference is unknown)."""
    selector = user_selector(ctx, op)
    if selector is None or selector.location == "body":
        plan = ctx.plan(op, who)
        if selector is not None and isinstance(plan.json, dict):
            ref = await user_reference(ctx, who, selector, info)
            if ref is None:
                return None
            plan.json = {**plan.json, selector.name: _typed(ref, selector.schema)}
        return plan
    ref = await user_reference(ctx, who, selector, info)
    return None if ref is None else ctx.plan(op, who, path_values={selector.name: ref})


def privileged_fields(ctx: ScanContext) -> list[tuple[Operation, str, dict[str, Any]]]:
    """(operation, property, schema) of each secured write whose JSON body declares a privileged property."""
    return [(op, f.name, f.schema) for op in _writes(ctx) for f in body_fields(ctx.spec, op)
            if not f.read_only and _PRIVILEGED.match(snake(f.name))]


class BodyReference(Check):
    info = CheckInfo(
        id="API1-BOLA-BODY-REF", title="Another user's account changed through a reference in the body",
        category="API1:2023", cwe=639, severity=Severity.HIGH, phase="authorization",
        checks="User B sends each secured write whose JSON body names an account (username, user_id, email...) "
        "with user A's reference and marked values; A's own profile showing B's values is a finding (A's values "
        "are written back at once).",
        advice="Take the account an operation acts on from the verified credential, never from the request "
        "body; when an administrator may name another account, check that role. Bastion's planned `auth` stage "
        "passes the verified user to the API in a header it can trust.",
        needs_users=2,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        a, b = ctx.users[0], ctx.users[1]
        candidates = [(op, sel) for op in _writes(ctx) if (sel := user_selector(ctx, op)) is not None
                      and sel.location == "body"]
        if not candidates:
            return [skip(self.info, "no secured write names the account it acts on in its JSON body")]
        out: list[Outcome] = []
        for op, selector in candidates[:MAX_OPERATIONS]:
            ref_a = await user_reference(ctx, a, selector, self.info)
            before, _ = await fresh_profile(ctx, a, self.info)
            if ref_a is None or before is None:
                out.append(skip(self.info, f"{op.label}: {a.name}'s `{selector.name}` or profile is unknown"))
                continue
            fields = {f.name: f.schema for f in body_fields(ctx.spec, op) if not f.read_only}
            marks = {name: value for name, schema in fields.items() if name != selector.name
                     and name in before and (value := _marked(name, schema)) is not None}
            if not marks:
                continue
            plan = ctx.plan(op, b)
            body = {**(plan.json if isinstance(plan.json, dict) else {}), **marks,
                    selector.name: _typed(ref_a, selector.schema)}
            sent = await ctx.send(plan.copy(json=body), b, check=self.info)
            if not success(sent):
                continue
            after, shown = await fresh_profile(ctx, a, self.info)
            changed = {k: v for k, v in marks.items() if isinstance(after, dict) and after.get(k) == v}
            if not changed:
                continue
            restored = await self._restore(ctx, a, op, selector.name, ref_a, selector.schema, before, changed)
            listed = ", ".join(f"`{k}`" for k in changed)
            out.append(finding(self.info, op.label,
                               f"{b.name} changed {a.name}'s {listed} by naming {a.name} in the body's "
                               f"`{selector.name}`. {restored}", sent, *([shown] if shown else [])))
        return out

    async def _restore(self, ctx: ScanContext, a: Identity, op: Operation, field: str, ref: str,
                       schema: dict[str, Any], before: dict[str, Any], changed: dict[str, Any]) -> str:
        plan = ctx.plan(op, a)
        old = {k: before[k] for k in changed}
        body = {**(plan.json if isinstance(plan.json, dict) else {}), **old, field: _typed(ref, schema)}
        await ctx.send(plan.copy(json=body), a, check=self.info)
        again, _ = await fresh_profile(ctx, a, self.info)
        if isinstance(again, dict) and all(again.get(k) == v for k, v in old.items()):
            return "The scan wrote the old values back."
        return (f"The scan could NOT write the old values back ({', '.join(f'{k}: {_json(v)}' for k, v in old.items())}"
                f"): restore them by hand for {a.name}.")


class RoleChange(Check):
    info = CheckInfo(
        id="API5-ROLE-CHANGE", title="A user can raise its own privileges", category="API5:2023", cwe=269,
        severity=Severity.CRITICAL, phase="authorization",
        checks="User A sends each secured write that declares a privileged property (role, is_admin, "
        "permissions...) with a privileged value the target stores (an enum's highest value, true, or the admin "
        "identity's own value) for its own account; A's profile showing it is a finding (the old value is "
        "written back at once).",
        advice="Only administrators may change roles and privileges: check the caller's role in the operation "
        "(`x-required-role: admin` in the document lets `bastion audit` and reviews see it), and keep such "
        "operations apart from the ones users call on their own account.",
        needs_users=1,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        a = ctx.users[0]
        candidates = privileged_fields(ctx)
        if not candidates:
            return [skip(self.info, "no secured write declares a privileged property (role, is_admin...)")]
        before, _ = await fresh_profile(ctx, a, self.info)
        if before is None:
            return [skip(self.info, f"{a.name}'s own profile is unknown (no \"me\"-like GET answered)")]
        admin_profile = (await fresh_profile(ctx, ctx.admin, self.info))[0] if ctx.admin else None
        out: list[Outcome] = []
        for op, name, schema in candidates[:MAX_OPERATIONS]:
            if name not in before:
                continue
            current = before[name]
            if _free_string(schema):
                value = admin_profile.get(name) if isinstance(admin_profile, dict) else None
                if not isinstance(value, str) or value == current:
                    out.append(skip(self.info, f"{op.label}: `{name}` is a free-form string and no admin identity "
                                               "shows a privileged value; none was guessed"))
                    continue
            else:
                # The admin's own value when the enum has it (the highest rank is not always named "admin").
                shown_by_admin = admin_profile.get(name) if isinstance(admin_profile, dict) else None
                enum = schema.get("enum")
                value = shown_by_admin if isinstance(enum, list) and shown_by_admin in enum and \
                    shown_by_admin != current else escalated_value(ctx.spec, schema, current)
                if value is None:
                    continue
            plan = await own_account_plan(ctx, op, a, self.info)
            if plan is None:
                continue
            sent = await ctx.send(plan.copy(json={**(plan.json if isinstance(plan.json, dict) else {}),
                                                  name: value}), a, check=self.info)
            if not success(sent):
                continue
            after, shown = await fresh_profile(ctx, a, self.info)
            if not isinstance(after, dict) or after.get(name) != value:
                continue
            restored = await self._restore(ctx, op, a, plan, name, current)
            out.append(finding(self.info, op.label,
                               f"{a.name} raised its own `{name}` from {_json(current)} to {_json(value)} through "
                               f"{op.label}. {restored}", sent, *([shown] if shown else [])))
        return out

    async def _restore(self, ctx: ScanContext, op: Operation, a: Identity, plan: RequestPlan, name: str,
                       current: Any) -> str:
        for who in [a, *([ctx.admin] if ctx.admin else [])]:
            body = {**(plan.json if isinstance(plan.json, dict) else {}), name: current}
            await ctx.send(plan.copy(json=body), who, check=self.info)
            again, _ = await fresh_profile(ctx, a, self.info)
            if isinstance(again, dict) and again.get(name) == current:
                return f"The scan set it back to {_json(current)}."
        return f"The scan could NOT set `{name}` back to {_json(current)}: restore it by hand for {a.name}."


CHECKS: list[Check] = [BodyReference(), RoleChange()]
