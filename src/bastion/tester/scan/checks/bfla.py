"""API5:2023 Broken Function Level Authorization: administrative functions called by a user.

An operation is *administrative* when the document says so: a path segment such as ``admin``,
``internal``, ``manage`` (the list ``bastion audit`` uses), a tag named like them, a security
requirement or ``x-bastion-scopes`` with an ``admin`` scope, or ``x-bastion-admin: true``.

- Reads (GET/HEAD): the first user calls them; a 2xx is a finding.
- Writes on an object (a path parameter): the user and the admin identity call them with an ID
  that does not exist, so nothing changes; the user getting the admin's answer (not 401/403)
  means the function check is missing. Needs an admin identity; DELETE only with
  ``--allow-destructive``.
- Writes on a collection: only with ``--allow-destructive`` (a 2xx would create or change data).
- Method switching: on administrative paths that declare no GET, the user sends GET; a 2xx is a
  finding.
"""

from __future__ import annotations

import secrets
from typing import Any

from bastion.tester.audit.auth import ADMIN_SEGMENT
from bastion.tester.audit.context import Operation
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.checks.probing import finding, skip, success
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
ADVICE = (
    "Check the caller's role or scopes in every administrative function (deny by default), not only that the "
    "caller is logged in; give admin operations their own scopes in the OpenAPI document so Bastion's planned "
    "`auth` stage can enforce them (`security: [{oauth2: [admin]}]`, or `x-bastion-scopes`)."
)


def _scopes(op: Operation) -> list[str]:
    out: list[str] = []
    for requirement in op.security or []:
        if isinstance(requirement, dict):
            for scopes in requirement.values():
                if isinstance(scopes, list):
                    out += [str(s) for s in scopes]
    extra = op.node.get("x-bastion-scopes")
    if isinstance(extra, list):
        out += [str(s) for s in extra]
    return out


def is_admin_operation(op: Operation) -> bool:
    """See the module docstring: path segment, tag, admin scope, or ``x-bastion-admin``."""
    if op.node.get("x-bastion-admin") is True:
        return True
    if any(ADMIN_SEGMENT.match(seg) for seg in op.template.split("/")):
        return True
    tags = op.node.get("tags")
    if isinstance(tags, list) and any(isinstance(t, str) and ADMIN_SEGMENT.match(t.strip()) for t in tags):
        return True
    return any("admin" in s.lower() for s in _scopes(op))


def _nonexistent(ctx: ScanContext, op: Operation, identity: Identity) -> RequestPlan:
    """A plan for ``op`` with its last path parameter set to an ID that cannot exist."""
    params = [p for p in op.parameters if p.location == "path"]
    last = params[-1]
    node = ctx.spec.parameter_schema(last)
    schema: dict[str, Any] = node.schema if node else {}
    kinds = schema.get("type")
    if kinds in ("integer", "number") or (isinstance(kinds, list) and ("integer" in kinds or "number" in kinds)):
        value = "987654321"
    elif schema.get("format") == "uuid":
        value = "00000000-0000-4000-8000-" + secrets.token_hex(6)
    else:
        value = "bscan-missing-" + secrets.token_hex(4)
    return ctx.plan(op, identity, path_values={last.name: value})


