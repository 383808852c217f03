"""Putting an account's changed properties back: the account's own profile write, else an account operation.

A probe that proved a mass assignment on a sign-up leaves an account with the privilege it gave itself
(``admin: true``, the administrator's role). :func:`restore_account` writes the values an ordinary account
has back — first as the account itself through its profile write (a PUT/PATCH on its "me"-like path),
then, if that did not take, as the admin identity through an operation on that account named like
role/roles/permissions (``PUT /users/{username}/role``) — and reads the profile again to verify. It says
what was restored and what could not be, so the finding tells the user what to fix by hand.
"""

from __future__ import annotations

import re
from typing import Any

from bastion.tester.audit.context import Operation
from bastion.tester.scan.checks.probing import body_fields, success
from bastion.tester.scan.interface import CheckInfo, Identity, RequestPlan, ScanContext

__all__ = ["restore_account"]

#: Last path segment of an operation that sets an account's privileges.
_PRIVILEGE_SEGMENT = re.compile(r"^(?:role|roles|permissions?|privileges?|admin|groups?)$", re.IGNORECASE)
#: Path parameters naming an account (filled with the account's user name or ID).
_ACCOUNT_PARAM = re.compile(r"^(?:user(?:_?name|_?id)?|account(?:_?id)?|login|uid|id)$", re.IGNORECASE)


async def _profile(ctx: ScanContext, ident: Identity, info: CheckInfo) -> tuple[Operation, dict[str, Any]] | None:
    """The account's own profile read now (never a cached copy), with the operation that read it."""
    from bastion.tester.scan.checks.authn.passwords import profile_reads

    for op, values in profile_reads(ctx, ident)[:3]:
        answer = await ctx.send(ctx.plan(op, ident, path_values=values), ident, check=info)
        body = answer.json()
        if success(answer) and isinstance(body, dict):
            return op, body
    return None


def _body(ctx: ScanContext, op: Operation, plan: RequestPlan, current: dict[str, Any],
          wanted: dict[str, Any]) -> dict[str, Any]:
    """PATCH: only the values; PUT/POST: the operation's sample body with the account's current values, plus them."""
    if op.method == "patch":
        return dict(wanted)
    base = dict(plan.json) if isinstance(plan.json, dict) else {}
    base.update({k: current[k] for k in base if k in current})
    return {**base, **wanted}


def _privilege_operations(ctx: ScanContext, wanted: dict[str, Any]) -> list[tuple[Operation, str]]:
    """Secured writes on ``/.../{account}/role``-like paths whose body declares one of ``wanted``'s names."""
    out = []
    for op in ctx.operations():
        params = re.findall(r"\{([^}]+)\}", op.template)
        last = op.template.rstrip("/").rsplit("/", 1)[-1]
        if op.method not in ("put", "patch", "post") or op.public or len(params) != 1:
            continue
        if not _PRIVILEGE_SEGMENT.match(last) or not _ACCOUNT_PARAM.match(params[0]):
            continue
        if {f.name for f in body_fields(ctx.spec, op)} & set(wanted):
            out.append((op, params[0]))
    return out


async def restore_account(ctx: ScanContext, info: CheckInfo, ident: Identity, wanted: dict[str, Any]) -> str:
    """Write ``wanted`` back on ``ident``'s account and verify it (see the module docstring); one sentence
    saying what was restored, or what could not be."""
    if not wanted:
        return ""
    shown = ", ".join(f"`{k}`" for k in wanted)
    found = await _profile(ctx, ident, info)
    if found is None:
        return (f"The scan could NOT restore {shown} on its throwaway account {ident.username}: its profile cannot be "
                "read.")
    reader, current = found
    # (operation, as whom, path values, the names it may be sent: None for the account's own profile write,
    # which took the undeclared values in the first place)
    tries: list[tuple[Operation, Identity, dict[str, str], set[str] | None]] = [
        (op, ident, {}, None) for op in ctx.operations()
        if op.template == reader.template and op.method in ("put", "patch") and "{" not in op.template]
    if ctx.admin is not None:
        own_id = str(current.get("id", "")) or None
        for op, param in _privilege_operations(ctx, wanted):
            value = ident.username if "name" in param.lower() or param.lower() == "login" else own_id
            if value:
                tries.append((op, ctx.admin, {param: value}, {f.name for f in body_fields(ctx.spec, op)}))
    for op, who, values, declared in tries:
        fields = {k: v for k, v in wanted.items() if current.get(k) != v and (declared is None or k in declared)}
        if not fields:
            continue
        plan = ctx.plan(op, who, path_values=values)
        await ctx.send(plan.copy(json=_body(ctx, op, plan, current, fields)), who, check=info)
        again = await _profile(ctx, ident, info)
        current = again[1] if again is not None else current
    left = [k for k, v in wanted.items() if current.get(k) != v]
    if not left:
        return f"The scan restored {shown} on its throwaway account {ident.username} to an ordinary account's values."
    return (f"The scan could NOT restore {', '.join(f'`{k}`' for k in left)} on its throwaway account "
            f"{ident.username} (no operation it may call took the ordinary value): remove or demote that account "
            "by hand.")
