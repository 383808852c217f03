"""API1:2023 Broken Object Level Authorization: another user's objects, by ID.

User A is the first user, user B the second. A's objects are those A created or listed during
discovery (:meth:`ScanContext.created`) through a secured operation, minus any object B saw
as well (shared or public objects are not A's alone). A reads each one first (a 2xx baseline);
then B reads, modifies and deletes it. ID guessing works with a single user: A requests integer
IDs next to its own that it never created or listed; an answer counts only when it is provably
someone else's object (another scan identity's, or an owner-like property that differs from A's).
"""

from __future__ import annotations

import re
from typing import Any

from bastion.tester.audit.context import Operation
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.checks.probing import finding, skip, success
from bastion.tester.scan.interface import Check, CheckInfo, Exchange, Identity, ScanContext, ScanFinding, Skip

Outcome = ScanFinding | Skip
OWNER_FIELDS = re.compile(
    r"^(owner|owner_?id|user|user_?id|username|created_?by|account_?id|customer_?id|author|author_?id)$",
    re.IGNORECASE,
)
ADVICE = (
    "Check in the API that the caller owns (or may access) the object of every request, not only that the "
    "caller is logged in; prefer random IDs (uuid). Bastion's planned `auth` stage will pass the verified user "
    "to the API in a header it can trust for that check."
)
MAX_OBJECTS = 3


def _info(id: str, title: str, severity: Severity, checks: str, **extra: Any) -> CheckInfo:
    return CheckInfo(id=id, title=title, category="API1:2023", cwe=639, severity=severity, phase="authorization",
                     checks=checks, advice=ADVICE, **extra)


def _params(template: str) -> list[str]:
    return re.findall(r"\{([^}]+)\}", template)


def objects_of(ctx: ScanContext, owner: Identity, others: list[Identity]) -> list[tuple[Operation, dict[str, str]]]:
    """``owner``'s objects behind secured operations that no one in ``others`` saw too."""
    theirs = {(op.template, tuple(sorted(v.items()))) for o in others for op, v in ctx.created(o)}
    out = []
    for op, values in ctx.created(owner):
        if op.method != "get" or op.public or (op.template, tuple(sorted(values.items()))) in theirs:
            continue
        out.append((op, values))
    return out


def item_ops(ctx: ScanContext, template: str, methods: tuple[str, ...], *, everything: bool = False) -> list[Operation]:
    ops = ctx.all_operations() if everything else ctx.operations()
    return [op for op in ops if op.template == template and op.method in methods and not op.public]


def same_object(a: Exchange, b: Exchange) -> bool:
    """Whether two answers show the same object: equal bodies, or equal JSON ``id``-like values."""
    if a.response_body == b.response_body:
        return True
    ja, jb = a.json(), b.json()
    if isinstance(ja, dict) and isinstance(jb, dict):
        keys = [k for k in ja if k.lower() == "id" or k.lower().endswith(("id", "_id"))]
        return bool(keys) and all(ja.get(k) == jb.get(k) for k in keys)
    return False


def owner_of(body: Any) -> Any:
    if isinstance(body, dict):
        for key, value in body.items():
            if OWNER_FIELDS.match(str(key)) and isinstance(value, str | int) and not isinstance(value, bool):
                return value
    return None


class _CrossUser(Check):
    async def pairs(self, ctx: ScanContext) -> tuple[Identity, Identity, list[tuple[Operation, dict[str, str]]]]:
        a, b = ctx.users[0], ctx.users[1]
        others = [*ctx.users[1:], *([ctx.admin] if ctx.admin else [])]
        return a, b, objects_of(ctx, a, others)[:MAX_OBJECTS]


