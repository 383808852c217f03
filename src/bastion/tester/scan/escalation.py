"""The role-escalation chain: obtain a more privileged identity through the API itself, then re-run the
checks the configured users could not get past.

Real APIs hide flaws behind roles (an SSRF in an employee-only update, a command injection in a chef-only
report). A scan with customer identities only reaches them when the API lets a customer become more, so the
engine follows that chain, after every check ran, the way an attacker would:

1. **gated** — the operations that answered the first user only 401/403 during the scan (nothing to do when
   there are none);
2. **obtain** — a throwaway user registered through the API's own sign-up and logged in (never a configured
   account, whose privileges must not change);
3. **escalate** — on each secured write declaring a privileged property (role, is_admin...), and on each
   profile write whose profile shows such a property it does not declare (a mass assignment), that user sets its
   own value to a privileged one (the admin identity's own, then an enum value named like admin, then the
   enum's last, then ``true``), logs in again (a token may carry the role) and must see the value in its
   profile;
4. **re-run** — the checks of :data:`RERUN_PHASES` run again as the escalated user on the gated operations only,
   each on its own request allowance; what they find says the chain that reached it;
5. **restore** — the throwaway's old value is written back and read again; the report says whether it worked.

When a step cannot be taken the report's notes say which and why: nothing is skipped silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bastion.tester.audit.context import Operation, Spec, types_of
from bastion.tester.scan.checks.probing import body_fields, object_properties, response_schema
from bastion.tester.scan.checks.properties import _HIGH_VALUES, _PRIVILEGED, _json, snake
from bastion.tester.scan.checks.references import RoleChange, fresh_profile, own_account_plan, privileged_fields
from bastion.tester.scan.context import Scan, ScanError
from bastion.tester.scan.interface import (
    Check,
    CheckInfo,
    Exchange,
    Identity,
    Phase,
    RequestPlan,
    ScanFinding,
    ScanOptions,
)
from bastion.tester.scan.login import login, register_identity

__all__ = [
    "RERUN_PHASES",
    "ChainOutcome",
    "EscalatedView",
    "Escalation",
    "escalate",
    "gated_operations",
    "privileged_values",
    "rerun_gated",
    "undeclared_privileges",
]

#: Checks of these phases run again as the escalated user (probes of inputs, not of identities or limits).
RERUN_PHASES: tuple[Phase, ...] = ("injection",)
#: The requests of the chain itself count as the role-change check's (it is that flaw's consequence).
INFO = RoleChange.info
MAX_ATTEMPTS = 6


@dataclass(frozen=True, slots=True)
class Escalation:
    """A throwaway user that raised its own privileges, and how (to tell the reader and to undo it)."""

    identity: Identity
    operation: Operation
    plan: RequestPlan
    prop: str
    before: Any
    after: Any

    @property
    def story(self) -> str:
        return (f" Reached through a role-escalation chain: {self.identity.name}, a user the scan registered through "
                f"{self.identity.registered_with}, raised its own `{self.prop}` from {_json(self.before)} to "
                f"{_json(self.after)} through {self.operation.label}; the configured users were refused here.")


def gated_operations(scan: Scan, first: Identity) -> list[Operation]:
    """Operations in scope that answered ``first`` only 401 or 403 (and at least once) during the scan."""
    out = []
    for op in scan.operations():
        seen = scan.statuses.get((first.name, op.label))
        if seen and seen <= {401, 403}:
            out.append(op)
    return out


def privileged_values(spec: Spec, schema: Mapping[str, Any], current: Any, admin_value: Any) -> list[Any]:
    """Values of ``schema`` granting more than ``current``, most likely first: the admin identity's own, enum
    values named like admin, the enum's last (roles are usually listed lowest first), ``true``."""
    enum = schema.get("enum")
    out: list[Any] = []
    if admin_value is not None and admin_value != current and (not isinstance(enum, list) or admin_value in enum):
        out.append(admin_value)
    if isinstance(enum, list):
        out += [v for v in enum if isinstance(v, str) and _HIGH_VALUES.search(v)]
        out += [v for v in reversed(enum) if v != current]
    elif "boolean" in types_of(dict(schema)) and current is not True:
        out.append(True)
    unique: list[Any] = []
    for value in out:
        if value != current and value not in unique:
            unique.append(value)
    return unique