class FunctionLevel(Check):
    info = CheckInfo(
        id="API5-BFLA", title="Administrative function callable by a normal user", category="API5:2023", cwe=285,
        severity=Severity.HIGH, phase="authorization",
        checks="Calls operations that look administrative (admin/internal/manage path segments or tags, admin "
        "scopes, x-bastion-admin) without a login, then as a normal user: a 2xx on a read (the finding names "
        "credential fields and secrets the answer exposes), or the admin's own answer on a write aimed at a "
        "nonexistent ID, is a finding.",
        advice=ADVICE,
        needs_users=1,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        user = ctx.users[0]
        in_scope = {id(op) for op in ctx.operations()}
        candidates = [op for op in ctx.all_operations() if is_admin_operation(op) and not op.public]
        if not candidates:
            return [skip(self.info, "no operation looks administrative (path, tags, scopes, x-bastion-admin)")]
        out: list[Outcome] = []
        for op in candidates:
            method = op.method.upper()
            if method in ("GET", "HEAD"):
                source = ctx.admin if ctx.admin is not None else user
                plan = ctx.plan(op, source)
                # Anonymous first: an administrative read that needs no login at all is the worse flaw.
                anonymous = await ctx.send(plan, ctx.anonymous, check=self.info)
                if success(anonymous):
                    declared = ("although the document declares it secured" if op.secured else
                                "and the document declares no security for it")
                    out.append(finding(self.info, op.label,
                                       f"{op.label} answered {anonymous.status} without any login, {declared}."
                                       f"{leaked(anonymous)}", anonymous))
                    continue
                answer = await ctx.send(plan, user, check=self.info)
                if success(answer):
                    out.append(finding(self.info, op.label,
                                       f"{user.name} (role user) called {op.label} and got {answer.status}."
                                       f"{leaked(answer)}", answer))
                continue
            has_params = any(p.location == "path" for p in op.parameters)
            if has_params:
                if id(op) not in in_scope:
                    out.append(skip(self.info, f"{op.label}: {method} is destructive; run with --allow-destructive"))
                    continue
                if ctx.admin is None:
                    out.append(skip(self.info, f"{op.label}: needs an admin identity to compare answers"))
                    continue
                plan = _nonexistent(ctx, op, ctx.admin)
                reference = await ctx.send(plan, ctx.admin, check=self.info)
                answer = await ctx.send(plan, user, check=self.info)
                if (reference.status not in (0, 401, 403, 405, 429) and answer.status == reference.status
                        and reference.status < 500):
                    out.append(finding(self.info, op.label,
                                       f"{user.name} (role user) reached {op.label}: for a nonexistent object it "
                                       f"gets the admin's answer ({answer.status}) instead of 401/403.",
                                       reference, answer))
                continue
            if not ctx.options.allow_destructive:
                out.append(skip(self.info, f"{op.label}: a write on a collection; run with --allow-destructive"))
                continue
            answer = await ctx.send(ctx.plan(op, user), user, check=self.info)
            if success(answer):
                out.append(finding(self.info, op.label,
                                   f"{user.name} (role user) called {op.label} and got {answer.status}.", answer))
        return out


def leaked(answer: Exchange) -> str:
    """What an answer exposes that it should not: credential-named fields and secret-looking values, counted."""
    from bastion.tester.scan.checks.properties import credential_name, sensitive_value

    counts: dict[str, int] = {}
    stack: list[tuple[str, Any]] = [("", answer.json())]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                path = f"{where}.{key}" if where else str(key)
                if isinstance(value, str) and value and (credential_name(str(key))
                                                         or sensitive_value(str(key), value, frozenset())):
                    counts[path] = counts.get(path, 0) + 1
                else:
                    stack.append((path, value))
        elif isinstance(node, list):
            stack.extend((f"{where}[]", item) for item in node[:200])
    if not counts:
        return ""
    shown = ", ".join(f"`{k}` ({n} value{'s' if n > 1 else ''})" for k, n in sorted(counts.items())[:5])
    return f" The answer exposes {shown}."


class MethodSwitch(Check):
    info = CheckInfo(
        id="API5-METHOD-SWITCH", title="Administrative path answers an undeclared method", category="API5:2023",
        cwe=285, severity=Severity.HIGH, phase="authorization",
        checks="On administrative paths that declare no GET, a normal user sends GET (with the path values of a "
        "declared operation); a 2xx is a finding.",
        advice=ADVICE + " Refuse methods a path does not declare (Bastion answers them 405 itself).",
        needs_users=1,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        user = ctx.users[0]
        by_path: dict[str, list[Operation]] = {}
        for op in ctx.all_operations():
            by_path.setdefault(op.template, []).append(op)
        out: list[Outcome] = []
        tried = 0
        for template, ops in by_path.items():
            if not any(is_admin_operation(op) for op in ops) or any(op.method in ("get", "head") for op in ops):
                continue
            tried += 1
            plan = ctx.plan(ops[0], ctx.admin or user)
            answer = await ctx.send(plan.copy(method="GET", json=None, body=None, content_type=None), user,
                                    check=self.info)
            if success(answer):
                out.append(finding(self.info, f"GET {template}",
                                   f"{template} declares only {', '.join(o.method.upper() for o in ops)}, yet GET "
                                   f"as {user.name} answered {answer.status}.", answer))
        if not tried:
            return [skip(self.info, "no administrative path without a declared GET")]
        return out


CHECKS: list[Check] = [FunctionLevel(), MethodSwitch()]