class BolaRead(_CrossUser):
    info = _info(
        "API1-BOLA-READ", "Another user's object can be read", Severity.HIGH,
        "User B requests each object user A created or listed (GET with A's IDs); B getting a 2xx with the same "
        "object A got is a finding.",
        needs_users=2,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        a, b, objects = await self.pairs(ctx)
        if not objects:
            return [skip(self.info, f"{a.name} has no objects of its own from discovery (no create or list "
                                    "operation answered with IDs)")]
        out: list[Outcome] = []
        reported: set[str] = set()
        for op, values in objects:
            if op.template in reported:
                continue
            plan = ctx.plan(op, a, path_values=values)
            mine = await ctx.send(plan, a, check=self.info)
            if not success(mine):
                continue
            theirs = await ctx.send(plan, b, check=self.info)
            if success(theirs) and same_object(mine, theirs):
                reported.add(op.template)
                out.append(finding(self.info, op.label,
                                   f"{b.name} read {a.name}'s object at {plan.path} ({theirs.status}).", mine, theirs))
        return out


class BolaWrite(_CrossUser):
    info = _info(
        "API1-BOLA-WRITE", "Another user's object can be modified", Severity.HIGH,
        "User B sends PUT/PATCH with a valid body to each of user A's objects; a 2xx is a finding. Runs only "
        "with --allow-destructive (it changes A's object).",
        destructive=True,
        needs_users=2,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        a, b, objects = await self.pairs(ctx)
        out: list[Outcome] = []
        tried = 0
        reported: set[str] = set()
        for read_op, values in objects:
            mine = await ctx.send(ctx.plan(read_op, a, path_values=values), a, check=self.info)
            current = mine.json() if success(mine) else None
            for op in item_ops(ctx, read_op.template, ("put", "patch")):
                if op.label in reported:
                    continue
                tried += 1
                plan = ctx.plan(op, b, path_values=values)
                if isinstance(plan.json, dict) and isinstance(current, dict) and op.method == "put":
                    plan.json = {**{k: v for k, v in current.items() if k in plan.json}, **plan.json}
                answer = await ctx.send(plan, b, check=self.info)
                if success(answer):
                    reported.add(op.label)
                    restored = await self._restore(ctx, a, read_op, op, values, current, plan)
                    out.append(finding(self.info, op.label,
                                       f"{b.name} modified {a.name}'s object at {plan.path} ({answer.status}). "
                                       f"{restored}", answer))
        if not tried:
            return [skip(self.info, "no PUT/PATCH operation on an object user A owns")]
        return out


    async def _restore(self, ctx: ScanContext, a: Identity, read_op: Operation, op: Operation,
                       values: dict[str, str], current: Any, sent: Any) -> str:
        """A writes its object's old fields back; say whether the object reads as before."""
        if not isinstance(current, dict) or not isinstance(sent.json, dict):
            return "The scan could not restore it (no earlier representation to write back)."
        old = {k: current[k] for k in sent.json if k in current}
        await ctx.send(ctx.plan(op, a, path_values=values).copy(json={**sent.json, **old}), a, check=self.info)
        again = await ctx.send(ctx.plan(read_op, a, path_values=values), a, check=self.info)
        body = again.json() if success(again) else None
        if isinstance(body, dict) and all(body.get(k) == v for k, v in old.items()):
            return "The scan restored it."
        return f"The scan could NOT restore it (it now reads {again.status}): check {a.name}'s object."


class BolaDelete(_CrossUser):
    info = _info(
        "API1-BOLA-DELETE", "Another user's object can be deleted", Severity.HIGH,
        "User A creates a fresh object (the collection's POST), then user B sends DELETE for it; a 2xx is a "
        "finding, confirmed when A no longer finds it. Runs only with --allow-destructive.",
        destructive=True,
        needs_users=2,
    )

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        from bastion.tester.scan.objects import extract_id

        a, b, objects = await self.pairs(ctx)
        out: list[Outcome] = []
        done: set[str] = set()
        for read_op, values in objects:
            if read_op.template in done:
                continue
            param = _params(read_op.template)[-1]
            parent = read_op.template[: read_op.template.rindex("/")]
            create = next((op for op in ctx.operations() if op.method == "post" and op.template == parent), None)
            if create is None:
                continue
            made = await ctx.send(ctx.plan(create, a, path_values=values), a, check=self.info)
            new_id = extract_id(made.json(), param) if success(made) else None
            if new_id is None:
                continue
            values = {**values, param: new_id}
            for op in item_ops(ctx, read_op.template, ("delete",)):
                done.add(read_op.template)
                plan = ctx.plan(op, b, path_values=values)
                answer = await ctx.send(plan, b, check=self.info)
                if not success(answer):
                    continue
                after = await ctx.send(ctx.plan(read_op, a, path_values=values), a, check=self.info)
                gone = "; A now gets " + str(after.status) if after.status in (404, 410) else ""
                out.append(finding(self.info, op.label,
                                   f"{b.name} deleted {a.name}'s object at {plan.path} ({answer.status}){gone}.",
                                   answer, after))
        if not done:
            return [skip(self.info, "no DELETE operation on an object user A could create")]
        return out


class BolaGuess(Check):
    info = _info(
        "API1-BOLA-GUESS", "Other users' objects reachable by guessing IDs", Severity.HIGH,
        "User A requests integer IDs next to its own objects' IDs (up to 3 either side) that it never saw; an "
        "answer that is another scan identity's object, or has an owner-like property (owner, user_id, "
        "created_by...) different from A's, is a finding.",
        needs_users=1,
    )
    spread = 3

    async def run(self, ctx: ScanContext) -> list[Outcome]:
        a = ctx.users[0]
        others = [*ctx.users[1:], *([ctx.admin] if ctx.admin else [])]
        theirs = {(op.template, v.get(_params(op.template)[-1])) for o in others for op, v in ctx.created(o)
                  if _params(op.template)}
        mine_all = [(op, v) for op, v in ctx.created(a) if op.method == "get" and not op.public
                    and _params(op.template)]
        by_template: dict[str, list[tuple[Operation, dict[str, str]]]] = {}
        for op, values in mine_all:
            if values.get(_params(op.template)[-1], "").isdigit():
                by_template.setdefault(op.template, []).append((op, values))
        if not by_template:
            return [skip(self.info, f"{a.name} has no objects with integer IDs from discovery")]
        out: list[Outcome] = []
        for template, objects in list(by_template.items())[:2]:
            param = _params(template)[-1]
            known = {int(v[param]) for _, v in objects}
            op, values = objects[0]
            baseline = await ctx.send(ctx.plan(op, a, path_values=values), a, check=self.info)
            if not success(baseline):
                continue
            my_owner = owner_of(baseline.json())
            candidates = sorted({k + d for k in known for d in range(-self.spread, self.spread + 1)} - known)
            for guess in [c for c in candidates if c > 0][: 2 * self.spread + 2]:
                plan = ctx.plan(op, a, path_values={**values, param: str(guess)})
                answer = await ctx.send(plan, a, check=self.info)
                if not success(answer):
                    continue
                owner = owner_of(answer.json())
                other_identity = (template, str(guess)) in theirs
                if other_identity or (my_owner is not None and owner is not None and owner != my_owner):
                    why = "another scan identity's object" if other_identity else f"owned by {owner!r}"
                    out.append(finding(self.info, op.label,
                                       f"{a.name} read {plan.path} by guessing the ID next to its own ({why}).",
                                       baseline, answer))
                    break
        return out


CHECKS: list[Check] = [BolaRead(), BolaGuess(), BolaWrite(), BolaDelete()]