def undeclared_privileges(scan: Scan) -> list[tuple[Operation, str, dict[str, Any]]]:
    """(profile write, property, its schema in the profile read) for each privileged property a "me"-like read
    shows that its write does not declare: a mass assignment there raises one's own role."""
    out: list[tuple[Operation, str, dict[str, Any]]] = []
    for reader, writer in scan.profile_operations():
        declared = {f.name for f in body_fields(scan.spec, writer)}
        shown = object_properties(scan.spec, response_schema(scan.spec, reader, 200) or {}) or {}
        out += [(writer, name, schema) for name, schema in shown.items()
                if name not in declared and _PRIVILEGED.match(snake(name))]
    return out


async def escalate(scan: Scan) -> Escalation | str:
    """A throwaway user with raised privileges, or why none could be obtained."""
    candidates = [*privileged_fields(scan), *undeclared_privileges(scan)]
    if not candidates:
        return ("no secured write declares a privileged property (role, is_admin...) and no profile shows one to "
                "raise")
    template = next((scan.configs[u.name] for u in scan.users if u.name in scan.configs
                     and scan.configs[u.name].login is not None), None)
    if template is None:
        return "no user identity logs in through a login flow, so no throwaway user can be registered and logged in"
    made = await register_identity(scan, template)
    if not isinstance(made, Identity):
        return made or "the API has no public sign-up to register a throwaway user through"
    admin_profile = (await fresh_profile(scan, scan.admin, INFO))[0] if scan.admin else None
    tried: list[str] = []
    attempts = 0
    for op, name, schema in candidates:
        before, _ = await fresh_profile(scan, made, INFO)
        if before is None or name not in before:
            tried.append(f"{op.label}: {made.name}'s profile shows no `{name}`")
            continue
        admin_value = admin_profile.get(name) if isinstance(admin_profile, dict) else None
        for value in privileged_values(scan.spec, schema, before[name], admin_value):
            if attempts >= MAX_ATTEMPTS:
                break
            attempts += 1
            plan = await own_account_plan(scan, op, made, INFO)
            if plan is None:
                break
            body = {**(plan.json if isinstance(plan.json, dict) else {}), name: value}
            sent = await scan.send(plan.copy(json=body), made, check=INFO)
            if not 200 <= sent.status < 300:
                tried.append(f"{op.label} with `{name}: {_json(value)}` answered {sent.status}")
                continue
            await _relogin(scan, made)
            after, _ = await fresh_profile(scan, made, INFO)
            if isinstance(after, dict) and after.get(name) == value:
                return Escalation(made, op, plan, name, before[name], value)
            tried.append(f"{op.label} accepted `{name}: {_json(value)}` but the profile does not show it")
    return f"{made.name} (registered through {made.registered_with}) could not raise its privileges: " + (
        "; ".join(tried[:4]) or "no attempt was possible")


async def restore(scan: Scan, chain: Escalation) -> str:
    """Write the throwaway's old value back and read it again; a note saying whether that worked."""
    who = chain.identity
    body = {**(chain.plan.json if isinstance(chain.plan.json, dict) else {}), chain.prop: chain.before}
    await scan.send(chain.plan.copy(json=body), who, check=INFO)
    await _relogin(scan, who)
    again, _ = await fresh_profile(scan, who, INFO)
    if isinstance(again, dict) and again.get(chain.prop) == chain.before:
        return (f"role-escalation chain: {who.name}'s `{chain.prop}` was set back to {_json(chain.before)} after "
                "the re-run")
    return (f"role-escalation chain: {who.name}'s `{chain.prop}` could NOT be set back to {_json(chain.before)}: "
            f"restore it by hand (the account was registered through {who.registered_with})")


async def _relogin(scan: Scan, identity: Identity) -> None:
    """Log ``identity`` in again, so a token that carries the role carries the new one."""
    config = scan.configs.get(identity.name)
    if config is None or config.login is None:
        return
    try:
        fresh = await login(scan, config)
    except ScanError:
        return  # the old credentials stay; the profile read tells whether they still work
    identity.headers, identity.cookies, identity.token = fresh.headers, fresh.cookies, fresh.token


class EscalatedView:
    """The scan as the escalated user sees it: that user only, and only the gated operations. Requests count
    against their own allowance per check (``<check> (as <user>)``), not the first run's."""

    def __init__(self, scan: Scan, identity: Identity, gated: Sequence[Operation]) -> None:
        self.spec: Spec = scan.spec
        self.options: ScanOptions = scan.options
        self.anonymous = scan.anonymous
        self.users: Sequence[Identity] = [identity]
        self.admin = scan.admin
        self.origin = scan.origin
        self.base_path = scan.base_path
        self._scan = scan
        self._gated = list(gated)

    def operations(self) -> Sequence[Operation]:
        return list(self._gated)

    def all_operations(self) -> Sequence[Operation]:
        return list(self._gated)

    def plan(self, op: Operation, identity: Identity, *, path_values: Mapping[str, str] | None = None) -> RequestPlan:
        return self._scan.plan(op, identity, path_values=path_values)

    def _as(self, check: CheckInfo | None) -> CheckInfo | None:
        return None if check is None else replace(check, id=f"{check.id} (as {self.users[0].name})")

    async def send(self, plan: RequestPlan, identity: Identity, *, check: CheckInfo | None = None,
                   timeout: float | None = None, retry_429: bool = True,  # noqa: ASYNC109
                   unthrottled: bool = False) -> Exchange:
        return await self._scan.send(plan, identity, check=self._as(check), timeout=timeout, retry_429=retry_429,
                                     unthrottled=unthrottled)

    async def raw(self, method: str, path: str, identity: Identity, *, headers: Mapping[str, str] | None = None,
                  body: bytes | None = None, query: Sequence[tuple[str, str]] = (),
                  check: CheckInfo | None = None, timeout: float | None = None,  # noqa: ASYNC109
                  retry_429: bool = True) -> Exchange:
        return await self._scan.raw(method, path, identity, headers=headers, body=body, query=query,
                                    check=self._as(check), timeout=timeout, retry_429=retry_429)

    def canary_url(self, token: str) -> str | None:
        return self._scan.canary_url(token)

    def canary_hits(self, token: str) -> int:
        return self._scan.canary_hits(token)

    def created(self, owner: Identity) -> Sequence[tuple[Operation, dict[str, str]]]:
        return self._scan.created(owner)


@dataclass
class ChainOutcome:
    """What the chain found (each finding telling the chain), the report's notes, and whether it escalated."""

    findings: list[ScanFinding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    escalated: bool = False


async def rerun_gated(scan: Scan, checks: Sequence[Check]) -> ChainOutcome:
    """The chain end to end (see the module docstring)."""
    rerun = [c for c in checks if c.info.phase in RERUN_PHASES and c.info.needs_users <= 1
             and not c.info.needs_admin and (scan.options.allow_destructive or not c.info.destructive)]
    if not rerun or not scan.users:
        return ChainOutcome()
    first = scan.users[0]
    gated = gated_operations(scan, first)
    if not gated:
        return ChainOutcome()
    labels = ", ".join(op.label for op in gated[:5]) + (" ..." if len(gated) > 5 else "")
    chain = await escalate(scan)
    if isinstance(chain, str):
        return ChainOutcome(notes=[f"role-escalation chain: {len(gated)} operation(s) refused {first.name} ({labels}) "
                                   f"were not probed as another role: {chain}. Add an identity of the role they need "
                                   "to the --auth file."])
    notes = [f"role-escalation chain: {chain.identity.name} raised its own `{chain.prop}` to {_json(chain.after)} "
             f"through {chain.operation.label}; the {', '.join(c.info.id for c in rerun)} check(s) ran again as it on "
             f"{len(gated)} operation(s) refused {first.name} ({labels})"]
    view = EscalatedView(scan, chain.identity, gated)
    found: list[ScanFinding] = []
    try:
        for check in rerun:
            try:
                outcomes = await check.run(view)
            except Exception as exc:  # a broken check is reported, never silently dropped
                notes.append(f"role-escalation chain: {check.info.id} failed as {chain.identity.name}: "
                             f"{type(exc).__name__}: {exc}")
                continue
            found += [replace(o, message=o.message + chain.story) for o in outcomes if isinstance(o, ScanFinding)]
    finally:
        notes.append(await restore(scan, chain))
    return ChainOutcome(found, notes, escalated=True)
